//! Traces: a config, a seed and timed inputs, in their canonical JSON form (`replay` plays them).

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::error::ConfigError;
use crate::input::Input;
use crate::timer::Timestamp;

/// One input and the time it arrived.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimedInput {
    /// When (driver monotonic ms).
    pub at: Timestamp,
    /// What.
    pub input: Input,
}

/// A replayable record of a session: `{"config": {...}, "seed": N, "inputs": [...]}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trace {
    /// The session's configuration (secrets redacted when recorded).
    pub config: Config,
    /// The PRNG seed.
    #[serde(default)]
    pub seed: u64,
    /// The inputs in order.
    pub inputs: Vec<TimedInput>,
}

/// A trace could not be read or replayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TraceError {
    /// The text is not a trace in the canonical form.
    #[error("invalid trace: {0}")]
    Parse(String),
    /// The trace's config is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl Trace {
    /// Parses the canonical JSON form.
    pub fn from_json(text: &str) -> Result<Trace, TraceError> {
        serde_json::from_str(text).map_err(|e| TraceError::Parse(e.to_string()))
    }

    /// The canonical JSON form, one input per line.
    pub fn to_json(&self) -> String {
        let config = serde_json::to_string(&self.config).unwrap_or_default();
        let inputs: Vec<String> = self
            .inputs
            .iter()
            .map(|i| serde_json::to_string(i).unwrap_or_default())
            .collect();
        format!(
            "{{\"config\":{config},\"seed\":{},\"inputs\":[\n{}\n]}}\n",
            self.seed,
            inputs.join(",\n")
        )
    }
}

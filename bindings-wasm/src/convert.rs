//! What crosses the wasm boundary: JS numbers to times and ids, JS option names to the core's
//! config keys, and failures as `{code, message}` the JS layer turns into `Error` subclasses.

use serde_json::{Map, Value};
use sockline_core::{ConfigError, SessionError, Timestamp};
use wasm_bindgen::JsValue;

/// Why a call was refused: the core's error code and message (or the binding's own, for an
/// argument JS cannot have meant).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Machine-readable, the same in every runtime (`reserved_type`, `invalid_config`, ...).
    pub code: String,
    /// Human-readable.
    pub message: String,
}

impl Failure {
    /// A refusal with this code and message.
    pub fn new(code: &str, message: impl Into<String>) -> Failure {
        Failure {
            code: code.to_string(),
            message: message.into(),
        }
    }

    /// The canonical JSON the JS layer parses: `{"code": ..., "message": ...}`.
    pub fn to_json(&self) -> String {
        serde_json::json!({"code": self.code, "message": self.message}).to_string()
    }
}

impl From<SessionError> for Failure {
    fn from(e: SessionError) -> Failure {
        Failure::new(e.code(), e.to_string())
    }
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Failure {
        Failure::new("invalid_config", e.to_string())
    }
}

impl From<Failure> for JsValue {
    fn from(f: Failure) -> JsValue {
        // Thrown as the JSON text; the JS layer rethrows it as a `SocklineError` with `.code`
        // (no js-sys needed to build an object here).
        JsValue::from_str(&f.to_json())
    }
}

/// Largest integer a JS number holds exactly.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// A JS number that must be a whole, non-negative, exactly representable integer.
pub fn whole(what: &str, n: f64) -> Result<u64, Failure> {
    if (0.0..=MAX_SAFE_INTEGER).contains(&n) && n.fract() == 0.0 {
        Ok(n as u64)
    } else {
        Err(Failure::new(
            "invalid_argument",
            format!("{what} must be a whole number from 0 to 2^53-1, got {n}"),
        ))
    }
}

/// A driver's `performance.now()`-style time: fractions of a millisecond are dropped.
pub fn time(now_ms: f64) -> Result<Timestamp, Failure> {
    if (0.0..=MAX_SAFE_INTEGER).contains(&now_ms) {
        Ok(Timestamp::from_millis(now_ms.floor() as u64))
    } else {
        Err(Failure::new(
            "invalid_argument",
            format!("time must be a non-negative number of milliseconds, got {now_ms}"),
        ))
    }
}

/// `maxFrameBytes` → `max_frame_bytes`: JS option names are the core's keys, camelCased.
pub fn snake_case(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    for c in key.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Renames every object key, at every depth, to snake_case (config options have no free-form
/// maps, so every key is a config key).
pub fn snake_keys_deep(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| (snake_case(&k), snake_keys_deep(v)))
                .collect::<Map<String, Value>>(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(snake_keys_deep).collect()),
        other => other,
    }
}

/// Renames the top-level keys only (a message's `data` is the application's, kept as given).
pub fn snake_keys_top(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            Value::Object(m.into_iter().map(|(k, v)| (snake_case(&k), v)).collect())
        }
        other => other,
    }
}

/// Parses JSON text handed over by the JS layer.
pub fn parse(what: &str, text: &str) -> Result<Value, Failure> {
    serde_json::from_str(text)
        .map_err(|e| Failure::new("invalid_argument", format!("{what} is not JSON: {e}")))
}

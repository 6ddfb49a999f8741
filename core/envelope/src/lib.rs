//! The inbound envelope's JSON decode, for `sockline_core::wire::decode` only.
//!
//! Why a crate: serde's and serde_json's code for a type is compiled in the crate that uses it,
//! at that crate's `opt-level`, and the browser bundle compiles `sockline-core` for size
//! (`opt-level = "z"`), which makes this decode, the bulk of the core's work per inbound
//! message, about twice as slow there. Here it can be compiled for speed on its own
//! (`[profile.wasm-release.package.sockline-envelope] opt-level = 3`), for a few kilobytes.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use serde::Deserialize;
use serde_json::value::RawValue;

/// An envelope as parsed: the same fields as `sockline_core::Envelope`, in the same order, with
/// the same names, renames and defaults, so serde accepts exactly the same texts and words its
/// errors the same way (it is `struct Envelope` in them, and a JSON array fills it in field order).
#[derive(Debug, Deserialize)]
pub struct Envelope {
    /// The message type.
    #[serde(rename = "type")]
    pub msg_type: String,
    /// The payload, kept as the exact JSON text received.
    #[serde(default = "null_raw")]
    pub data: Box<RawValue>,
    /// RFC 3339 UTC time the sender stamped.
    #[serde(default)]
    pub timestamp: Option<String>,
    /// Message id.
    #[serde(default)]
    pub id: Option<String>,
    /// Project the message belongs to.
    #[serde(default, rename = "projectId")]
    pub project_id: Option<u64>,
    /// Server-assigned sequence number.
    #[serde(default)]
    pub seq: Option<u64>,
}

fn null_raw() -> Box<RawValue> {
    RawValue::NULL.to_owned()
}

/// Parses one frame's text as an envelope.
pub fn parse(text: &str) -> Result<Envelope, serde_json::Error> {
    serde_json::from_str(text)
}

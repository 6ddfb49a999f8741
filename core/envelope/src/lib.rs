//! The inbound envelope's JSON decode and the depth guard's byte count, for
//! `sockline_core::wire::decode` only.
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

/// How many `{` and `[` bytes there are (the core's nesting-depth guard: with no more openers
/// than the limit, nesting cannot pass it), eight bytes at a time (SWAR: wasm without SIMD
/// does not vectorise the byte loop).
pub fn count_openers(bytes: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    /// The high bit of every byte of `x` that is zero, and no other bit (exact, no carries).
    fn zero_bytes(x: u64) -> u64 {
        !(((x & LOW7).wrapping_add(LOW7)) | x | LOW7)
    }
    let mut chunks = bytes.chunks_exact(8);
    let mut n = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        let hits =
            zero_bytes(w ^ (ONES * u64::from(b'{'))) | zero_bytes(w ^ (ONES * u64::from(b'[')));
        n += hits.count_ones() as usize;
    }
    n + chunks
        .remainder()
        .iter()
        .filter(|&&b| b == b'{' || b == b'[')
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openers_counted_word_at_a_time_as_byte_at_a_time() {
        let naive = |b: &[u8]| b.iter().filter(|&&c| c == b'{' || c == b'[').count();
        // Every byte value next to the openers, at every offset and length around a word.
        let mut bytes: Vec<u8> = (0..=255u8).collect();
        bytes.extend(b"{[{[[[{{{x[".iter());
        bytes.extend((0..=255u8).rev());
        for start in 0..9 {
            for end in (start..bytes.len()).step_by(3) {
                assert_eq!(count_openers(&bytes[start..end]), naive(&bytes[start..end]));
            }
        }
        let all = vec![b'{'; 37];
        assert_eq!(count_openers(&all), 37);
        assert_eq!(
            count_openers(&[0x7b ^ 0x80; 16]),
            0,
            "no carry across bytes"
        );
    }
}

//! Wire protocol v2: the JSON envelope, the control messages, and the inbound codec.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

/// Protocol version sent in `hello`.
pub const PROTOCOL_VERSION: u32 = 2;

/// Types that belong to the protocol itself and never reach subscriptions.
pub const CONTROL_TYPES: [&str; 6] = ["hello", "welcome", "ping", "pong", "ack", "error"];

/// One message as it travels on the wire: `{type, data, timestamp?, id?, projectId?, epoch?, offset?}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Envelope {
    /// The message type (snake_case by convention).
    #[serde(rename = "type")]
    pub msg_type: String,
    /// The payload, kept as the exact JSON text received.
    #[serde(default = "null_raw")]
    pub data: Box<RawValue>,
    /// RFC 3339 UTC time the sender stamped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// Message id, for acks and deduplication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Project the message belongs to.
    #[serde(default, rename = "projectId", skip_serializing_if = "Option::is_none")]
    pub project_id: Option<u64>,
    /// The project log's epoch (a project message relayed by the hub).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
    /// The message's position in its project's log, from 1 (with `epoch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
}

fn null_raw() -> Box<RawValue> {
    RawValue::from_string("null".to_string()).expect("null is valid JSON")
}

impl PartialEq for Envelope {
    fn eq(&self, other: &Self) -> bool {
        self.msg_type == other.msg_type
            && self.data.get() == other.data.get()
            && self.timestamp == other.timestamp
            && self.id == other.id
            && self.project_id == other.project_id
            && self.epoch == other.epoch
            && self.offset == other.offset
    }
}

impl Envelope {
    /// Parses and checks one inbound text frame (size, nesting depth, envelope, type).
    pub fn decode(text: &str, max_bytes: usize, max_depth: usize) -> Result<Envelope, WireError> {
        decode(text, max_bytes, max_depth)
    }

    /// A message of `msg_type` carrying `data`, with no id, project or position.
    pub fn new<T: Serialize + ?Sized>(msg_type: &str, data: &T) -> Envelope {
        let text = serde_json::to_string(data).unwrap_or_else(|_| "null".to_string());
        Envelope {
            msg_type: msg_type.to_string(),
            data: RawValue::from_string(text).unwrap_or_else(|_| null_raw()),
            timestamp: None,
            id: None,
            project_id: None,
            epoch: None,
            offset: None,
        }
    }

    /// The same message in `project_id`.
    pub fn in_project(mut self, project_id: u64) -> Envelope {
        self.project_id = Some(project_id);
        self
    }

    /// Parses `data` into `T`.
    pub fn data_as<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.data.get())
    }

    /// `data` as a JSON value.
    pub fn data_value(&self) -> Value {
        self.data_as().unwrap_or(Value::Null)
    }

    /// The canonical JSON text of this envelope.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Why an inbound frame was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The frame is larger than `max_frame_bytes`.
    #[error("frame of {len} bytes exceeds max_frame_bytes ({max})")]
    TooLarge {
        /// Frame size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The JSON nests deeper than `max_json_depth`.
    #[error("JSON nests deeper than {max} levels")]
    TooDeep {
        /// The limit.
        max: usize,
    },
    /// The text is not a JSON envelope.
    #[error("invalid envelope: {0}")]
    Json(String),
    /// `type` is empty, too long or has characters outside `[A-Za-z0-9_.:-]`.
    #[error("invalid message type {0:?}")]
    InvalidType(String),
    /// A binary frame arrived; protocol v1 is text only.
    #[error("unexpected binary frame ({len} bytes)")]
    Binary {
        /// Frame size.
        len: usize,
    },
}

/// Whether `t` is a well-formed message type.
pub fn is_valid_type(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 64
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

/// The `id` of a frame that is not a valid envelope (a `projectId` out of range, say), if it is
/// a JSON object with a string `id`: so the refusal can name the message.
pub fn id_of(text: &str, max_depth: usize) -> Option<String> {
    #[derive(Deserialize)]
    struct IdOnly {
        id: Option<String>,
    }
    if json_depth_exceeds(text.as_bytes(), max_depth) {
        return None;
    }
    serde_json::from_str::<IdOnly>(text).ok()?.id
}

/// Parses and checks one inbound text frame.
pub fn decode(text: &str, max_bytes: usize, max_depth: usize) -> Result<Envelope, WireError> {
    if text.len() > max_bytes {
        return Err(WireError::TooLarge {
            len: text.len(),
            max: max_bytes,
        });
    }
    if json_depth_exceeds(text.as_bytes(), max_depth) {
        return Err(WireError::TooDeep { max: max_depth });
    }
    let env: Envelope = serde_json::from_str(text).map_err(|e| WireError::Json(e.to_string()))?;
    if !is_valid_type(&env.msg_type) {
        let mut t = env.msg_type;
        truncate_utf8(&mut t, 64);
        return Err(WireError::InvalidType(t));
    }
    Ok(env)
}

/// True when brackets nest deeper than `max` outside strings; a cheap scan that keeps the
/// parser's recursion (and stack) bounded regardless of serde_json's own limit.
fn json_depth_exceeds(bytes: &[u8], max: usize) -> bool {
    // Fast path (the common case): with no more openers than `max` in all, nesting cannot pass
    // it; this count goes a word at a time, the exact scan below a byte at a time.
    if count_openers(bytes) <= max {
        return false;
    }
    let mut depth = 0usize;
    let mut in_str = false;
    let mut escaped = false;
    for &b in bytes {
        if in_str {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_str = false;
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// How many `{` and `[` bytes there are, eight bytes at a time (SWAR: the same count on every
/// target, and fast where the compiler does not vectorise, as in a size-optimised wasm).
fn count_openers(bytes: &[u8]) -> usize {
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

/// Shortens `s` to at most `max` bytes on a char boundary.
pub(crate) fn truncate_utf8(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

/// An outbound application message, borrowed for encoding.
#[derive(Serialize)]
pub(crate) struct Outbound<'a> {
    #[serde(rename = "type")]
    pub msg_type: &'a str,
    pub data: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<&'a str>,
    pub id: &'a str,
    #[serde(rename = "projectId", skip_serializing_if = "Option::is_none")]
    pub project_id: Option<u64>,
}

impl Outbound<'_> {
    pub(crate) fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Encodes a control message `{"type": t, "data": data}`.
pub fn encode_control<T: Serialize>(msg_type: &str, data: &T) -> String {
    #[derive(Serialize)]
    struct Control<'a, T> {
        #[serde(rename = "type")]
        msg_type: &'a str,
        data: &'a T,
    }
    serde_json::to_string(&Control { msg_type, data }).unwrap_or_default()
}

/// `hello` data: the first frame on every transport.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hello {
    /// Protocol version (0 when absent, which no hub speaks).
    #[serde(default)]
    pub protocol: u32,
    /// Session to resume, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The local user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

/// `auth` data: a new token for an open connection (before the last one runs out).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthData {
    /// The new token.
    pub token: String,
}

/// `token_expiring` data: the connection's token runs out soon.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenExpiring {
    /// In how long (the hub closes the connection with 4001 then, unless it gets `auth`).
    pub expires_in_ms: u64,
}

/// `welcome` data: the server accepted `hello`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Welcome {
    /// The session id to present on the next `hello`.
    pub session_id: String,
    /// Whether the server resumed the session named in `hello` (its agent streams and the
    /// message ids it acknowledged).
    #[serde(default)]
    pub resumed: bool,
}

/// `ping` / `pong` data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Nonce {
    /// Echoed by the peer.
    pub nonce: Value,
}

/// `ack` data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ack {
    /// The acknowledged message id.
    pub id: String,
    /// For a project message: its project, and the position the hub gave it in the log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<u64>,
    /// The log's epoch (with `offset`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
    /// The message's offset (with `epoch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
}

/// `project_subscribe` data: the position to recover from, when the client has one.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subscribe {
    /// The epoch of the log the client was reading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
    /// The last offset it applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
}

/// `project_joined` data: the hub's answer to `project_subscribe`, before anything it replays.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Joined {
    /// The log's epoch.
    pub epoch: String,
    /// The position the client continues from: its own when recovered, the log's top otherwise.
    pub offset: u64,
    /// Present when the client asked to recover: whether every message after its position follows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered: Option<bool>,
    /// How many messages follow as the replay (when recovered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replayed: Option<u64>,
    /// Why not (when not recovered): `epoch_changed`, `too_old`, `too_many`, `ahead`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `error` data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorData {
    /// Machine-readable code, e.g. `rate_limited`, `unauthorized`.
    pub code: String,
    /// Human-readable text.
    #[serde(default)]
    pub message: String,
    /// Server hint: wait this long before retrying.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// The client message the server refuses, if the error is about one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// `user_typing_start` / `user_typing_stop` data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TypingData {
    /// Who is typing.
    pub user_id: String,
}

/// `agent_stream_start` / `agent_stream_interrupt` data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamRef {
    /// The stream.
    pub stream_id: String,
}

/// `agent_stream_chunk` data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamChunk {
    /// The stream.
    pub stream_id: String,
    /// Chunk number, from 0 in each stream.
    pub seq: u64,
    /// The text.
    pub delta: String,
}

/// `agent_stream_end` data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamEnd {
    /// The stream.
    pub stream_id: String,
    /// Total number of chunks, when the server states it.
    #[serde(default)]
    pub seq: Option<u64>,
}

/// `agent_stream_error` data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamError {
    /// The stream.
    pub stream_id: String,
    /// What went wrong.
    #[serde(default)]
    pub error: String,
}

/// `agent_stream_resume` data: continue a stream from chunk `fromSeq`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamResume {
    /// The stream.
    pub stream_id: String,
    /// The first chunk wanted.
    pub from_seq: u64,
}

/// `agent_prompt` data: ask the hub's agent; the answer streams back as `agent_stream_*`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentPrompt {
    /// The question.
    #[serde(default)]
    pub prompt: String,
    /// The stream id to use (the hub makes one up when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_id: Option<String>,
}

/// `agent_stream_start` data as the hub sends it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamStart {
    /// The stream.
    pub stream_id: String,
    /// The prompt it answers.
    #[serde(default)]
    pub prompt: String,
}

/// `project_updated` / `project_snapshot` data (the payload's other fields are the application's).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Versioned {
    /// The project's version after this change.
    pub version: u64,
}

/// `project_sync_request` data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncRequest {
    /// The first version wanted.
    pub from_version: u64,
}

/// `presence_state` data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PresenceState {
    /// Everyone present.
    pub members: Vec<String>,
}

/// `presence_diff` data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PresenceDiff {
    /// Who arrived.
    #[serde(default)]
    pub joins: Vec<String>,
    /// Who left (applied first).
    #[serde(default)]
    pub leaves: Vec<String>,
}

/// A server's direction for the next reconnect: at least `after_ms`, drawn over `spread_ms` more.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RetryHint {
    /// The earliest delay (`retryAfterMs`).
    pub(crate) after_ms: u64,
    /// The window above it the delay is drawn in (`spreadMs`; 0: exactly `after_ms`).
    pub(crate) spread_ms: u64,
}

impl RetryHint {
    /// Exactly `ms` (an `error`'s `retryAfterMs`, or a close reason without `spreadMs`).
    pub(crate) fn after(ms: u64) -> Self {
        RetryHint {
            after_ms: ms,
            spread_ms: 0,
        }
    }

    /// The close reason that carries it, `{"retryAfterMs":A,"spreadMs":W}`: at most 69 bytes
    /// (two 20-digit numbers), well within the 123 a close frame leaves for its reason.
    pub(crate) fn to_reason(self) -> String {
        format!(
            r#"{{"retryAfterMs":{},"spreadMs":{}}}"#,
            self.after_ms, self.spread_ms
        )
    }
}

/// A close reason of the form `{"retryAfterMs": A, "spreadMs": W}`: either key may be absent (0),
/// other keys are ignored, and a key whose value is not a whole number counts as absent; `None`
/// when neither key is usable (a plain-text reason, `{}`, a negative number).
pub(crate) fn retry_hint_from_reason(reason: &str) -> Option<RetryHint> {
    if !reason.trim_start().starts_with('{') {
        return None;
    }
    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(reason) else {
        return None;
    };
    let after = map.get("retryAfterMs").and_then(Value::as_u64);
    let spread = map.get("spreadMs").and_then(Value::as_u64);
    if after.is_none() && spread.is_none() {
        return None;
    }
    Some(RetryHint {
        after_ms: after.unwrap_or(0),
        spread_ms: spread.unwrap_or(0),
    })
}

/// Formats a Unix time in milliseconds as RFC 3339 UTC with milliseconds (`...T12:00:00.000Z`).
pub fn rfc3339_ms(unix_ms: u64) -> String {
    // Years past 9999 do not fit RFC 3339; clamp rather than fail.
    const MAX_MS: u64 = 253_402_300_799_999;
    let ms = unix_ms.min(MAX_MS);
    let nanos = i128::from(ms) * 1_000_000;
    match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        ),
        Err(_) => "1970-01-01T00:00:00.000Z".to_string(),
    }
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

    #[test]
    fn decodes_the_seed_envelope() {
        let e = decode(
            r#"{"type":"project_updated","data":{"a":1},"timestamp":"2025-01-27T00:00:00.000Z","projectId":7,"epoch":"e1","offset":3,"id":"m1"}"#,
            1 << 20,
            64,
        )
        .unwrap();
        assert_eq!(e.msg_type, "project_updated");
        assert_eq!(e.data.get(), r#"{"a":1}"#);
        assert_eq!(e.project_id, Some(7));
        assert_eq!((e.epoch.as_deref(), e.offset), (Some("e1"), Some(3)));
        assert_eq!(e.id.as_deref(), Some("m1"));
    }

    #[test]
    fn missing_data_is_null_and_round_trips() {
        let e = decode(r#"{"type":"x"}"#, 1024, 64).unwrap();
        assert_eq!(e.data.get(), "null");
        assert_eq!(e.to_json(), r#"{"type":"x","data":null}"#);
    }

    #[test]
    fn rejects_bad_frames() {
        assert!(matches!(
            decode("not json", 1024, 64),
            Err(WireError::Json(_))
        ));
        assert!(matches!(
            decode(r#"{"data":1}"#, 1024, 64),
            Err(WireError::Json(_))
        ));
        assert!(matches!(
            decode(r#"{"type":""}"#, 1024, 64),
            Err(WireError::InvalidType(_))
        ));
        assert!(matches!(
            decode(r#"{"type":"a b"}"#, 1024, 64),
            Err(WireError::InvalidType(_))
        ));
        assert!(matches!(
            decode(r#"{"type":5}"#, 1024, 64),
            Err(WireError::Json(_))
        ));
        let big = format!(r#"{{"type":"x","data":"{}"}}"#, "a".repeat(2000));
        assert!(matches!(
            decode(&big, 1024, 64),
            Err(WireError::TooLarge { .. })
        ));
        let deep = format!(
            r#"{{"type":"x","data":{}{}}}"#,
            "[".repeat(64),
            "]".repeat(64)
        );
        assert_eq!(
            decode(&deep, 1 << 20, 64),
            Err(WireError::TooDeep { max: 64 })
        );
        let ok = format!(
            r#"{{"type":"x","data":{}{}}}"#,
            "[".repeat(63),
            "]".repeat(63)
        );
        assert!(decode(&ok, 1 << 20, 64).is_ok());
        // Many openers but shallow, or inside strings: only real nesting counts.
        let wide = format!(r#"{{"type":"x","data":[{}[]]}}"#, "[],".repeat(200));
        assert!(decode(&wide, 1 << 20, 64).is_ok());
        let quoted = format!(r#"{{"type":"x","data":"{}"}}"#, "{[".repeat(200));
        assert!(decode(&quoted, 1 << 20, 64).is_ok());
        let deep_after_wide = format!(
            r#"{{"type":"x","data":[{}{}{}]}}"#,
            "{},".repeat(100),
            "[".repeat(70),
            "]".repeat(70)
        );
        assert_eq!(
            decode(&deep_after_wide, 1 << 20, 64),
            Err(WireError::TooDeep { max: 64 })
        );
    }

    #[test]
    fn brackets_inside_strings_do_not_count_as_depth() {
        let s = format!(
            r#"{{"type":"x","data":"{}\"{}"}}"#,
            "[".repeat(100),
            "{".repeat(100)
        );
        assert!(decode(&s, 1 << 20, 64).is_ok());
    }

    #[test]
    fn formats_timestamps_like_javascript() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_737_936_000_123), "2025-01-27T00:00:00.123Z");
        assert_eq!(rfc3339_ms(u64::MAX), "9999-12-31T23:59:59.999Z");
    }

    #[test]
    fn close_reason_hint() {
        let hint = |after_ms, spread_ms| {
            Some(RetryHint {
                after_ms,
                spread_ms,
            })
        };
        assert_eq!(
            retry_hint_from_reason(r#"{"retryAfterMs": 2500}"#),
            hint(2500, 0)
        );
        assert_eq!(retry_hint_from_reason("going away"), None);
        assert_eq!(retry_hint_from_reason(r#"{"retryAfterMs": -1}"#), None);
        assert_eq!(retry_hint_from_reason("{}"), None);
        assert_eq!(retry_hint_from_reason(r#"{"retryAfterMs": 2500"#), None);
        assert_eq!(retry_hint_from_reason("[1000]"), None);
    }

    #[test]
    fn close_reason_spread() {
        let hint = |after_ms, spread_ms| {
            Some(RetryHint {
                after_ms,
                spread_ms,
            })
        };
        assert_eq!(
            retry_hint_from_reason(r#"{"retryAfterMs": 500, "spreadMs": 3000}"#),
            hint(500, 3000)
        );
        assert_eq!(
            retry_hint_from_reason(r#" {"spreadMs":3000,"node":"b"}"#),
            hint(0, 3000),
            "retryAfterMs absent: 0; unknown keys ignored"
        );
        assert_eq!(
            retry_hint_from_reason(r#"{"retryAfterMs": 500, "spreadMs": "3000"}"#),
            hint(500, 0),
            "a bad spread counts as absent"
        );
        assert_eq!(
            retry_hint_from_reason(r#"{"retryAfterMs": 1.5, "spreadMs": 3000}"#),
            hint(0, 3000),
            "a bad delay counts as absent"
        );
        assert_eq!(
            retry_hint_from_reason(r#"{"retryAfterMs": -1, "spreadMs": null}"#),
            None
        );
    }

    #[test]
    fn a_spread_reason_round_trips_and_fits_a_close_frame() {
        for h in [
            RetryHint::after(0),
            RetryHint {
                after_ms: 250,
                spread_ms: 3000,
            },
            RetryHint {
                after_ms: u64::MAX,
                spread_ms: u64::MAX,
            },
        ] {
            let reason = h.to_reason();
            assert!(reason.len() <= 123, "{} bytes: {reason}", reason.len());
            assert_eq!(retry_hint_from_reason(&reason), Some(h));
        }
        assert_eq!(
            RetryHint {
                after_ms: 0,
                spread_ms: 3000
            }
            .to_reason(),
            r#"{"retryAfterMs":0,"spreadMs":3000}"#
        );
    }

    #[test]
    fn control_frames_encode_compactly() {
        assert_eq!(
            encode_control(
                "ping",
                &Nonce {
                    nonce: Value::from(3)
                }
            ),
            r#"{"type":"ping","data":{"nonce":3}}"#
        );
    }
}

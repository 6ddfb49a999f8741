//! Session configuration: the canonical JSON form, its defaults and its validation.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::ConfigError;

/// Everything a session can be tuned with; every key may be omitted for its default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The `ws://` or `wss://` URL to connect to (or set `urls`).
    pub url: String,
    /// Several hub URLs instead of `url`: the first connect uses the first, and every reconnect
    /// attempt moves on to the next (wrapping), under the same backoff.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    /// Reconnect backoff.
    pub reconnect: ReconnectConfig,
    /// How long a transport may take to open and finish the hello/welcome handshake.
    pub connect_timeout_ms: u64,
    /// How long a user-initiated close may take before the session calls it closed.
    pub close_timeout_ms: u64,
    /// Liveness probing.
    pub heartbeat: HeartbeatConfig,
    /// The offline queue.
    pub outbox: OutboxConfig,
    /// Largest inbound or outbound text frame, in bytes.
    pub max_frame_bytes: usize,
    /// Deepest JSON nesting accepted in an inbound frame.
    pub max_json_depth: usize,
    /// How many recent inbound message ids are remembered to drop server resends.
    pub dedupe_window: usize,
    /// Close codes after which the session gives up instead of reconnecting.
    pub fatal_close_codes: Vec<u16>,
    /// The local user's id, sent in `hello`.
    pub user_id: Option<String>,
    /// The credential sent in `hello` (never in the URL); redacted in every serialized form.
    pub token: Option<Secret>,
    /// Reject `ws://` URLs.
    pub require_tls: bool,
    /// Client-side rate limit on outbound application messages.
    pub rate_limit: RateLimitConfig,
    /// How long before a token's `expires_at` to emit `token_refresh_due`.
    pub token_refresh_margin_ms: u64,
    /// Typing indicators.
    pub typing: TypingConfig,
    /// Agent stream assembly.
    pub streams: StreamsConfig,
    /// Unsent bytes a driver may hold (reported as `buffered`) before the transport counts as
    /// blocked: the outbox then holds application messages and volatile sends are dropped.
    pub max_buffered_bytes: u64,
    /// How long a transport may stay blocked before the session abandons it (close 4000).
    pub write_timeout_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            url: String::new(),
            urls: Vec::new(),
            reconnect: ReconnectConfig::default(),
            connect_timeout_ms: 10_000,
            close_timeout_ms: 5_000,
            heartbeat: HeartbeatConfig::default(),
            outbox: OutboxConfig::default(),
            max_frame_bytes: 1 << 20,
            max_json_depth: 64,
            dedupe_window: 1024,
            fatal_close_codes: vec![1002, 1003, 1007, 1008, 4003],
            user_id: None,
            token: None,
            require_tls: false,
            rate_limit: RateLimitConfig::Off,
            token_refresh_margin_ms: 30_000,
            typing: TypingConfig::default(),
            streams: StreamsConfig::default(),
            max_buffered_bytes: 1 << 20,
            write_timeout_ms: 10_000,
        }
    }
}

/// Exponential backoff between reconnect attempts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReconnectConfig {
    /// Delay before the first reconnect attempt.
    pub initial_ms: u64,
    /// Multiplier applied per attempt.
    pub factor: f64,
    /// Cap on any computed delay.
    pub max_ms: u64,
    /// Reconnect attempts after the initial connect before giving up; `None` (JSON `null`) retries forever.
    pub max_attempts: Option<u32>,
    /// How each delay is randomised.
    pub jitter: Jitter,
    /// How long a connection must stay open before the attempt counter resets.
    pub stable_ms: u64,
    /// Upper bound on a server's `retryAfterMs` hint.
    pub max_hint_ms: u64,
}

impl ReconnectConfig {
    /// The un-jittered delay schedule: the delay before reconnect attempt `attempt` (1-based),
    /// `min(initial_ms · factor^(attempt-1), max_ms)`; jitter then draws within it.
    pub fn base_delay(&self, attempt: u32) -> u64 {
        let exp = attempt.saturating_sub(1).min(1_000) as i32;
        let d = self.initial_ms as f64 * self.factor.powi(exp);
        if !d.is_finite() || d >= self.max_ms as f64 {
            self.max_ms
        } else {
            // `d` is below `max_ms`, so the cast cannot saturate.
            d as u64
        }
    }
}

impl Default for ReconnectConfig {
    fn default() -> Self {
        ReconnectConfig {
            initial_ms: 1_000,
            factor: 2.0,
            max_ms: 30_000,
            max_attempts: Some(5),
            jitter: Jitter::Equal,
            stable_ms: 5_000,
            max_hint_ms: 300_000,
        }
    }
}

/// How a backoff delay `d` is randomised.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Jitter {
    /// Exactly `d`.
    None,
    /// Uniform in `[0, d]`.
    Full,
    /// Uniform in `[d/2, d]`: spreads a herd without ever retrying at once (the default).
    #[default]
    Equal,
}

/// Heartbeat timing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeartbeatConfig {
    /// Time between pings while open.
    pub interval_ms: u64,
    /// Silence after a ping that declares the link dead.
    pub timeout_ms: u64,
    /// A deadline handled later than this means the host was suspended: probe instead of giving up.
    pub suspend_detect_ms: u64,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        HeartbeatConfig {
            interval_ms: 30_000,
            timeout_ms: 10_000,
            suspend_detect_ms: 5_000,
        }
    }
}

/// Bounds and policy of the outbox.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboxConfig {
    /// Most messages held (queued plus awaiting ack).
    pub max_messages: usize,
    /// Most bytes held, counting encoded frames.
    pub max_bytes: usize,
    /// What happens when a new message does not fit.
    pub overflow: Overflow,
    /// How long an at-least-once message may wait for its ack before `ack_timeout`.
    pub ack_timeout_ms: u64,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            max_messages: 100,
            max_bytes: 1 << 20,
            overflow: Overflow::DropOldest,
            ack_timeout_ms: 10_000,
        }
    }
}

/// What the outbox does when a new message does not fit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Overflow {
    /// Drop the oldest held messages to make room (the default: realtime state goes stale first).
    #[default]
    DropOldest,
    /// Drop the new message.
    DropNewest,
    /// Refuse the new message with `SessionError::QueueFull`.
    Reject,
}

/// Client-side token bucket on outbound application messages: `"off"` or `{per_sec, burst}`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum RateLimitConfig {
    /// No client-side limit.
    #[default]
    Off,
    /// A token bucket that starts full.
    Bucket {
        /// Tokens added per second.
        per_sec: u32,
        /// Bucket capacity.
        burst: u32,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BucketRepr {
    per_sec: u32,
    burst: u32,
}

impl Serialize for RateLimitConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            RateLimitConfig::Off => s.serialize_str("off"),
            RateLimitConfig::Bucket { per_sec, burst } => {
                BucketRepr { per_sec, burst }.serialize(s)
            }
        }
    }
}

impl<'de> Deserialize<'de> for RateLimitConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let v = serde_json::Value::deserialize(d)?;
        match v {
            serde_json::Value::String(s) if s == "off" => Ok(RateLimitConfig::Off),
            serde_json::Value::Object(_) => {
                let b: BucketRepr = serde_json::from_value(v)
                    .map_err(|e| D::Error::custom(format!("rate_limit: {e}")))?;
                Ok(RateLimitConfig::Bucket {
                    per_sec: b.per_sec,
                    burst: b.burst,
                })
            }
            _ => Err(D::Error::custom(
                "rate_limit: expected \"off\" or {\"per_sec\": N, \"burst\": N}",
            )),
        }
    }
}

/// A credential that never shows in `Debug` output or serialized config.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// What a secret shows in traces, logs and `Debug`.
    pub const REDACTED: &'static str = REDACTED;

    /// Wraps a credential.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The credential itself, for the `hello` frame only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// What a secret looks like in every serialized or printed form.
pub(crate) const REDACTED: &str = "<redacted>";

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({REDACTED})")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// Most URLs `urls` may list.
pub(crate) const MAX_URLS: usize = 16;

/// Longest user id, token or key the session accepts.
pub(crate) const MAX_ID_BYTES: usize = 128;
const MAX_TOKEN_BYTES: usize = 8192;

impl Config {
    /// A default configuration for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Config {
            url: url.into(),
            ..Config::default()
        }
    }

    /// Parses the canonical JSON form and validates it.
    pub fn from_json(text: &str) -> Result<Config, ConfigError> {
        let cfg: Config =
            serde_json::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The canonical JSON form (secrets redacted).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The URLs attempts rotate through: `urls`, or `url` alone.
    pub fn endpoints(&self) -> Vec<&str> {
        if self.urls.is_empty() {
            vec![self.url.as_str()]
        } else {
            self.urls.iter().map(String::as_str).collect()
        }
    }

    /// Checks every value, naming the first offending field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_urls(&self.url, &self.urls, self.require_tls)?;
        let r = &self.reconnect;
        at_least("reconnect.initial_ms", r.initial_ms, 1)?;
        if !(r.factor.is_finite() && (1.0..=100.0).contains(&r.factor)) {
            return Err(ConfigError::invalid(
                "reconnect.factor",
                format!("must be between 1 and 100, got {}", r.factor),
            ));
        }
        if r.max_ms < r.initial_ms {
            return Err(ConfigError::invalid(
                "reconnect.max_ms",
                format!("must be at least initial_ms ({})", r.initial_ms),
            ));
        }
        at_least("connect_timeout_ms", self.connect_timeout_ms, 1)?;
        at_least("close_timeout_ms", self.close_timeout_ms, 1)?;
        at_least("heartbeat.interval_ms", self.heartbeat.interval_ms, 1)?;
        at_least("heartbeat.timeout_ms", self.heartbeat.timeout_ms, 1)?;
        at_least(
            "heartbeat.suspend_detect_ms",
            self.heartbeat.suspend_detect_ms,
            1,
        )?;
        at_least("outbox.max_messages", self.outbox.max_messages as u64, 1)?;
        at_least("outbox.max_bytes", self.outbox.max_bytes as u64, 1)?;
        at_least("outbox.ack_timeout_ms", self.outbox.ack_timeout_ms, 1)?;
        at_least("max_frame_bytes", self.max_frame_bytes as u64, 256)?;
        if !(2..=128).contains(&self.max_json_depth) {
            return Err(ConfigError::invalid(
                "max_json_depth",
                format!("must be between 2 and 128, got {}", self.max_json_depth),
            ));
        }
        if self.dedupe_window > 1_000_000 {
            return Err(ConfigError::invalid(
                "dedupe_window",
                "must be at most 1000000",
            ));
        }
        if let Some(code) = self
            .fatal_close_codes
            .iter()
            .find(|c| !(1000..=4999).contains(*c))
        {
            return Err(ConfigError::invalid(
                "fatal_close_codes",
                format!("{code} is not a WebSocket close code (1000-4999)"),
            ));
        }
        if let Some(user) = &self.user_id {
            if user.is_empty() || user.len() > MAX_ID_BYTES {
                return Err(ConfigError::invalid(
                    "user_id",
                    format!("must be 1-{MAX_ID_BYTES} bytes"),
                ));
            }
        }
        if let Some(token) = &self.token {
            validate_token(token.expose())
                .map_err(|reason| ConfigError::invalid("token", reason))?;
        }
        at_least("typing.throttle_ms", self.typing.throttle_ms, 1)?;
        at_least("typing.idle_ms", self.typing.idle_ms, 1)?;
        at_least("typing.expire_ms", self.typing.expire_ms, 1)?;
        at_least("streams.stall_ms", self.streams.stall_ms, 1)?;
        at_least("streams.max_bytes", self.streams.max_bytes as u64, 1)?;
        at_least("streams.max_streams", self.streams.max_streams as u64, 1)?;
        at_least("max_buffered_bytes", self.max_buffered_bytes, 1)?;
        at_least("write_timeout_ms", self.write_timeout_ms, 1)?;
        if let RateLimitConfig::Bucket { per_sec, burst } = self.rate_limit {
            at_least("rate_limit.per_sec", per_sec as u64, 1)?;
            at_least("rate_limit.burst", burst as u64, 1)?;
        }
        Ok(())
    }
}

fn at_least(field: &str, value: u64, min: u64) -> Result<(), ConfigError> {
    if value < min {
        return Err(ConfigError::invalid(
            field,
            format!("must be at least {min}, got {value}"),
        ));
    }
    Ok(())
}

/// Checks a token's shape; the reason names what is wrong.
pub(crate) fn validate_token(token: &str) -> Result<(), String> {
    if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
        return Err(format!("must be 1-{MAX_TOKEN_BYTES} bytes"));
    }
    Ok(())
}

/// `url` or `urls` (exactly one of them), each URL checked and named by its key.
fn validate_urls(url: &str, urls: &[String], require_tls: bool) -> Result<(), ConfigError> {
    if urls.is_empty() {
        return validate_url("url", url, require_tls);
    }
    if !url.is_empty() {
        return Err(ConfigError::invalid(
            "urls",
            "set `url` or `urls`, not both",
        ));
    }
    if urls.len() > MAX_URLS {
        return Err(ConfigError::invalid(
            "urls",
            format!("at most {MAX_URLS} URLs, got {}", urls.len()),
        ));
    }
    for (i, u) in urls.iter().enumerate() {
        let field = format!("urls[{i}]");
        validate_url(&field, u, require_tls)?;
        if urls[..i].contains(u) {
            return Err(ConfigError::invalid(
                &field,
                format!("{u:?} is listed twice"),
            ));
        }
    }
    Ok(())
}

fn validate_url(field: &str, raw: &str, require_tls: bool) -> Result<(), ConfigError> {
    let bad = |reason: String| ConfigError::invalid(field, reason);
    if raw.is_empty() {
        return Err(bad("is required".into()));
    }
    let url = crate::weburl::parse(raw).map_err(|e| bad(format!("{raw:?} is not a URL: {e}")))?;
    match url.scheme.as_str() {
        "wss" => {}
        "ws" if require_tls => {
            return Err(bad(
                "require_tls is set, so the scheme must be wss://".into()
            ))
        }
        "ws" => {}
        other => {
            return Err(bad(format!(
                "scheme must be ws:// or wss://, got {other}://"
            )))
        }
    }
    if url.host.is_empty() {
        return Err(bad("has no host".into()));
    }
    if !url.username.is_empty() || !url.password.is_empty() {
        return Err(bad(
            "must not carry credentials; use the `token` key instead".into(),
        ));
    }
    if crate::weburl::query_has_token(&url.query) {
        return Err(bad(
            "must not carry a token in its query; use the `token` key instead".into(),
        ));
    }
    Ok(())
}

/// Timing of typing indicators.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TypingConfig {
    /// Minimum gap between two "start" signals for the same project.
    pub throttle_ms: u64,
    /// Local typing stops automatically after this long without a keystroke.
    pub idle_ms: u64,
    /// A remote typist disappears after this long without a refresh.
    pub expire_ms: u64,
}

impl Default for TypingConfig {
    fn default() -> Self {
        TypingConfig {
            throttle_ms: 3000,
            idle_ms: 5000,
            expire_ms: 6000,
        }
    }
}

/// Limits and timing for agent stream assembly.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamsConfig {
    /// Milliseconds without a chunk before a live stream is reported stalled.
    pub stall_ms: u64,
    /// Maximum assembled content per stream, in bytes.
    pub max_bytes: usize,
    /// Maximum number of streams kept (live and finished).
    pub max_streams: usize,
    /// Maximum out-of-order chunks buffered per stream.
    pub max_pending: usize,
}

impl Default for StreamsConfig {
    fn default() -> Self {
        StreamsConfig {
            stall_ms: 30_000,
            max_bytes: 1_048_576,
            max_streams: 16,
            max_pending: 256,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn omitted_keys_take_defaults_and_null_attempts_means_forever() {
        let c = Config::from_json(r#"{"url":"ws://127.0.0.1:1/ws"}"#).unwrap();
        assert_eq!(c.reconnect.max_attempts, Some(5));
        assert_eq!(c.heartbeat.interval_ms, 30_000);
        assert_eq!(c.outbox.max_messages, 100);
        let c =
            Config::from_json(r#"{"url":"ws://h/ws","reconnect":{"max_attempts":null}}"#).unwrap();
        assert_eq!(c.reconnect.max_attempts, None);
    }

    #[test]
    fn urls_list_the_endpoints_and_one_url_stays_valid() {
        let one = Config::from_json(r#"{"url":"ws://a/ws"}"#).unwrap();
        assert_eq!(one.endpoints(), ["ws://a/ws"]);
        assert!(!one.to_json().contains("urls"), "{}", one.to_json());
        let many = Config::from_json(r#"{"urls":["ws://a/ws","wss://b/ws"]}"#).unwrap();
        assert_eq!(many.endpoints(), ["ws://a/ws", "wss://b/ws"]);
        assert_eq!(Config::from_json(&many.to_json()).unwrap(), many);
        let sixteen: Vec<String> = (0..MAX_URLS).map(|i| format!("ws://h{i}/")).collect();
        let mut cfg = Config {
            urls: sixteen,
            ..Config::default()
        };
        assert!(cfg.validate().is_ok());
        cfg.urls.push("ws://h99/".into());
        assert_eq!(cfg.validate().unwrap_err().field(), Some("urls"));
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (r#"{"url":"http://h/"}"#, "url"),
            (r#"{"url":"ws://u:p@h/"}"#, "url"),
            (r#"{"url":"ws://h/?token=abc"}"#, "url"),
            (r#"{"url":"ws://h/","require_tls":true}"#, "url"),
            (
                r#"{"url":"ws://h/","reconnect":{"factor":0.5}}"#,
                "reconnect.factor",
            ),
            (
                r#"{"url":"ws://h/","reconnect":{"initial_ms":0}}"#,
                "reconnect.initial_ms",
            ),
            (
                r#"{"url":"ws://h/","max_buffered_bytes":0}"#,
                "max_buffered_bytes",
            ),
            (
                r#"{"url":"ws://h/","write_timeout_ms":0}"#,
                "write_timeout_ms",
            ),
            (
                r#"{"url":"ws://h/","reconnect":{"max_ms":10}}"#,
                "reconnect.max_ms",
            ),
            (
                r#"{"url":"ws://h/","heartbeat":{"timeout_ms":0}}"#,
                "heartbeat.timeout_ms",
            ),
            (
                r#"{"url":"ws://h/","outbox":{"max_messages":0}}"#,
                "outbox.max_messages",
            ),
            (r#"{"url":"ws://h/","user_id":""}"#, "user_id"),
            (r#"{"url":"ws://h/","token":""}"#, "token"),
            (
                r#"{"url":"ws://h/","fatal_close_codes":[99]}"#,
                "fatal_close_codes",
            ),
            (
                r#"{"url":"ws://h/","rate_limit":{"per_sec":0,"burst":1}}"#,
                "rate_limit.per_sec",
            ),
            (r#"{"url":"ws://a/","urls":["ws://b/"]}"#, "urls"),
            (r#"{"urls":["ws://a/","http://b/"]}"#, "urls[1]"),
            (r#"{"urls":["ws://a/","ws://a/"]}"#, "urls[1]"),
            (
                r#"{"urls":["wss://a/","ws://b/"],"require_tls":true}"#,
                "urls[1]",
            ),
            (r#"{"urls":[]}"#, "url"),
        ];
        for (json, field) in cases {
            let err = Config::from_json(json).unwrap_err();
            assert_eq!(err.field(), Some(field), "{json}: {err}");
        }
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_parse_errors() {
        assert!(matches!(
            Config::from_json(r#"{"url":"ws://h/","reconect":{}}"#),
            Err(ConfigError::Parse(m)) if m.contains("reconect")
        ));
        assert!(matches!(
            Config::from_json(r#"{"url":"ws://h/","rate_limit":"on"}"#),
            Err(ConfigError::Parse(m)) if m.contains("rate_limit")
        ));
    }

    #[test]
    fn rate_limit_round_trips() {
        let c = Config::from_json(r#"{"url":"wss://h/","rate_limit":{"per_sec":20,"burst":40}}"#)
            .unwrap();
        assert_eq!(
            c.rate_limit,
            RateLimitConfig::Bucket {
                per_sec: 20,
                burst: 40
            }
        );
        let back = Config::from_json(&c.to_json()).unwrap();
        assert_eq!(back.rate_limit, c.rate_limit);
        assert!(Config::default()
            .to_json()
            .contains(r#""rate_limit":"off""#));
    }

    #[test]
    fn token_is_redacted_everywhere() {
        let c = Config::from_json(r#"{"url":"wss://h/","token":"hunter2"}"#).unwrap();
        assert_eq!(c.token.as_ref().unwrap().expose(), "hunter2");
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!c.to_json().contains("hunter2"));
        assert!(c.to_json().contains(REDACTED));
    }
}

//! The hub core for the test kit's in-process hub (`sockline/testing`'s `VirtualHub`): the JS
//! layer plays the hub's driver (sockets, latency, faults, timers) and this class only forwards to
//! `sockline_core::hub::HubCore`, with outputs as the core's canonical JSON objects.

use serde_json::{Map, Value};
use sockline_core::hub::{
    AgentSource, ChaosConfig, ConnId, HubCore, HubInput, HubLimits, HubOutput, HubSettings,
    InMemoryBroker, ScriptedAgent,
};
use sockline_core::RateLimitConfig;
use wasm_bindgen::prelude::*;

use crate::convert::{parse, snake_keys_deep, time, whole, Failure};

type Result<T> = std::result::Result<T, Failure>;

/// The hub options every test-kit hub takes (camelCased `HubSettings` fields, the agent, chaos).
const HUB_KEYS: &[&str] = &[
    "token",
    "replayCapacity",
    "sessionTtlMs",
    "helloTimeoutMs",
    "agentChunks",
    "agentChunkMs",
    "dedupeWindow",
    "idleTimeoutMs",
    "maxFrameBytes",
    "maxJsonDepth",
    "rateLimit",
    "chaos",
    "restartRetryAfterMs",
    "restartSpreadMs",
    "limits",
    "tokenWarningMs",
];

/// The chaos options (camelCased `ChaosConfig` fields).
const CHAOS_KEYS: &[&str] = &[
    "seed",
    "dropMs",
    "closeCode",
    "pongDelayMs",
    "swallowPongs",
    "stallMs",
    "corrupt",
];

fn invalid(message: impl Into<String>) -> Failure {
    Failure::new("invalid_argument", message)
}

/// The object `v` is, with no key outside `allowed` (a misspelt option is an error, not a default).
fn object<'a>(what: &str, v: &'a Value, allowed: &[&[&str]]) -> Result<&'a Map<String, Value>> {
    let map = v
        .as_object()
        .ok_or_else(|| invalid(format!("{what} must be an object")))?;
    if let Some(k) = map
        .keys()
        .find(|k| !allowed.iter().any(|keys| keys.contains(&k.as_str())))
    {
        return Err(invalid(format!("{what}: unknown option {k:?}")));
    }
    Ok(map)
}

/// A key's value, `None` when absent or `null` (the default then applies).
fn get<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    map.get(key).filter(|v| !v.is_null())
}

fn number(key: &str, v: &Value) -> Result<u64> {
    v.as_u64()
        .ok_or_else(|| invalid(format!("{key} must be a whole number")))
}

fn size(key: &str, v: &Value) -> Result<usize> {
    Ok(usize::try_from(number(key, v)?).unwrap_or(usize::MAX))
}

/// `[from, to]` in ms, `from <= to`.
fn range(key: &str, v: &Value) -> Result<std::ops::Range<u64>> {
    match v.as_array().map(Vec::as_slice) {
        Some([a, b]) => {
            let (a, b) = (number(key, a)?, number(key, b)?);
            if a > b {
                return Err(invalid(format!("{key} must be [from, to] with from <= to")));
            }
            Ok(a..b)
        }
        _ => Err(invalid(format!("{key} must be [from, to] in ms"))),
    }
}

fn chaos(v: &Value, hub_seed: u64) -> Result<ChaosConfig> {
    let map = object("chaos", v, &[CHAOS_KEYS])?;
    let mut c = ChaosConfig {
        // One seed fixes the whole hub unless the test picks the chaos its own.
        seed: hub_seed,
        ..ChaosConfig::default()
    };
    if let Some(v) = get(map, "seed") {
        c.seed = number("chaos.seed", v)?;
    }
    if let Some(v) = get(map, "dropMs") {
        c.drop_ms = Some(range("chaos.dropMs", v)?);
    }
    if let Some(v) = get(map, "closeCode") {
        let code = number("chaos.closeCode", v)?;
        c.close_code =
            Some(u16::try_from(code).map_err(|_| invalid("chaos.closeCode must be a close code"))?);
    }
    if let Some(v) = get(map, "pongDelayMs") {
        c.pong_delay_ms = Some(number("chaos.pongDelayMs", v)?);
    }
    if let Some(v) = get(map, "swallowPongs") {
        c.swallow_pongs = v
            .as_bool()
            .ok_or_else(|| invalid("chaos.swallowPongs must be a boolean"))?;
    }
    if let Some(v) = get(map, "stallMs") {
        c.stall_ms = Some(range("chaos.stallMs", v)?);
    }
    if let Some(v) = get(map, "corrupt") {
        match v.as_f64() {
            Some(p) if (0.0..=1.0).contains(&p) => c.corrupt = p,
            _ => return Err(invalid("chaos.corrupt must be a number in 0..1")),
        }
    }
    Ok(c)
}

/// Hub settings and agent from a test's options (camelCased; the hub's defaults for the rest;
/// `agentChunks: null` is a hub without an agent). `extra` names the caller's own keys.
pub(crate) fn hub_options(
    options: &Value,
    seed: u64,
    extra: &[&str],
) -> Result<(HubSettings, Option<ScriptedAgent>)> {
    let map = object("options", options, &[HUB_KEYS, extra])?;
    let mut s = HubSettings::default();
    if let Some(v) = get(map, "token") {
        let t = v
            .as_str()
            .ok_or_else(|| invalid("token must be a string"))?;
        s.token = Some(t.to_string());
    }
    if let Some(v) = get(map, "replayCapacity") {
        s.replay_capacity = size("replayCapacity", v)?;
    }
    if let Some(v) = get(map, "sessionTtlMs") {
        s.session_ttl_ms = number("sessionTtlMs", v)?;
    }
    if let Some(v) = get(map, "helloTimeoutMs") {
        s.hello_timeout_ms = number("helloTimeoutMs", v)?;
    }
    if let Some(v) = get(map, "agentChunkMs") {
        s.agent_chunk_ms = number("agentChunkMs", v)?;
    }
    if let Some(v) = get(map, "dedupeWindow") {
        s.dedupe_window = size("dedupeWindow", v)?;
    }
    if let Some(v) = get(map, "idleTimeoutMs") {
        s.idle_timeout_ms = number("idleTimeoutMs", v)?;
    }
    if let Some(v) = get(map, "maxFrameBytes") {
        s.max_frame_bytes = size("maxFrameBytes", v)?;
    }
    if let Some(v) = get(map, "maxJsonDepth") {
        s.max_json_depth = size("maxJsonDepth", v)?;
    }
    if let Some(v) = get(map, "rateLimit") {
        s.rate_limit = serde_json::from_value::<RateLimitConfig>(snake_keys_deep(v.clone()))
            .map_err(|e| invalid(format!("rateLimit: {e}")))?;
    }
    if let Some(v) = get(map, "chaos") {
        s.chaos = chaos(v, seed)?;
    }
    if let Some(v) = get(map, "restartRetryAfterMs") {
        s.restart_retry_after_ms = number("restartRetryAfterMs", v)?;
    }
    if let Some(v) = get(map, "restartSpreadMs") {
        s.restart_spread_ms = number("restartSpreadMs", v)?;
    }
    if let Some(v) = get(map, "limits") {
        // The core's own camelCase keys, unknown ones refused.
        s.limits = serde_json::from_value::<HubLimits>(v.clone())
            .map_err(|e| invalid(format!("limits: {e}")))?;
    }
    if let Some(v) = get(map, "tokenWarningMs") {
        s.token_warning_ms = number("tokenWarningMs", v)?;
    }
    let agent = match map.get("agentChunks") {
        None => Some(ScriptedAgent::default()),
        Some(Value::Null) => None,
        Some(v) => Some(ScriptedAgent {
            chunks: u32::try_from(number("agentChunks", v)?).unwrap_or(u32::MAX),
        }),
    };
    Ok((s, agent))
}

/// The real hub core (`HubCore` with the in-memory broker), for a driver written in JS.
#[wasm_bindgen]
pub struct Hub {
    inner: HubCore<InMemoryBroker>,
    /// The last connection id handed out (ids are never reused in one hub's lifetime).
    last_conn: u64,
}

#[wasm_bindgen]
impl Hub {
    /// A hub from options JSON (`token`, `replayCapacity`, `sessionTtlMs`, `helloTimeoutMs`,
    /// `agentChunks` (`null`: no agent), `agentChunkMs`, `dedupeWindow`, `idleTimeoutMs`,
    /// `maxFrameBytes`, `maxJsonDepth`, `rateLimit`, `chaos`, `restartRetryAfterMs`,
    /// `restartSpreadMs`, `limits`, `tokenWarningMs`); `seed` fixes session ids and chaos.
    #[wasm_bindgen(constructor)]
    pub fn new(options_json: &str, seed: f64) -> Result<Hub> {
        let seed = whole("seed", seed)?;
        let (settings, agent) = hub_options(&parse("options", options_json)?, seed, &[])?;
        // Epochs from the seed too: a test kit's run is the same on every run.
        let broker = InMemoryBroker::new(settings.replay_capacity, seed ^ 0x0e90_c4e9);
        let core = HubCore::new(settings, broker, seed);
        let inner = match agent {
            Some(a) => core.with_agent(Box::new(a) as Box<dyn AgentSource>),
            None => core,
        };
        Ok(Hub {
            inner,
            last_conn: 0,
        })
    }

    /// A connection finished its opening handshake at `nowMs`; returns its new id.
    pub fn accept(&mut self, now_ms: f64) -> Result<f64> {
        let now = time(now_ms)?;
        self.last_conn += 1;
        self.inner.accepted(now, ConnId(self.last_conn));
        Ok(self.last_conn as f64)
    }

    /// A text frame arrived on a connection.
    pub fn frame(&mut self, now_ms: f64, conn: f64, text: &str) -> Result<()> {
        self.inner.frame(time(now_ms)?, conn_id(conn)?, text);
        Ok(())
    }

    /// A binary frame of `len` bytes arrived on a connection.
    #[wasm_bindgen(js_name = binaryFrame)]
    pub fn binary_frame(&mut self, now_ms: f64, conn: f64, len: f64) -> Result<()> {
        let len = usize::try_from(whole("len", len)?).unwrap_or(usize::MAX);
        self.inner.binary_frame(time(now_ms)?, conn_id(conn)?, len);
        Ok(())
    }

    /// A frame over the transport's limit (twice `maxFrameBytes`) arrived on a connection.
    #[wasm_bindgen(js_name = frameTooLarge)]
    pub fn frame_too_large(&mut self, now_ms: f64, conn: f64) -> Result<()> {
        self.inner.frame_too_large(time(now_ms)?, conn_id(conn)?);
        Ok(())
    }

    /// The connection's write queue is full: its peer is not reading.
    #[wasm_bindgen(js_name = writeBlocked)]
    pub fn write_blocked(&mut self, now_ms: f64, conn: f64) -> Result<()> {
        self.inner.write_blocked(time(now_ms)?, conn_id(conn)?);
        Ok(())
    }

    /// The connection is gone (closed by either side, failed, or let go by the driver).
    pub fn closed(&mut self, now_ms: f64, conn: f64) -> Result<()> {
        self.inner.closed(time(now_ms)?, conn_id(conn)?);
        Ok(())
    }

    /// The driver's timer fired at `nowMs`.
    pub fn timeout(&mut self, now_ms: f64) -> Result<()> {
        self.inner.handle_timeout(time(now_ms)?);
        Ok(())
    }

    /// The hub is going down: every connection is told so (1012, with the restart window).
    pub fn shutdown(&mut self, now_ms: f64) -> Result<()> {
        self.inner.shutdown(time(now_ms)?);
        Ok(())
    }

    /// Applies any input in its canonical JSON form (`{"kind": "frame", "conn": 1, ...}`).
    #[wasm_bindgen(js_name = handleInput)]
    pub fn handle_input(&mut self, now_ms: f64, input_json: &str) -> Result<()> {
        let input: HubInput = serde_json::from_str(input_json)
            .map_err(|e| Failure::new("invalid_input", format!("invalid hub input: {e}")))?;
        let now = time(now_ms)?;
        if let HubInput::Accepted { conn } = &input {
            // An id the caller picked is never handed out again by `accept`.
            self.last_conn = self.last_conn.max(conn.0);
        }
        self.inner.handle_input(now, input);
        Ok(())
    }

    /// Every output up to the next deadline, as a JSON array of canonical objects (`send`,
    /// `close`, `abort`, `stall`, and the final `timeout` naming that deadline).
    pub fn drain(&mut self) -> String {
        let mut out = String::from("[");
        loop {
            let o = self.inner.poll_output();
            if out.len() > 1 {
                out.push(',');
            }
            out.push_str(&o.to_json());
            if matches!(o, HubOutput::Timeout { .. }) {
                break;
            }
        }
        out.push(']');
        out
    }

    /// When `timeout` is next needed (ms), or `undefined`.
    #[wasm_bindgen(js_name = pollTimeout)]
    pub fn poll_timeout(&self) -> Option<f64> {
        self.inner.poll_timeout().map(|d| d.as_millis() as f64)
    }

    /// The frame limit in use (after the core's minimum): a driver cuts off frames over twice it.
    #[wasm_bindgen(getter, js_name = maxFrameBytes)]
    pub fn max_frame_bytes(&self) -> f64 {
        self.inner.settings().max_frame_bytes as f64
    }

    /// Application messages delivered to sessions so far.
    #[wasm_bindgen(getter)]
    pub fn relayed(&self) -> f64 {
        self.inner.relayed() as f64
    }

    /// Connections the hub knows (including those it is closing).
    #[wasm_bindgen(getter)]
    pub fn connections(&self) -> f64 {
        self.inner.connections() as f64
    }

    /// Sessions the hub keeps (connected or resumable).
    #[wasm_bindgen(getter)]
    pub fn sessions(&self) -> f64 {
        self.inner.sessions() as f64
    }
}

fn conn_id(conn: f64) -> Result<ConnId> {
    Ok(ConnId(whole("conn", conn)?))
}

#[cfg(test)]
mod tests;

//! `sockline-wasm`: sockline-core for JavaScript (browser and Node) through wasm-bindgen.
//!
//! The boundary carries numbers, strings and JSON text only, so the generated glue stays small
//! and the same canonical JSON that Rust, Python and traces use reaches JS unchanged: outputs
//! and events are their canonical objects (snake_case keys, as documented in
//! `docs/session-json.md`); options and method names are the core's, camelCased. Every decision
//! stays in the core: this crate converts and forwards.
//!
//! On the host (`cargo test`) the same methods are plain Rust, which is how they are tested; a
//! refused call returns a [`Failure`] that wasm-bindgen throws as `{code, message}` JSON text.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod convert;
#[cfg(feature = "testing")]
mod hub;
#[cfg(feature = "testing")]
mod network;
#[cfg(target_arch = "wasm32")]
mod weburl;

use serde_json::Value;
use sockline_core::{Config, Event, Output, SendRequest, StreamState, SubscriptionId};
#[cfg(feature = "testing")]
use sockline_core::{Input, Outcome};
use wasm_bindgen::prelude::*;

pub use convert::Failure;
use convert::{parse, snake_keys_deep, snake_keys_top, time, whole};
#[cfg(feature = "testing")]
pub use hub::Hub;
#[cfg(feature = "testing")]
pub use network::{Network, Watchdog};

/// A session config from options already snake-cased, its URL checked by the engine's `URL` on
/// wasm (the `url` crate on the host).
pub(crate) fn config(options: Value) -> Result<Config> {
    #[cfg(target_arch = "wasm32")]
    weburl::install();
    Ok(Config::from_json(&options.to_string())?)
}

/// A deterministic sockline client session, driven by the JS driver.
#[wasm_bindgen]
pub struct Session {
    inner: sockline_core::Session,
    /// The next frame's UTF-8 bytes, written in place by the JS layer (`frameBuffer`, then
    /// `receive`): a frame crosses the boundary with one `TextEncoder.encodeInto`, no allocation
    /// and no copy loop in JS.
    input: Vec<u8>,
    /// What `receive` drained, in its common shapes, as numbers the JS layer reads in place:
    /// the deadline (NaN: none), whether `shouldReportBuffered` holds (1 or 0), then the ids of
    /// the subscriptions of the frame's message.
    /// Its length never changes, so its address (`resultBuffer`) does not either.
    result: Vec<f64>,
    /// What `receive` drained in any other shape, as JSON (`takeReceived`).
    received: String,
}

/// An input buffer larger than this is given back once a smaller frame asks for room.
const KEEP_INPUT_BYTES: usize = 64 * 1024;

/// The deadline, the buffered flag and up to this many subscription ids fit `Session::result`.
const RESULT_SUBSCRIPTIONS: usize = 15;

/// `Ok(T)` or the refusal wasm-bindgen throws.
type Result<T> = std::result::Result<T, Failure>;

#[wasm_bindgen]
impl Session {
    /// A session from options JSON (the core's config keys camelCased: `url`, `userId`,
    /// `reconnect: {initialMs, ...}`, ...), seeded with `seed`, at driver time `nowMs`.
    #[wasm_bindgen(constructor)]
    pub fn new(options_json: &str, seed: f64, now_ms: f64) -> Result<Session> {
        let config = config(snake_keys_deep(parse("options", options_json)?))?;
        // A JS number holds 53 bits; the seed's other bits are zero, which is fine for a PRNG seed.
        let seed = whole("seed", seed)?;
        let inner = sockline_core::Session::new(config, seed, time(now_ms)?)?;
        Ok(Session {
            inner,
            input: Vec::new(),
            result: vec![0.0; 2 + RESULT_SUBSCRIPTIONS],
            received: String::new(),
        })
    }

    /// Applies any input in its canonical JSON form; returns the outcome as JSON
    /// (`null`, an id string, a subscription number, a restored count).
    // Only in the test kit's module: the client's typed methods cover every input a browser
    // feeds, and `Input`'s decoder was 18 KB gzipped of the client's bundle with `replayTrace`.
    #[cfg(feature = "testing")]
    #[wasm_bindgen(js_name = handleInput)]
    pub fn handle_input(&mut self, now_ms: f64, input_json: &str) -> Result<String> {
        let input: Input = serde_json::from_str(input_json)
            .map_err(|e| Failure::new("invalid_input", format!("invalid input: {e}")))?;
        let outcome = self.inner.handle_input(time(now_ms)?, input)?;
        Ok(outcome_json(&outcome))
    }

    /// Every output up to the next deadline, as a JSON array of canonical objects (the final
    /// `timeout` included, so the driver knows when to come back).
    pub fn drain(&mut self) -> String {
        self.drain_json()
    }

    /// Room for `len` bytes of frame in this session's input buffer; returns its address in the
    /// wasm memory, where the JS layer encodes frames for `receive` (valid until the next call
    /// of this method: a large buffer is given back when a small one is asked for).
    #[wasm_bindgen(js_name = frameBuffer)]
    pub fn frame_buffer(&mut self, len: usize) -> usize {
        if self.input.len() > KEEP_INPUT_BYTES && len <= KEEP_INPUT_BYTES {
            self.input = Vec::new();
        }
        if self.input.len() < len {
            self.input.resize(len, 0);
        }
        self.input.as_mut_ptr() as usize
    }

    /// The address of the numbers `receive` leaves (fixed for the session's life).
    #[wasm_bindgen(js_name = resultBuffer)]
    pub fn result_buffer(&self) -> usize {
        self.result.as_ptr() as usize
    }

    /// A text frame arrived, its `len` UTF-8 bytes written at `frameBuffer`: the same input as
    /// `frame`, then every output up to the next deadline, as `drain` would return them. The
    /// common outcomes come back as numbers in `resultBuffer`, and the return value says which:
    /// `n >= 0`: the outputs are one `message` event of this frame for the `n` subscriptions
    /// whose ids follow the deadline and the flag (none if `n` is 0), then the `timeout` with
    /// that deadline; the flag is `shouldReportBuffered(buffered)` once they are drained (a
    /// driver that carries these out without sending anything saves a call); `-1`: anything
    /// else, as `drain`'s JSON array in `takeReceived`. Either way the `message`
    /// event of this frame (there is at most one) comes without its envelope: that is the
    /// canonical envelope of the very text the JS layer just passed in, which it builds from
    /// its own `JSON.parse` of the text instead of the core serializing it to be parsed again.
    pub fn receive(&mut self, now_ms: f64, len: usize, buffered: f64) -> Result<f64> {
        let now = time(now_ms)?;
        let buffered = whole("buffered", buffered)?;
        let text = self
            .input
            .get(..len)
            .and_then(|b| std::str::from_utf8(b).ok())
            .ok_or_else(|| Failure::new("invalid_argument", "frame buffer is not UTF-8"))?;
        // Outputs still queued from earlier inputs come first and keep their envelopes.
        let earlier = self.inner.pending_outputs();
        self.inner.frame(now, text);
        let first = self.inner.poll_output();
        if earlier == 0 {
            match &first {
                Output::Timeout(deadline) => {
                    self.result[0] = deadline_number(*deadline);
                    self.result[1] = self.buffered_flag(buffered);
                    return Ok(0.0);
                }
                Output::Event(Event::Message { subscriptions, .. })
                    if subscriptions.len() <= RESULT_SUBSCRIPTIONS =>
                {
                    let second = self.inner.poll_output();
                    if let Output::Timeout(deadline) = second {
                        self.result[0] = deadline_number(deadline);
                        self.result[1] = self.buffered_flag(buffered);
                        for (slot, id) in self.result[2..].iter_mut().zip(subscriptions) {
                            *slot = id.0 as f64;
                        }
                        return Ok(subscriptions.len() as f64);
                    }
                    let mut out = String::from("[");
                    push_output(&mut out, &first, true);
                    out.push(',');
                    push_output(&mut out, &second, true);
                    self.received = self.drain_rest(out, &second, Some(0));
                    return Ok(-1.0);
                }
                _ => {}
            }
        }
        let mut out = String::from("[");
        push_output(&mut out, &first, earlier == 0);
        self.received = self.drain_rest(out, &first, Some(earlier.saturating_sub(1)));
        Ok(-1.0)
    }

    /// The JSON array of `receive`'s outputs when it returned -1 (taken: empty afterwards).
    #[wasm_bindgen(js_name = takeReceived)]
    pub fn take_received(&mut self) -> String {
        std::mem::take(&mut self.received)
    }

    /// When `handleTimeout` is next needed (driver ms), or `undefined`.
    #[wasm_bindgen(js_name = pollTimeout)]
    pub fn poll_timeout(&self) -> Option<f64> {
        self.inner.poll_timeout().map(|d| d.at.as_millis() as f64)
    }

    /// Fires whatever fell due at `nowMs`.
    #[wasm_bindgen(js_name = handleTimeout)]
    pub fn handle_timeout(&mut self, now_ms: f64) -> Result<()> {
        self.inner.handle_timeout(time(now_ms)?);
        Ok(())
    }

    /// Opens the connection (from idle, closed or failed); while reconnecting, opens the waiting attempt now.
    pub fn connect(&mut self, now_ms: f64) -> Result<()> {
        Ok(self.inner.connect(time(now_ms)?)?)
    }

    /// Closes with 1000; the session never reconnects on its own after this.
    pub fn disconnect(&mut self, now_ms: f64) -> Result<()> {
        self.inner.disconnect(time(now_ms)?);
        Ok(())
    }

    /// The transport the session asked for is open.
    #[wasm_bindgen(js_name = transportOpened)]
    pub fn transport_opened(&mut self, now_ms: f64) -> Result<()> {
        self.inner.transport_opened(time(now_ms)?);
        Ok(())
    }

    /// A close frame arrived (`code` undefined: a frame without one).
    #[wasm_bindgen(js_name = transportClosed)]
    pub fn transport_closed(&mut self, now_ms: f64, code: Option<u16>, reason: &str) -> Result<()> {
        self.inner.transport_closed(time(now_ms)?, code, reason);
        Ok(())
    }

    /// The transport ended without a close frame.
    #[wasm_bindgen(js_name = transportLost)]
    pub fn transport_lost(&mut self, now_ms: f64) -> Result<()> {
        self.inner.transport_lost(time(now_ms)?);
        Ok(())
    }

    /// The transport failed with this text.
    #[wasm_bindgen(js_name = transportError)]
    pub fn transport_error(&mut self, now_ms: f64, message: &str) -> Result<()> {
        self.inner.transport_error(time(now_ms)?, message);
        Ok(())
    }

    /// A text frame arrived.
    pub fn frame(&mut self, now_ms: f64, text: &str) -> Result<()> {
        self.inner.frame(time(now_ms)?, text);
        Ok(())
    }

    /// A binary frame of `len` bytes arrived.
    #[wasm_bindgen(js_name = binaryFrame)]
    pub fn binary_frame(&mut self, now_ms: f64, len: f64) -> Result<()> {
        let len = usize::try_from(whole("len", len)?).unwrap_or(usize::MAX);
        self.inner.binary_frame(time(now_ms)?, len);
        Ok(())
    }

    /// The transport holds `bytes` of sent frames unsent (a browser's `bufferedAmount`).
    pub fn buffered(&mut self, now_ms: f64, bytes: f64) -> Result<()> {
        self.inner.buffered(time(now_ms)?, whole("bytes", bytes)?);
        Ok(())
    }

    /// Whether the driver should report `buffered(bytes)` now.
    #[wasm_bindgen(js_name = shouldReportBuffered)]
    pub fn should_report_buffered(&self, bytes: f64) -> Result<bool> {
        Ok(self.inner.should_report_buffered(whole("bytes", bytes)?))
    }

    /// Sends (or queues) a message (`{type, data, projectId?, delivery?, ttlMs?, coalesce?, id?,
    /// unixMs?}` as JSON); returns its id.
    pub fn send(&mut self, now_ms: f64, message_json: &str) -> Result<String> {
        let req: SendRequest =
            serde_json::from_value(snake_keys_top(parse("message", message_json)?))
                .map_err(|e| Failure::new("invalid_message", format!("invalid message: {e}")))?;
        Ok(self.inner.send(time(now_ms)?, req)?)
    }

    /// Subscribes to `pattern` (`type`, `prefix*` or `*`), optionally for one project; returns
    /// the subscription number.
    pub fn subscribe(
        &mut self,
        now_ms: f64,
        pattern: &str,
        project_id: Option<f64>,
    ) -> Result<f64> {
        let project_id = project_id.map(|p| whole("projectId", p)).transpose()?;
        let id = self.inner.subscribe(time(now_ms)?, pattern, project_id)?;
        Ok(id.0 as f64)
    }

    /// Removes a subscription.
    pub fn unsubscribe(&mut self, now_ms: f64, id: f64) -> Result<()> {
        let id = SubscriptionId(whole("id", id)?);
        Ok(self.inner.unsubscribe(time(now_ms)?, id)?)
    }

    /// Joins a project (re-joined after every reconnect).
    #[wasm_bindgen(js_name = joinProject)]
    pub fn join_project(&mut self, now_ms: f64, project_id: f64) -> Result<()> {
        let p = whole("projectId", project_id)?;
        Ok(self.inner.join_project(time(now_ms)?, p)?)
    }

    /// Leaves a project.
    #[wasm_bindgen(js_name = leaveProject)]
    pub fn leave_project(&mut self, now_ms: f64, project_id: f64) -> Result<()> {
        let p = whole("projectId", project_id)?;
        self.inner.leave_project(time(now_ms)?, p);
        Ok(())
    }

    /// The local user is typing in a project.
    #[wasm_bindgen(js_name = startTyping)]
    pub fn start_typing(&mut self, now_ms: f64, project_id: f64) -> Result<()> {
        let p = whole("projectId", project_id)?;
        Ok(self.inner.start_typing(time(now_ms)?, p)?)
    }

    /// The local user stopped typing in a project.
    #[wasm_bindgen(js_name = stopTyping)]
    pub fn stop_typing(&mut self, now_ms: f64, project_id: f64) -> Result<()> {
        let p = whole("projectId", project_id)?;
        Ok(self.inner.stop_typing(time(now_ms)?, p)?)
    }

    /// Users typing in a project, as a JSON array.
    #[wasm_bindgen(js_name = typingUsers)]
    pub fn typing_users(&self, project_id: f64) -> Result<String> {
        let users = self.inner.typing_users(whole("projectId", project_id)?);
        Ok(Value::from(users).to_string())
    }

    /// Members present in a project, as a JSON array.
    pub fn presence(&self, project_id: f64) -> Result<String> {
        let members = self.inner.presence(whole("projectId", project_id)?);
        Ok(Value::from(members).to_string())
    }

    /// The last version applied for a joined project.
    #[wasm_bindgen(js_name = projectVersion)]
    pub fn project_version(&self, project_id: f64) -> Result<Option<f64>> {
        let p = whole("projectId", project_id)?;
        Ok(self.inner.project_version(p).map(|v| v as f64))
    }

    /// Stops an agent stream.
    #[wasm_bindgen(js_name = interruptStream)]
    pub fn interrupt_stream(&mut self, now_ms: f64, stream_id: &str) -> Result<()> {
        Ok(self.inner.interrupt_stream(time(now_ms)?, stream_id)?)
    }

    /// The text of an agent stream so far.
    #[wasm_bindgen(js_name = streamContent)]
    pub fn stream_content(&self, stream_id: &str) -> Option<String> {
        self.inner.stream_content(stream_id).map(str::to_string)
    }

    /// The state of an agent stream (`started`, `delta`, `done`, ...).
    #[wasm_bindgen(js_name = streamState)]
    pub fn stream_state(&self, stream_id: &str) -> Option<String> {
        self.inner.stream_state(stream_id).map(stream_state_name)
    }

    /// Replaces the token (`expiresAtMs`: driver time it lapses).
    #[wasm_bindgen(js_name = setToken)]
    pub fn set_token(
        &mut self,
        now_ms: f64,
        token: &str,
        expires_at_ms: Option<f64>,
    ) -> Result<()> {
        let expires_at = expires_at_ms.map(time).transpose()?;
        Ok(self.inner.set_token(time(now_ms)?, token, expires_at)?)
    }

    /// The host regained connectivity.
    pub fn online(&mut self, now_ms: f64) -> Result<()> {
        self.inner.online(time(now_ms)?);
        Ok(())
    }

    /// The host lost connectivity.
    pub fn offline(&mut self, now_ms: f64) -> Result<()> {
        self.inner.offline(time(now_ms)?);
        Ok(())
    }

    /// The page became visible.
    pub fn visible(&mut self, now_ms: f64) -> Result<()> {
        self.inner.visible(time(now_ms)?);
        Ok(())
    }

    /// The page was hidden.
    pub fn hidden(&mut self, now_ms: f64) -> Result<()> {
        self.inner.hidden(time(now_ms)?);
        Ok(())
    }

    /// The connection state (`idle`, `connecting`, `open`, ...).
    pub fn state(&self) -> String {
        self.inner.state().as_str().to_string()
    }

    /// Counters so far, as JSON.
    pub fn stats(&self) -> String {
        serde_json::to_string(&self.inner.stats()).unwrap_or_default()
    }

    /// The queued and unacknowledged messages as JSON, to survive a reload.
    #[wasm_bindgen(js_name = snapshotOutbox)]
    pub fn snapshot_outbox(&self) -> String {
        self.inner.snapshot_outbox()
    }

    /// Puts back messages from `snapshotOutbox`; returns how many.
    #[wasm_bindgen(js_name = restoreOutbox)]
    pub fn restore_outbox(&mut self, now_ms: f64, snapshot_json: &str) -> Result<f64> {
        Ok(self.inner.restore_outbox(time(now_ms)?, snapshot_json)? as f64)
    }

    /// Records every input from now on, for `trace`.
    #[wasm_bindgen(js_name = startRecording)]
    pub fn start_recording(&mut self) {
        self.inner.start_recording();
    }

    /// The recorded trace's canonical JSON, if recording.
    pub fn trace(&self) -> Option<String> {
        self.inner.trace().map(|t| t.to_json())
    }
}

/// Whether a state name is terminal (the session does nothing more on its own).
#[wasm_bindgen(js_name = isTerminalState)]
pub fn is_terminal_state(name: &str) -> Result<bool> {
    serde_json::from_value::<sockline_core::State>(Value::String(name.into()))
        .map(|s| s.is_terminal())
        .map_err(|_| Failure::new("invalid_argument", format!("unknown state {name:?}")))
}

/// Whether a stream state name is final (no more events for that stream).
#[wasm_bindgen(js_name = isFinalStreamState)]
pub fn is_final_stream_state(name: &str) -> Result<bool> {
    serde_json::from_value::<StreamState>(Value::String(name.into()))
        .map(|s| s.is_final())
        .map_err(|_| Failure::new("invalid_argument", format!("unknown stream state {name:?}")))
}

/// Replays a trace's canonical JSON; returns the printed lines joined by newlines, exactly as
/// `sockline replay` prints them.
// In the test kit's module only (see `handle_input`).
#[cfg(feature = "testing")]
#[wasm_bindgen(js_name = replayTrace)]
pub fn replay_trace(trace_json: &str) -> Result<String> {
    // What `replay_text` prints, collected without `std::io` (whose error texts and buffered
    // writer the module would otherwise carry).
    #[cfg(target_arch = "wasm32")]
    weburl::install();
    let mut out = String::new();
    sockline_core::Trace::from_json(trace_json)
        .and_then(|trace| {
            sockline_core::replay(&trace, |line| {
                out.push_str(&line);
                out.push('\n');
            })
        })
        .map_err(|e| Failure::new("invalid_trace", e.to_string()))?;
    Ok(out)
}

impl Session {
    /// `should_report_buffered(bytes)` as `receive` leaves it.
    fn buffered_flag(&self, bytes: u64) -> f64 {
        if self.inner.should_report_buffered(bytes) {
            1.0
        } else {
            0.0
        }
    }

    /// The outputs up to the next deadline as a JSON array.
    fn drain_json(&mut self) -> String {
        let first = self.inner.poll_output();
        let mut out = String::from("[");
        push_output(&mut out, &first, false);
        self.drain_rest(out, &first, None)
    }

    /// Appends the outputs after `last` (already written to `out`) up to the next deadline and
    /// closes the array; with `Some(earlier)`, a `message` event after `earlier` more outputs
    /// (the one the frame just fed produced) is written without its envelope.
    fn drain_rest(
        &mut self,
        mut out: String,
        last: &Output,
        frame_message: Option<usize>,
    ) -> String {
        let mut earlier = frame_message.unwrap_or(usize::MAX);
        if !matches!(last, Output::Timeout(_)) {
            loop {
                let o = self.inner.poll_output();
                out.push(',');
                push_output(&mut out, &o, earlier == 0);
                earlier = earlier.saturating_sub(1);
                if matches!(o, Output::Timeout(_)) {
                    break;
                }
            }
        }
        out.push(']');
        out
    }
}

/// Appends an output's canonical JSON; with `strip`, a `message` event without its envelope.
fn push_output(out: &mut String, o: &Output, strip: bool) {
    match o {
        Output::Event(Event::Message { subscriptions, .. }) if strip => {
            out.push_str(r#"{"kind":"message","subscriptions":["#);
            for (i, id) in subscriptions.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&id.0.to_string());
            }
            out.push_str("]}");
        }
        _ => out.push_str(&o.to_json()),
    }
}

/// A deadline as `receive` leaves it: driver milliseconds, NaN for none.
fn deadline_number(deadline: Option<sockline_core::Timestamp>) -> f64 {
    deadline.map_or(f64::NAN, |d| d.as_millis() as f64)
}

#[cfg(feature = "testing")]
fn outcome_json(o: &Outcome) -> String {
    match o {
        Outcome::Sent(id) => Value::from(id.as_str()).to_string(),
        Outcome::Subscribed(id) => id.0.to_string(),
        Outcome::Restored(n) => n.to_string(),
        // `done`, and any outcome a newer core adds that carries no value this binding knows.
        _ => "null".to_string(),
    }
}

fn stream_state_name(s: StreamState) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;

//! `sockline.testing`: the core's deterministic test doubles (`ScriptedServer`, `Harness`) and a
//! virtual clock, for QA scripts that must not sleep.

use std::sync::{Arc, Mutex};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use sockline_core::testing::{Accept, Harness, ScriptedServer};
use sockline_core::{Input, Output, SubscriptionId};

use crate::config::{config_from_kwargs, Urls};
use crate::convert::{json_to_py, to_py};
use crate::session::{
    binary_len, check, input_from_py, lock, outcome_to_py, send_request, snapshot_text, ts,
};
use crate::trace::PyTrace;

type Shared = Arc<Mutex<Harness>>;

/// A clock that only moves when told to. Standalone it is a plain counter; `Harness.clock` is
/// the harness's own clock, whose `advance` fires deadlines and delivers frames on the way.
#[pyclass(frozen, module = "sockline._sockline", name = "VirtualClock")]
pub struct PyVirtualClock {
    state: ClockState,
}

enum ClockState {
    Own(Mutex<u64>),
    Harness(Shared),
}

#[pymethods]
impl PyVirtualClock {
    /// A standalone clock starting at `start_ms`.
    #[new]
    #[pyo3(signature = (start_ms = 0))]
    fn new(start_ms: u64) -> Self {
        PyVirtualClock {
            state: ClockState::Own(Mutex::new(start_ms)),
        }
    }

    /// The current virtual time in ms.
    #[getter]
    fn now_ms(&self, py: Python<'_>) -> u64 {
        match &self.state {
            ClockState::Own(m) => *lock(py, m),
            ClockState::Harness(h) => lock(py, h).now().as_millis(),
        }
    }

    /// Moves the clock forward `ms` and returns the new time.
    fn advance(&self, py: Python<'_>, ms: u64) -> u64 {
        match &self.state {
            ClockState::Own(m) => {
                let mut t = lock(py, m);
                *t = t.saturating_add(ms);
                *t
            }
            ClockState::Harness(h) => py.detach(|| {
                let mut h = h.lock().unwrap_or_else(|p| p.into_inner());
                h.advance(ms);
                h.now().as_millis()
            }),
        }
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!("<sockline.testing.VirtualClock now_ms={}>", self.now_ms(py))
    }
}

/// A scripted protocol-v1 server: welcomes `hello`, answers `ping`, acks messages with an id,
/// numbers what it pushes and replays it on resume. Configure it standalone and pass it to
/// `Harness(server=...)`, or change `harness.server` while a test runs.
#[pyclass(frozen, module = "sockline._sockline", name = "ScriptedServer")]
pub struct PyScriptedServer {
    state: Mutex<ServerState>,
}

enum ServerState {
    Own(ScriptedServer),
    Harness(Shared),
}

impl PyScriptedServer {
    fn with<R>(&self, py: Python<'_>, f: impl FnOnce(&mut ScriptedServer) -> R) -> R {
        let mut st = lock(py, &self.state);
        match &mut *st {
            ServerState::Own(s) => f(s),
            ServerState::Harness(h) => {
                let h = Arc::clone(h);
                drop(st);
                let mut h = lock(py, &h);
                f(&mut h.server)
            }
        }
    }
}

fn accept_from(mode: &str, code: u16, reason: &str) -> PyResult<Accept> {
    match mode {
        "open" => Ok(Accept::Open),
        "hang" => Ok(Accept::Hang),
        "refuse" => Ok(Accept::Refuse {
            code,
            reason: reason.to_string(),
        }),
        other => Err(PyValueError::new_err(format!(
            "accept mode must be 'open', 'refuse' or 'hang', got {other:?}"
        ))),
    }
}

#[pymethods]
impl PyScriptedServer {
    /// A server that opens every transport and answers like the hub.
    #[new]
    #[pyo3(signature = (*, auto_welcome = true, auto_pong = true, auto_ack = true, latency_ms = 0))]
    fn new(auto_welcome: bool, auto_pong: bool, auto_ack: bool, latency_ms: u64) -> Self {
        let mut s = ScriptedServer::default();
        s.auto_welcome = auto_welcome;
        s.auto_pong = auto_pong;
        s.auto_ack = auto_ack;
        s.latency_ms = latency_ms;
        PyScriptedServer {
            state: Mutex::new(ServerState::Own(s)),
        }
    }

    /// How new transports are answered: `open`, `refuse` (closed at once with `code`/`reason`)
    /// or `hang` (never answered: the connect timeout must fire).
    #[pyo3(signature = (mode, code = 1013, reason = ""))]
    fn set_accept(&self, py: Python<'_>, mode: &str, code: u16, reason: &str) -> PyResult<()> {
        let a = accept_from(mode, code, reason)?;
        self.with(py, |s| s.accept = a);
        Ok(())
    }

    /// The current accept mode: `open`, `refuse` or `hang`.
    #[getter]
    fn accept(&self, py: Python<'_>) -> &'static str {
        self.with(py, |s| match s.accept {
            Accept::Open => "open",
            Accept::Refuse { .. } => "refuse",
            Accept::Hang => "hang",
        })
    }

    /// Answer `hello` with `welcome`.
    #[getter]
    fn get_auto_welcome(&self, py: Python<'_>) -> bool {
        self.with(py, |s| s.auto_welcome)
    }
    #[setter]
    fn set_auto_welcome(&self, py: Python<'_>, v: bool) {
        self.with(py, |s| s.auto_welcome = v)
    }

    /// Answer `ping` with `pong`.
    #[getter]
    fn get_auto_pong(&self, py: Python<'_>) -> bool {
        self.with(py, |s| s.auto_pong)
    }
    #[setter]
    fn set_auto_pong(&self, py: Python<'_>, v: bool) {
        self.with(py, |s| s.auto_pong = v)
    }

    /// Ack every application message that carries an id.
    #[getter]
    fn get_auto_ack(&self, py: Python<'_>) -> bool {
        self.with(py, |s| s.auto_ack)
    }
    #[setter]
    fn set_auto_ack(&self, py: Python<'_>, v: bool) {
        self.with(py, |s| s.auto_ack = v)
    }

    /// Delay of every frame the server sends (and of opening a transport), in ms.
    #[getter]
    fn get_latency_ms(&self, py: Python<'_>) -> u64 {
        self.with(py, |s| s.latency_ms)
    }
    #[setter]
    fn set_latency_ms(&self, py: Python<'_>, v: u64) {
        self.with(py, |s| s.latency_ms = v)
    }

    /// Every frame the client sent, as envelope dicts, in order.
    #[getter]
    fn received<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let v = self.with(py, |s| s.received().to_vec());
        to_py(py, &v)
    }

    /// Application messages (not control frames) the client sent, as envelope dicts.
    #[getter]
    fn received_app<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let v: Vec<_> = self.with(py, |s| s.received_app().into_iter().cloned().collect());
        to_py(py, &v)
    }

    /// How many transports the client asked for.
    #[getter]
    fn opens(&self, py: Python<'_>) -> u32 {
        self.with(py, |s| s.opens())
    }

    /// Forgets every session, so the next `hello` cannot resume.
    fn forget_sessions(&self, py: Python<'_>) {
        self.with(py, |s| s.forget_sessions())
    }
}

/// Drives a `Session` against a `ScriptedServer` on a virtual clock: commands run at the
/// harness's time, and `advance(ms)` delivers frames and fires deadlines as they fall due.
#[pyclass(frozen, module = "sockline._sockline", name = "Harness")]
pub struct PyHarness {
    inner: Shared,
    server: Py<PyScriptedServer>,
}

impl PyHarness {
    fn cmd<R>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut sockline_core::Session, sockline_core::Timestamp) -> R,
    ) -> R {
        lock(py, &self.inner).with(f)
    }

    fn read<R>(&self, py: Python<'_>, f: impl FnOnce(&Harness) -> R) -> R {
        f(&lock(py, &self.inner))
    }
}

fn log_to_list<'py>(
    py: Python<'py>,
    log: &[(sockline_core::Timestamp, Output)],
) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    for (at, o) in log {
        list.append(json_to_py(py, &o.to_json_at(*at))?)?;
    }
    Ok(list)
}

#[pymethods]
impl PyHarness {
    /// A harness at virtual time 0 around a new session for `url` (config keys as keyword
    /// arguments, as for `Session`); `server` configures the scripted peer.
    #[new]
    #[pyo3(
        signature = (url = Urls::One("ws://scripted.test/ws".into()), *, seed = 0, server = None, record = false, **config),
        text_signature = "(url='ws://scripted.test/ws', *, seed=0, server=None, record=False, **config)"
    )]
    fn new(
        py: Python<'_>,
        url: Urls,
        seed: u64,
        server: Option<Py<PyScriptedServer>>,
        record: bool,
        config: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let cfg = config_from_kwargs(py, &url, config)?;
        let mut h = Harness::new(cfg, seed).map_err(|e| crate::errors::config_error(py, &e))?;
        if record {
            h.session.start_recording();
        }
        let server = match server {
            Some(s) => s,
            None => Py::new(py, PyScriptedServer::new(true, true, true, 0))?,
        };
        let inner = Arc::new(Mutex::new(h));
        {
            let mut st = lock(py, &server.get().state);
            match &mut *st {
                ServerState::Own(s) => {
                    lock(py, &inner).server = s.clone();
                    *st = ServerState::Harness(Arc::clone(&inner));
                }
                ServerState::Harness(_) => {
                    return Err(PyValueError::new_err(
                        "this ScriptedServer already belongs to another Harness",
                    ))
                }
            }
        }
        Ok(PyHarness { inner, server })
    }

    /// The scripted server (changes take effect at once).
    #[getter]
    fn server(&self, py: Python<'_>) -> Py<PyScriptedServer> {
        self.server.clone_ref(py)
    }

    /// The harness's virtual clock.
    #[getter]
    fn clock(&self) -> PyVirtualClock {
        PyVirtualClock {
            state: ClockState::Harness(Arc::clone(&self.inner)),
        }
    }

    /// The virtual time in ms.
    #[getter]
    fn now_ms(&self, py: Python<'_>) -> u64 {
        self.read(py, |h| h.now().as_millis())
    }

    /// Advances virtual time by `ms`, delivering frames and firing deadlines as they fall due.
    /// (The GIL is released meanwhile: a long advance is pure core work.)
    fn advance(&self, py: Python<'_>, ms: u64) {
        let inner = &self.inner;
        py.detach(|| inner.lock().unwrap_or_else(|p| p.into_inner()).advance(ms));
    }

    /// The session's state (`idle`, `connecting`, `open`, ...).
    #[getter]
    fn state(&self, py: Python<'_>) -> &'static str {
        self.read(py, |h| h.state().as_str())
    }

    /// Calls `connect` and processes what follows at this instant.
    fn connect(&self, py: Python<'_>) -> PyResult<()> {
        let r = lock(py, &self.inner).connect();
        check(py, r)
    }

    /// Calls `disconnect`.
    fn disconnect(&self, py: Python<'_>) {
        lock(py, &self.inner).disconnect();
    }

    /// Sends an application message at the current time; returns its id.
    #[pyo3(signature = (r#type, data = None, *, project_id = None, delivery = "at_most_once", ttl_ms = None, coalesce = None, id = None, unix_ms = None))]
    #[allow(clippy::too_many_arguments)]
    fn send(
        &self,
        py: Python<'_>,
        r#type: String,
        data: Option<&Bound<'_, PyAny>>,
        project_id: Option<u64>,
        delivery: &str,
        ttl_ms: Option<u64>,
        coalesce: Option<String>,
        id: Option<String>,
        unix_ms: Option<u64>,
    ) -> PyResult<String> {
        let req = send_request(
            r#type, data, project_id, delivery, ttl_ms, coalesce, id, unix_ms,
        )?;
        let r = lock(py, &self.inner).send(req);
        check(py, r)
    }

    /// Subscribes; returns the subscription id.
    #[pyo3(signature = (pattern, project_id = None))]
    fn subscribe(&self, py: Python<'_>, pattern: &str, project_id: Option<u64>) -> PyResult<u64> {
        let r = self.cmd(py, |s, now| s.subscribe(now, pattern, project_id));
        check(py, r).map(|id| id.0)
    }

    /// Removes a subscription.
    fn unsubscribe(&self, py: Python<'_>, id: u64) -> PyResult<()> {
        let r = self.cmd(py, |s, now| s.unsubscribe(now, SubscriptionId(id)));
        check(py, r)
    }

    /// The local user is typing in `project_id`.
    fn start_typing(&self, py: Python<'_>, project_id: u64) -> PyResult<()> {
        let r = self.cmd(py, |s, now| s.start_typing(now, project_id));
        check(py, r)
    }

    /// The local user stopped typing in `project_id`.
    fn stop_typing(&self, py: Python<'_>, project_id: u64) -> PyResult<()> {
        let r = self.cmd(py, |s, now| s.stop_typing(now, project_id));
        check(py, r)
    }

    /// Stops an agent stream.
    fn interrupt_stream(&self, py: Python<'_>, stream_id: &str) -> PyResult<()> {
        let r = self.cmd(py, |s, now| s.interrupt_stream(now, stream_id));
        check(py, r)
    }

    /// Joins a project.
    fn join_project(&self, py: Python<'_>, project_id: u64) -> PyResult<()> {
        let r = self.cmd(py, |s, now| s.join_project(now, project_id));
        check(py, r)
    }

    /// Leaves a project.
    fn leave_project(&self, py: Python<'_>, project_id: u64) {
        self.cmd(py, |s, now| s.leave_project(now, project_id));
    }

    /// Replaces the token; `expires_at` is virtual ms.
    #[pyo3(signature = (token, expires_at = None))]
    fn set_token(&self, py: Python<'_>, token: &str, expires_at: Option<u64>) -> PyResult<()> {
        let r = self.cmd(py, |s, now| s.set_token(now, token, expires_at.map(ts)));
        check(py, r)
    }

    /// The host regained connectivity.
    fn online(&self, py: Python<'_>) {
        self.cmd(py, |s, now| s.online(now));
    }

    /// The host lost connectivity.
    fn offline(&self, py: Python<'_>) {
        self.cmd(py, |s, now| s.offline(now));
    }

    /// The page became visible.
    fn visible(&self, py: Python<'_>) {
        self.cmd(py, |s, now| s.visible(now));
    }

    /// The page was hidden.
    fn hidden(&self, py: Python<'_>) {
        self.cmd(py, |s, now| s.hidden(now));
    }

    /// The client's transport fails (as a driver would report it).
    #[pyo3(signature = (message = "connection reset"))]
    fn transport_error(&self, py: Python<'_>, message: &str) {
        self.cmd(py, |s, now| s.transport_error(now, message));
    }

    /// A binary frame reaches the session (bytes-like or its length).
    fn binary_frame(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let len = binary_len(data)?;
        self.cmd(py, |s, now| s.binary_frame(now, len));
        Ok(())
    }

    /// Applies any input in its canonical JSON form (dict or text) at the current time.
    fn handle_input(&self, py: Python<'_>, input: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let input: Input = input_from_py(input)?;
        let r = self.cmd(py, |s, now| s.handle_input(now, input));
        outcome_to_py(py, check(py, r)?)
    }

    /// Puts back an outbox snapshot (dict or JSON text); returns how many messages.
    fn restore_outbox(&self, py: Python<'_>, snapshot: &Bound<'_, PyAny>) -> PyResult<usize> {
        let text = snapshot_text(snapshot)?;
        let r = self.cmd(py, |s, now| s.restore_outbox(now, &text));
        check(py, r)
    }

    /// The server pushes an application message (numbered, kept for replay on resume).
    #[pyo3(signature = (r#type, data = None, project_id = None))]
    fn push(
        &self,
        py: Python<'_>,
        r#type: &str,
        data: Option<&Bound<'_, PyAny>>,
        project_id: Option<u64>,
    ) -> PyResult<()> {
        let data = match data {
            Some(d) => crate::convert::py_to_value(d, "data")?,
            None => serde_json::Value::Null,
        };
        lock(py, &self.inner).push(r#type, data, project_id);
        Ok(())
    }

    /// The server sends a raw text frame, now or `delay_ms` later (current transport only).
    #[pyo3(signature = (text, delay_ms = 0))]
    fn inject(&self, py: Python<'_>, text: &str, delay_ms: u64) {
        let mut h = lock(py, &self.inner);
        if delay_ms == 0 {
            h.inject(text);
        } else {
            h.inject_after(delay_ms, text);
        }
    }

    /// The server closes the transport, now or `delay_ms` later.
    #[pyo3(signature = (code = 1006, reason = "", delay_ms = 0))]
    fn server_close(&self, py: Python<'_>, code: u16, reason: &str, delay_ms: u64) {
        let mut h = lock(py, &self.inner);
        if delay_ms == 0 {
            h.server_close(code, reason);
        } else {
            h.server_close_after(delay_ms, code, reason);
        }
    }

    /// The host sleeps `ms`: the clock jumps without firing deadlines, then the session wakes.
    fn suspend(&self, py: Python<'_>, ms: u64) {
        lock(py, &self.inner).suspend(ms);
    }

    /// Every output so far (timeouts excluded) as dicts with `"at"` first.
    #[getter]
    fn log<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let log = self.read(py, |h| h.log().to_vec());
        log_to_list(py, &log)
    }

    /// Returns the log and empties it.
    fn take_log<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let log = lock(py, &self.inner).take_log();
        log_to_list(py, &log)
    }

    /// Events so far (dicts, without `"at"`), in order.
    #[getter]
    fn events<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let ev: Vec<_> = self.read(py, |h| h.events().into_iter().cloned().collect());
        to_py(py, &ev)
    }

    /// Frames the session transmitted so far, as text.
    #[getter]
    fn transmitted(&self, py: Python<'_>) -> Vec<String> {
        self.read(py, |h| {
            h.transmitted().iter().map(|t| t.to_string()).collect()
        })
    }

    /// The session's counters.
    #[getter]
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let st = self.read(py, |h| h.session.stats());
        to_py(py, &st)
    }

    /// The next deadline in ms, or None.
    fn poll_timeout(&self, py: Python<'_>) -> Option<u64> {
        self.read(py, |h| h.session.poll_timeout().map(|d| d.at.as_millis()))
    }

    /// The next deadline and its timer, or None.
    fn next_deadline<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let d = self.read(py, |h| h.session.poll_timeout());
        to_py(py, &d)
    }

    /// The text of an agent stream so far.
    fn stream_content(&self, py: Python<'_>, stream_id: &str) -> Option<String> {
        self.read(py, |h| {
            h.session.stream_content(stream_id).map(str::to_string)
        })
    }

    /// The state of an agent stream, or None.
    fn stream_state<'py>(&self, py: Python<'py>, stream_id: &str) -> PyResult<Bound<'py, PyAny>> {
        let st = self.read(py, |h| h.session.stream_state(stream_id));
        to_py(py, &st)
    }

    /// Users typing in `project_id`, sorted.
    fn typing_users(&self, py: Python<'_>, project_id: u64) -> Vec<String> {
        self.read(py, |h| h.session.typing_users(project_id))
    }

    /// Members present in `project_id`, sorted.
    fn presence(&self, py: Python<'_>, project_id: u64) -> Vec<String> {
        self.read(py, |h| h.session.presence(project_id))
    }

    /// The last version applied for `project_id`.
    fn project_version(&self, py: Python<'_>, project_id: u64) -> Option<u64> {
        self.read(py, |h| h.session.project_version(project_id))
    }

    /// The outbox snapshot as a dict.
    fn snapshot_outbox<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let text = self.read(py, |h| h.session.snapshot_outbox());
        json_to_py(py, &text)
    }

    /// The recorded trace (`record=True`), or None.
    fn trace(&self, py: Python<'_>) -> Option<PyTrace> {
        self.read(py, |h| h.session.trace()).map(PyTrace::from_core)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        self.read(py, |h| {
            format!(
                "<sockline.testing.Harness now_ms={} state={}>",
                h.now().as_millis(),
                h.state()
            )
        })
    }
}

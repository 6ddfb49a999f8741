//! `sockline.Session`: the core session behind a mutex; every method converts types and calls
//! the core.

use std::sync::{Mutex, MutexGuard, TryLockError};

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString};
use serde_json::Value;
use sockline_core::{
    Delivery, Input, Outcome, Output, SendRequest, Session, SessionError as CoreSessionError,
    Timestamp,
};

use crate::config::{config_from_kwargs, Urls};
use crate::convert::{json_to_py, py_to_value, to_py};
use crate::errors::session_error;
use crate::trace::PyTrace;

/// Frames at least this long are handled with the GIL released.
pub const DETACH_BYTES: usize = 64 * 1024;

/// Locks `m`, releasing the GIL while waiting so a holder on another thread can finish.
pub fn lock<'a, T>(py: Python<'_>, m: &'a Mutex<T>) -> MutexGuard<'a, T>
where
    T: Send,
{
    loop {
        match m.try_lock() {
            Ok(g) => return g,
            Err(TryLockError::Poisoned(p)) => return p.into_inner(),
            Err(TryLockError::WouldBlock) => py.detach(|| drop(m.lock())),
        }
    }
}

/// A timestamp from the caller's `now_ms`.
pub fn ts(now_ms: u64) -> Timestamp {
    Timestamp::from_millis(now_ms)
}

/// The Python value of a successful input's outcome.
pub fn outcome_to_py(py: Python<'_>, o: Outcome) -> PyResult<Py<PyAny>> {
    Ok(match o {
        Outcome::Done => py.None(),
        Outcome::Sent(id) => PyString::new(py, &id).into_any().unbind(),
        Outcome::Subscribed(id) => id.0.into_pyobject(py)?.into_any().unbind(),
        Outcome::Restored(n) => n.into_pyobject(py)?.into_any().unbind(),
        // An outcome a newer core adds: this binding knows no value to give for it.
        _ => py.None(),
    })
}

/// Maps a core command result to Python.
pub fn check<T>(py: Python<'_>, r: Result<T, CoreSessionError>) -> PyResult<T> {
    r.map_err(|e| session_error(py, &e))
}

/// Parses a delivery class name.
pub fn delivery(name: &str) -> PyResult<Delivery> {
    match name {
        "volatile" => Ok(Delivery::Volatile),
        "at_most_once" => Ok(Delivery::AtMostOnce),
        "at_least_once" => Ok(Delivery::AtLeastOnce),
        other => Err(PyValueError::new_err(format!(
            "delivery must be 'volatile', 'at_most_once' or 'at_least_once', got {other:?}"
        ))),
    }
}

/// Builds a core `SendRequest` from the Python arguments.
#[allow(clippy::too_many_arguments)]
pub fn send_request(
    msg_type: String,
    data: Option<&Bound<'_, PyAny>>,
    project_id: Option<u64>,
    delivery_name: &str,
    ttl_ms: Option<u64>,
    coalesce: Option<String>,
    id: Option<String>,
    unix_ms: Option<u64>,
) -> PyResult<SendRequest> {
    let data = match data {
        Some(d) => py_to_value(d, "data")?,
        None => Value::Null,
    };
    Ok(SendRequest {
        msg_type,
        data,
        project_id,
        delivery: delivery(delivery_name)?,
        ttl_ms,
        coalesce,
        id,
        unix_ms,
    })
}

/// Parses an input given as a dict or as JSON text in the canonical form.
pub fn input_from_py(input: &Bound<'_, PyAny>) -> PyResult<Input> {
    let value = if let Ok(s) = input.cast::<PyString>() {
        serde_json::from_str::<Value>(&s.to_cow()?)
            .map_err(|e| PyValueError::new_err(format!("input is not JSON: {e}")))?
    } else if input.cast::<PyDict>().is_ok() {
        py_to_value(input, "input")?
    } else {
        return Err(PyTypeError::new_err(format!(
            "input must be a dict or JSON text, got {}",
            crate::convert::type_name(input)
        )));
    };
    serde_json::from_value::<Input>(value)
        .map_err(|e| PyValueError::new_err(format!("invalid input: {e}")))
}

/// A snapshot given as a dict or as JSON text, as the text the core reads.
pub fn snapshot_text(snapshot: &Bound<'_, PyAny>) -> PyResult<String> {
    if let Ok(s) = snapshot.cast::<PyString>() {
        return Ok(s.to_cow()?.into_owned());
    }
    if snapshot.cast::<PyDict>().is_ok() {
        return Ok(py_to_value(snapshot, "snapshot")?.to_string());
    }
    Err(PyTypeError::new_err(format!(
        "snapshot must be the dict snapshot_outbox() returned (or its JSON text), got {}",
        crate::convert::type_name(snapshot)
    )))
}

/// The length of a binary frame given as bytes-like or as its length.
pub fn binary_len(data: &Bound<'_, PyAny>) -> PyResult<usize> {
    if let Ok(b) = data.cast::<PyBytes>() {
        return Ok(b.as_bytes().len());
    }
    if let Ok(n) = data.extract::<usize>() {
        return Ok(n);
    }
    data.len().map_err(|_| {
        PyTypeError::new_err(format!(
            "binary frame must be bytes-like or its length, got {}",
            crate::convert::type_name(data)
        ))
    })
}

/// Converts outputs to a list of dicts.
pub fn outputs_to_list<'py>(py: Python<'py>, outs: &[Output]) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    for o in outs {
        list.append(crate::convert::output_to_py(py, o)?)?;
    }
    Ok(list)
}

/// The core session. Every input method takes `now_ms`, the caller's monotonic clock in
/// milliseconds; outputs are dicts in the canonical JSON form (docs/session-json.md).
/// Safe to share between threads: calls are serialized by an internal lock.
#[pyclass(frozen, module = "sockline._sockline", name = "Session")]
pub struct PySession {
    inner: Mutex<Session>,
}

impl PySession {
    fn lock(&self, py: Python<'_>) -> MutexGuard<'_, Session> {
        lock(py, &self.inner)
    }

    fn apply(&self, py: Python<'_>, now_ms: u64, input: Input) -> PyResult<Outcome> {
        let r = self.lock(py).handle_input(ts(now_ms), input);
        check(py, r)
    }

    fn run(&self, py: Python<'_>, f: impl FnOnce(&mut Session)) {
        f(&mut self.lock(py));
    }
}

#[pymethods]
impl PySession {
    /// Creates an idle session for `url`; config keys are keyword arguments (see the module doc).
    #[new]
    #[pyo3(signature = (url, *, seed = 0, now_ms = 0, record = false, **config))]
    fn new(
        py: Python<'_>,
        url: Urls,
        seed: u64,
        now_ms: u64,
        record: bool,
        config: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let cfg = config_from_kwargs(py, &url, config)?;
        let mut session =
            Session::new(cfg, seed, ts(now_ms)).map_err(|e| crate::errors::config_error(py, &e))?;
        if record {
            session.start_recording();
        }
        Ok(PySession {
            inner: Mutex::new(session),
        })
    }

    /// Opens the connection (from idle, closed or failed); while reconnecting, opens the waiting attempt now.
    fn connect(&self, py: Python<'_>, now_ms: u64) -> PyResult<()> {
        self.apply(py, now_ms, Input::Connect).map(|_| ())
    }

    /// Closes the connection for good (code 1000; never reconnects).
    fn disconnect(&self, py: Python<'_>, now_ms: u64) {
        self.run(py, |s| s.disconnect(ts(now_ms)));
    }

    /// Sends an application message; returns its id.
    #[pyo3(signature = (now_ms, r#type, data = None, *, project_id = None, delivery = "at_most_once", ttl_ms = None, coalesce = None, id = None, unix_ms = None))]
    #[allow(clippy::too_many_arguments)]
    fn send(
        &self,
        py: Python<'_>,
        now_ms: u64,
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
        let r = self.lock(py).send(ts(now_ms), req);
        check(py, r)
    }

    /// Subscribes to `pattern` (`type`, `prefix*` or `*`), optionally for one project; returns
    /// the subscription id.
    #[pyo3(signature = (now_ms, pattern, project_id = None))]
    fn subscribe(
        &self,
        py: Python<'_>,
        now_ms: u64,
        pattern: &str,
        project_id: Option<u64>,
    ) -> PyResult<u64> {
        let r = self.lock(py).subscribe(ts(now_ms), pattern, project_id);
        check(py, r).map(|id| id.0)
    }

    /// Removes a subscription.
    fn unsubscribe(&self, py: Python<'_>, now_ms: u64, id: u64) -> PyResult<()> {
        let r = self
            .lock(py)
            .unsubscribe(ts(now_ms), sockline_core::SubscriptionId(id));
        check(py, r)
    }

    /// The local user is typing in `project_id`.
    fn start_typing(&self, py: Python<'_>, now_ms: u64, project_id: u64) -> PyResult<()> {
        let r = self.lock(py).start_typing(ts(now_ms), project_id);
        check(py, r)
    }

    /// The local user stopped typing in `project_id`.
    fn stop_typing(&self, py: Python<'_>, now_ms: u64, project_id: u64) -> PyResult<()> {
        let r = self.lock(py).stop_typing(ts(now_ms), project_id);
        check(py, r)
    }

    /// Stops an agent stream.
    fn interrupt_stream(&self, py: Python<'_>, now_ms: u64, stream_id: &str) -> PyResult<()> {
        let r = self.lock(py).interrupt_stream(ts(now_ms), stream_id);
        check(py, r)
    }

    /// Joins a project (re-joined after every reconnect).
    fn join_project(&self, py: Python<'_>, now_ms: u64, project_id: u64) -> PyResult<()> {
        let r = self.lock(py).join_project(ts(now_ms), project_id);
        check(py, r)
    }

    /// Leaves a project.
    fn leave_project(&self, py: Python<'_>, now_ms: u64, project_id: u64) {
        self.run(py, |s| s.leave_project(ts(now_ms), project_id));
    }

    /// Replaces the token; `expires_at` is in the same monotonic ms as `now_ms`.
    #[pyo3(signature = (now_ms, token, expires_at = None))]
    fn set_token(
        &self,
        py: Python<'_>,
        now_ms: u64,
        token: &str,
        expires_at: Option<u64>,
    ) -> PyResult<()> {
        let r = self
            .lock(py)
            .set_token(ts(now_ms), token, expires_at.map(ts));
        check(py, r)
    }

    /// The host regained network connectivity.
    fn online(&self, py: Python<'_>, now_ms: u64) {
        self.run(py, |s| s.online(ts(now_ms)));
    }

    /// The host lost network connectivity.
    fn offline(&self, py: Python<'_>, now_ms: u64) {
        self.run(py, |s| s.offline(ts(now_ms)));
    }

    /// The page became visible.
    fn visible(&self, py: Python<'_>, now_ms: u64) {
        self.run(py, |s| s.visible(ts(now_ms)));
    }

    /// The page was hidden.
    fn hidden(&self, py: Python<'_>, now_ms: u64) {
        self.run(py, |s| s.hidden(ts(now_ms)));
    }

    /// The host slept `ms`: the clock jumps without firing the deadlines in between.
    fn suspend(&self, py: Python<'_>, now_ms: u64, ms: u64) {
        self.run(py, |s| s.suspend(ts(now_ms), ms));
    }

    /// The transport the session asked for is open.
    fn transport_opened(&self, py: Python<'_>, now_ms: u64) {
        self.run(py, |s| s.transport_opened(ts(now_ms)));
    }

    /// A close frame arrived with `code` (None: a frame without one, named 1005) and `reason`.
    #[pyo3(signature = (now_ms, code = None, reason = ""))]
    fn transport_closed(&self, py: Python<'_>, now_ms: u64, code: Option<u16>, reason: &str) {
        self.run(py, |s| s.transport_closed(ts(now_ms), code, reason));
    }

    /// The transport ended without any close frame (EOF or reset), named 1006.
    fn transport_lost(&self, py: Python<'_>, now_ms: u64) {
        self.run(py, |s| s.transport_lost(ts(now_ms)));
    }

    /// The driver holds `bytes` of transmitted frames unsent (feed it when
    /// `should_report_buffered(bytes)` is true).
    fn buffered(&self, py: Python<'_>, now_ms: u64, bytes: u64) {
        self.run(py, |s| s.buffered(ts(now_ms), bytes));
    }

    /// Whether the driver should feed `buffered(bytes)` now (the transport's blocked state would
    /// change).
    fn should_report_buffered(&self, py: Python<'_>, bytes: u64) -> bool {
        self.lock(py).should_report_buffered(bytes)
    }

    /// Whether the current transport is blocked (the peer is not reading what is sent).
    #[getter]
    fn is_blocked(&self, py: Python<'_>) -> bool {
        self.lock(py).is_blocked()
    }

    /// The transport failed with an I/O error.
    #[pyo3(signature = (now_ms, message = ""))]
    fn transport_error(&self, py: Python<'_>, now_ms: u64, message: &str) {
        self.run(py, |s| s.transport_error(ts(now_ms), message));
    }

    /// A text frame arrived (large frames are handled with the GIL released).
    fn frame(&self, py: Python<'_>, now_ms: u64, text: &str) {
        if text.len() >= DETACH_BYTES {
            let inner = &self.inner;
            py.detach(|| {
                let mut s = inner.lock().unwrap_or_else(|p| p.into_inner());
                s.frame(ts(now_ms), text);
            });
        } else {
            self.lock(py).frame(ts(now_ms), text);
        }
    }

    /// Several text frames arrived at `now_ms`, in order (one call, one lock).
    fn frame_many(&self, py: Python<'_>, now_ms: u64, texts: Vec<String>) {
        let total: usize = texts.iter().map(String::len).sum();
        if total >= DETACH_BYTES {
            let inner = &self.inner;
            py.detach(|| {
                let mut s = inner.lock().unwrap_or_else(|p| p.into_inner());
                for t in &texts {
                    s.frame(ts(now_ms), t);
                }
            });
        } else {
            let mut s = self.lock(py);
            for t in &texts {
                s.frame(ts(now_ms), t);
            }
        }
    }

    /// A binary frame arrived (given as bytes-like or its length); protocol v1 reports it.
    fn binary_frame(&self, py: Python<'_>, now_ms: u64, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let len = binary_len(data)?;
        self.run(py, |s| s.binary_frame(ts(now_ms), len));
        Ok(())
    }

    /// Fires every timer due at `now_ms`.
    fn handle_timeout(&self, py: Python<'_>, now_ms: u64) {
        self.run(py, |s| s.handle_timeout(ts(now_ms)));
    }

    /// Applies an input in its canonical JSON form (a dict or JSON text); returns what the
    /// command returned (a message id, a subscription id, a restored count, or None).
    fn handle_input(
        &self,
        py: Python<'_>,
        now_ms: u64,
        input: &Bound<'_, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        let input = input_from_py(input)?;
        let o = self.apply(py, now_ms, input)?;
        outcome_to_py(py, o)
    }

    /// The next output as a dict; `{"kind": "timeout", "deadline": ms or None}` when idle.
    fn poll_output<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let o = self.lock(py).poll_output();
        crate::convert::output_to_py(py, &o)
    }

    /// Every output up to the next timeout (the timeout itself is not included).
    fn drain<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let mut outs = Vec::new();
        {
            let mut s = self.lock(py);
            loop {
                match s.poll_output() {
                    Output::Timeout(_) => break,
                    o => outs.push(o),
                }
            }
        }
        outputs_to_list(py, &outs)
    }

    /// Like `drain`, but each output as its canonical JSON text (what traces and the CLI print).
    fn drain_json(&self, py: Python<'_>) -> Vec<String> {
        let mut s = self.lock(py);
        let mut out = Vec::new();
        loop {
            match s.poll_output() {
                Output::Timeout(_) => break,
                o => out.push(o.to_json()),
            }
        }
        out
    }

    /// The next deadline in ms, or None.
    fn poll_timeout(&self, py: Python<'_>) -> Option<u64> {
        self.lock(py).poll_timeout().map(|d| d.at.as_millis())
    }

    /// The next deadline and its timer, `{"at": ms, "timer": name}`, or None.
    fn next_deadline<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let d = self.lock(py).poll_timeout();
        to_py(py, &d)
    }

    /// The connection state: idle, connecting, open, reconnecting, unauthorized, closing,
    /// closed or failed.
    #[getter]
    fn state(&self, py: Python<'_>) -> &'static str {
        self.lock(py).state().as_str()
    }

    /// Counters so far, as a dict.
    #[getter]
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let st = self.lock(py).stats();
        to_py(py, &st)
    }

    /// The configuration in use (canonical JSON form, token redacted).
    #[getter]
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let c = self.lock(py).config().clone();
        to_py(py, &c)
    }

    /// Number of live subscriptions.
    #[getter]
    fn subscription_count(&self, py: Python<'_>) -> usize {
        self.lock(py).subscription_count()
    }

    /// The text of an agent stream so far, or None for an unknown stream.
    fn stream_content(&self, py: Python<'_>, stream_id: &str) -> Option<String> {
        self.lock(py).stream_content(stream_id).map(str::to_string)
    }

    /// The state of an agent stream (`started`, `delta`, `done`, ...), or None.
    fn stream_state<'py>(&self, py: Python<'py>, stream_id: &str) -> PyResult<Bound<'py, PyAny>> {
        let st = self.lock(py).stream_state(stream_id);
        to_py(py, &st)
    }

    /// Users typing in `project_id` right now, sorted.
    fn typing_users(&self, py: Python<'_>, project_id: u64) -> Vec<String> {
        self.lock(py).typing_users(project_id)
    }

    /// Members present in a joined project, sorted.
    fn presence(&self, py: Python<'_>, project_id: u64) -> Vec<String> {
        self.lock(py).presence(project_id)
    }

    /// The last version applied for a joined project, or None.
    fn project_version(&self, py: Python<'_>, project_id: u64) -> Option<u64> {
        self.lock(py).project_version(project_id)
    }

    /// The queued and unacknowledged messages, as the dict `restore_outbox` takes back.
    fn snapshot_outbox<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let text = self.lock(py).snapshot_outbox();
        json_to_py(py, &text)
    }

    /// Puts back messages from `snapshot_outbox` (a dict or its JSON text), all or nothing;
    /// returns how many.
    fn restore_outbox(
        &self,
        py: Python<'_>,
        now_ms: u64,
        snapshot: &Bound<'_, PyAny>,
    ) -> PyResult<usize> {
        let text = snapshot_text(snapshot)?;
        let r = self.lock(py).restore_outbox(ts(now_ms), &text);
        check(py, r)
    }

    /// The inputs recorded so far (`record=True`), as a replayable `Trace`; None when not recording.
    fn trace(&self, py: Python<'_>) -> Option<PyTrace> {
        self.lock(py).trace().map(PyTrace::from_core)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let s = self.lock(py);
        format!(
            "<sockline.Session {} {}>",
            s.config().endpoints().join(" "),
            s.state()
        )
    }
}

//! `sockline._sockline`: the Python extension module behind the `sockline` package.
//!
//! The bindings are thin: every decision stays in `sockline-core`; this crate converts types
//! (canonical serde JSON forms to Python dicts and back) and maps errors to Python exceptions.
//! Every class is `frozen` with a `Mutex` inside, so instances may be shared between threads;
//! calls on one instance are serialized, and the GIL is released while waiting for the lock and
//! while the core works on large frames or replays a trace.

#![warn(missing_docs)]

mod config;
mod convert;
mod errors;
mod network;
mod session;
mod testing;
mod trace;

use pyo3::prelude::*;

pub use convert::{json_to_py, py_to_value, to_py};
pub use session::PySession;
pub use testing::{PyHarness, PyScriptedServer, PyVirtualClock};
pub use trace::PyTrace;

/// Whether the session does nothing more on its own in connection state `name` (`idle`,
/// `closed`, `failed`; not `unauthorized`, which waits for a token): `State::is_terminal`.
#[pyfunction]
fn is_terminal_state(name: &str) -> PyResult<bool> {
    serde_json::from_value::<sockline_core::State>(serde_json::Value::String(name.into()))
        .map(|s| s.is_terminal())
        .map_err(|_| {
            pyo3::exceptions::PyValueError::new_err(format!("unknown connection state {name:?}"))
        })
}

/// Whether stream state `name` ends the stream (`done`, `interrupted`, `failed`):
/// `StreamState::is_final`.
#[pyfunction]
fn is_final_stream_state(name: &str) -> PyResult<bool> {
    serde_json::from_value::<sockline_core::StreamState>(serde_json::Value::String(name.into()))
        .map(|s| s.is_final())
        .map_err(|_| {
            pyo3::exceptions::PyValueError::new_err(format!("unknown stream state {name:?}"))
        })
}

/// The extension module.
#[pymodule]
fn _sockline(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<PySession>()?;
    m.add_function(wrap_pyfunction!(is_terminal_state, m)?)?;
    m.add_function(wrap_pyfunction!(is_final_stream_state, m)?)?;
    m.add_class::<PyTrace>()?;
    m.add_class::<PyHarness>()?;
    m.add_class::<network::PyNetwork>()?;
    m.add_class::<PyScriptedServer>()?;
    m.add_class::<PyVirtualClock>()?;
    m.add("SessionError", py.get_type::<errors::SessionError>())?;
    m.add("ConfigError", py.get_type::<errors::ConfigError>())?;
    m.add("TraceError", py.get_type::<errors::TraceError>())?;
    errors::register_session_errors(m)?;
    Ok(())
}

//! `sockline.Trace`: a recorded session (config, seed, timed inputs) and its replay.

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::PyList;
use sockline_core::Trace;

use crate::convert::to_py;
use crate::errors::{config_error, TraceError};

fn trace_error(py: Python<'_>, e: sockline_core::TraceError) -> PyErr {
    match e {
        sockline_core::TraceError::Config(c) => {
            let err = config_error(py, &c);
            TraceError::new_err(err.value(py).to_string())
        }
        other => TraceError::new_err(other.to_string()),
    }
}

/// A replayable trace: `{"config": {...}, "seed": N, "inputs": [{"at": ms, "input": {...}}]}`.
/// Immutable, so safe to share between threads.
#[pyclass(frozen, module = "sockline._sockline", name = "Trace")]
pub struct PyTrace {
    trace: Trace,
}

impl PyTrace {
    /// Wraps a core trace.
    pub fn from_core(trace: Trace) -> Self {
        PyTrace { trace }
    }
}

#[pymethods]
impl PyTrace {
    /// Reads a trace file.
    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<PyTrace> {
        let text = std::fs::read_to_string(&path)?;
        Trace::from_json(&text)
            .map(PyTrace::from_core)
            .map_err(|e| trace_error(py, e))
    }

    /// Parses a trace from its JSON text.
    #[staticmethod]
    fn from_json(py: Python<'_>, text: &str) -> PyResult<PyTrace> {
        Trace::from_json(text)
            .map(PyTrace::from_core)
            .map_err(|e| trace_error(py, e))
    }

    /// Writes the trace's canonical JSON to `path`.
    fn save(&self, path: PathBuf) -> PyResult<()> {
        std::fs::write(path, self.trace.to_json())?;
        Ok(())
    }

    /// The canonical JSON text (one input per line).
    fn to_json(&self) -> String {
        self.trace.to_json()
    }

    /// Replays the trace on a fresh session (GIL released) and returns the printed lines,
    /// exactly as `sockline replay` prints them.
    fn replay<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let trace = &self.trace;
        let lines = py
            .detach(|| trace.replay())
            .map_err(|e| trace_error(py, e))?;
        PyList::new(py, lines)
    }

    /// The config (canonical form, token redacted).
    #[getter]
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.trace.config)
    }

    /// The PRNG seed.
    #[getter]
    fn seed(&self) -> u64 {
        self.trace.seed
    }

    /// The timed inputs, `[{"at": ms, "input": {...}}, ...]`.
    #[getter]
    fn inputs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.trace.inputs)
    }

    fn __len__(&self) -> usize {
        self.trace.inputs.len()
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<PyTrace>()
            .is_ok_and(|o| o.get().trace == self.trace)
    }

    fn __repr__(&self) -> String {
        format!(
            "<sockline.Trace seed={} inputs={}>",
            self.trace.seed,
            self.trace.inputs.len()
        )
    }
}

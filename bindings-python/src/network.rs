//! `sockline.testing.Network`: client sessions and the real hub core in one process, in virtual
//! time, with seeded link faults and hub restarts (the core's `testing::Network`).

use std::sync::Mutex;

use pyo3::exceptions::{PyIndexError, PyTimeoutError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use sockline_core::hub::{HubLimits, HubSettings, ScriptedAgent};
use sockline_core::testing::{ClientId, LinkFaults, Network, Watchdog};
use sockline_core::{Input, RateLimitConfig, Session};

use crate::config::{config_from_kwargs, Urls};
use crate::convert::{json_to_py, py_to_value, to_py};
use crate::session::{check, input_from_py, lock, outcome_to_py, send_request};

/// Client sessions and a hub on in-memory links, driven together in virtual time.
#[pyclass(frozen, module = "sockline._sockline", name = "Network")]
pub struct PyNetwork {
    inner: Mutex<Network>,
}

impl PyNetwork {
    fn client<R>(
        &self,
        py: Python<'_>,
        client: usize,
        f: impl FnOnce(&mut Network, ClientId) -> R,
    ) -> PyResult<R> {
        let mut net = lock(py, &self.inner);
        if client >= net.clients() {
            return Err(PyIndexError::new_err(format!(
                "no client {client} in this network"
            )));
        }
        Ok(f(&mut net, ClientId(client)))
    }

    fn session<R>(
        &self,
        py: Python<'_>,
        client: usize,
        f: impl FnOnce(&Session) -> R,
    ) -> PyResult<R> {
        self.client(py, client, |n, id| f(n.session(id)))
    }
}

fn rate_limit(value: &Bound<'_, PyAny>) -> PyResult<RateLimitConfig> {
    if let Ok(s) = value.extract::<String>() {
        if s == "off" {
            return Ok(RateLimitConfig::Off);
        }
    }
    if let Ok((per_sec, burst)) = value.extract::<(u32, u32)>() {
        if per_sec > 0 && burst > 0 {
            return Ok(RateLimitConfig::Bucket { per_sec, burst });
        }
    }
    Err(PyValueError::new_err(
        "rate_limit must be 'off' or (per_sec, burst) with both at least 1",
    ))
}

/// `limits={...}` with the core's `HubLimits` keys in snake_case (an unknown key is an error).
fn hub_limits(limits: &Bound<'_, PyDict>) -> PyResult<HubLimits> {
    let mut camel = serde_json::Map::new();
    for (k, v) in limits.iter() {
        let key: String = k.extract()?;
        let mut parts = key.split('_');
        let mut name = parts.next().unwrap_or_default().to_string();
        for p in parts {
            let mut c = p.chars();
            name.extend(c.next().map(|f| f.to_ascii_uppercase()));
            name.push_str(c.as_str());
        }
        camel.insert(name, py_to_value(&v, &format!("limits[{key:?}]"))?);
    }
    serde_json::from_value(serde_json::Value::Object(camel))
        .map_err(|e| PyValueError::new_err(format!("limits: {e}")))
}

#[pymethods]
impl PyNetwork {
    /// A hub with these settings and no clients; `seed` fixes session ids, client seeds and
    /// every fault. `agent_chunks=None` gives a hub without an agent.
    #[new]
    #[pyo3(signature = (*, seed = 0, latency_ms = 5, agent_chunks = Some(20), agent_chunk_ms = 50, token = None, replay_capacity = 1024, session_ttl_ms = 300_000, hello_timeout_ms = 10_000, idle_timeout_ms = 120_000, max_frame_bytes = 1 << 20, rate_limit = None, restart_retry_after_ms = 0, restart_spread_ms = 3_000, limits = None, token_warning_ms = 60_000))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        seed: u64,
        latency_ms: u64,
        agent_chunks: Option<u32>,
        agent_chunk_ms: u64,
        token: Option<String>,
        replay_capacity: usize,
        session_ttl_ms: u64,
        hello_timeout_ms: u64,
        idle_timeout_ms: u64,
        max_frame_bytes: usize,
        rate_limit: Option<&Bound<'_, PyAny>>,
        restart_retry_after_ms: u64,
        restart_spread_ms: u64,
        limits: Option<&Bound<'_, PyDict>>,
        token_warning_ms: u64,
    ) -> PyResult<Self> {
        let mut settings = HubSettings {
            token,
            replay_capacity,
            session_ttl_ms,
            hello_timeout_ms,
            agent_chunk_ms,
            idle_timeout_ms,
            max_frame_bytes,
            restart_retry_after_ms,
            restart_spread_ms,
            token_warning_ms,
            ..HubSettings::default()
        };
        if let Some(l) = limits {
            settings.limits = hub_limits(l)?;
        }
        if let Some(r) = rate_limit {
            settings.rate_limit = self::rate_limit(r)?;
        }
        let agent = agent_chunks.map(|chunks| ScriptedAgent { chunks });
        let mut net = Network::new(settings, seed).with_agent(agent);
        net.set_latency_ms(latency_ms);
        Ok(PyNetwork {
            inner: Mutex::new(net),
        })
    }

    /// Adds an idle client for `url` (config keys as keyword arguments, as for `Session`);
    /// returns its number.
    #[pyo3(
        signature = (url = Urls::One("ws://hub.test/ws".into()), **config),
        text_signature = "($self, url='ws://hub.test/ws', **config)"
    )]
    fn add_client(
        &self,
        py: Python<'_>,
        url: Urls,
        config: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<usize> {
        let cfg = config_from_kwargs(py, &url, config)?;
        let r = lock(py, &self.inner).add_client(cfg);
        r.map(|id| id.0)
            .map_err(|e| crate::errors::config_error(py, &e))
    }

    /// The virtual time in ms.
    #[getter]
    fn now_ms(&self, py: Python<'_>) -> u64 {
        lock(py, &self.inner).now().as_millis()
    }

    /// Runs `ms` of virtual time.
    fn advance(&self, py: Python<'_>, ms: u64) -> PyResult<()> {
        let r = py.detach(|| {
            self.inner
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .advance(ms)
        });
        r.map_err(|e| PyTimeoutError::new_err(e.to_string()))
    }

    /// Runs until `predicate(network)` is true, for at most `max_ms` of virtual time; returns the
    /// virtual ms it took. Raises `TimeoutError` when time runs out or the network livelocks.
    fn until(slf: &Bound<'_, Self>, predicate: &Bound<'_, PyAny>, max_ms: u64) -> PyResult<u64> {
        let py = slf.py();
        let this = slf.get();
        let start = lock(py, &this.inner).now();
        let end = start.add_ms(max_ms);
        let mut watchdog = Watchdog::new(start);
        // The predicate runs with the network unlocked (it reads the network itself).
        while !predicate.call1((slf,))?.is_truthy()? {
            let mut net = lock(py, &this.inner);
            if !net.step(end) {
                return Err(PyTimeoutError::new_err(format!(
                    "predicate still false after {max_ms} ms of virtual time"
                )));
            }
            watchdog
                .check(net.now())
                .map_err(|e| PyTimeoutError::new_err(e.to_string()))?;
        }
        Ok(lock(py, &this.inner).now().ms_since(start))
    }

    /// Applies any session input in its canonical JSON form (dict or text) to a client now.
    fn handle_input(
        &self,
        py: Python<'_>,
        client: usize,
        input: &Bound<'_, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        let input: Input = input_from_py(input)?;
        let r = self.client(py, client, |n, id| {
            n.with(id, |s, now| s.handle_input(now, input))
        })?;
        outcome_to_py(py, check(py, r)?)
    }

    /// Connects a client.
    fn connect(&self, py: Python<'_>, client: usize) -> PyResult<()> {
        let r = self.client(py, client, |n, id| n.with(id, |s, now| s.connect(now)))?;
        check(py, r)
    }

    /// Closes a client (1000).
    fn disconnect(&self, py: Python<'_>, client: usize) -> PyResult<()> {
        self.client(py, client, |n, id| n.with(id, |s, now| s.disconnect(now)))
    }

    /// A client sends an application message; returns its id.
    #[pyo3(signature = (client, r#type, data = None, *, project_id = None, delivery = "at_most_once", ttl_ms = None, coalesce = None, id = None, unix_ms = None))]
    #[allow(clippy::too_many_arguments)]
    fn send(
        &self,
        py: Python<'_>,
        client: usize,
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
        let r = self.client(py, client, |n, c| n.with(c, |s, now| s.send(now, req)))?;
        check(py, r)
    }

    /// A client subscribes; returns the subscription id.
    #[pyo3(signature = (client, pattern, project_id = None))]
    fn subscribe(
        &self,
        py: Python<'_>,
        client: usize,
        pattern: &str,
        project_id: Option<u64>,
    ) -> PyResult<u64> {
        let r = self.client(py, client, |n, id| {
            n.with(id, |s, now| s.subscribe(now, pattern, project_id))
        })?;
        check(py, r).map(|id| id.0)
    }

    /// A client joins a project.
    fn join_project(&self, py: Python<'_>, client: usize, project_id: u64) -> PyResult<()> {
        let r = self.client(py, client, |n, id| {
            n.with(id, |s, now| s.join_project(now, project_id))
        })?;
        check(py, r)
    }

    /// A client's connection state.
    fn state(&self, py: Python<'_>, client: usize) -> PyResult<&'static str> {
        self.session(py, client, |s| s.state().as_str())
    }

    /// A client's outputs so far (timeouts excluded) as dicts with `"at"` first.
    fn log<'py>(&self, py: Python<'py>, client: usize) -> PyResult<Bound<'py, PyList>> {
        let log = self.client(py, client, |n, id| n.log(id).to_vec())?;
        let list = PyList::empty(py);
        for (at, o) in &log {
            list.append(json_to_py(py, &o.to_json_at(*at))?)?;
        }
        Ok(list)
    }

    /// A client's events so far (dicts), in order.
    fn events<'py>(&self, py: Python<'py>, client: usize) -> PyResult<Bound<'py, PyAny>> {
        let ev: Vec<_> = self.client(py, client, |n, id| {
            n.events(id).into_iter().cloned().collect()
        })?;
        to_py(py, &ev)
    }

    /// The application messages a client's subscriptions received, as envelope dicts.
    fn messages<'py>(&self, py: Python<'py>, client: usize) -> PyResult<Bound<'py, PyAny>> {
        let m: Vec<_> = self.client(py, client, |n, id| {
            n.messages(id).into_iter().cloned().collect()
        })?;
        to_py(py, &m)
    }

    /// A client's counters.
    fn stats<'py>(&self, py: Python<'py>, client: usize) -> PyResult<Bound<'py, PyAny>> {
        let st = self.session(py, client, |s| s.stats())?;
        to_py(py, &st)
    }

    /// Users typing in a project, as a client sees them.
    fn typing_users(
        &self,
        py: Python<'_>,
        client: usize,
        project_id: u64,
    ) -> PyResult<Vec<String>> {
        self.session(py, client, |s| s.typing_users(project_id))
    }

    /// The text of an agent stream a client received so far.
    fn stream_content(
        &self,
        py: Python<'_>,
        client: usize,
        stream_id: &str,
    ) -> PyResult<Option<String>> {
        self.session(py, client, |s| {
            s.stream_content(stream_id).map(str::to_string)
        })
    }

    /// Cuts a client's link without a close frame.
    fn drop_link(&self, py: Python<'_>, client: usize) -> PyResult<()> {
        self.client(py, client, |n, id| n.drop_link(id))
    }

    /// Makes a client's link half-open.
    fn stall_link(&self, py: Python<'_>, client: usize) -> PyResult<()> {
        self.client(py, client, |n, id| n.stall_link(id))
    }

    /// Restarts the hub: 1012 and its restart window to everyone, refused for `down_ms`, back
    /// with its state or not.
    #[pyo3(signature = (*, keep_state = true, down_ms = 0))]
    fn restart_hub(&self, py: Python<'_>, keep_state: bool, down_ms: u64) {
        lock(py, &self.inner).restart_hub(keep_state, down_ms);
    }

    /// Seeded faults on every frame from now on.
    #[pyo3(signature = (*, drop = 0.0, delay_ms = 0, corrupt = 0.0))]
    fn set_faults(&self, py: Python<'_>, drop: f64, delay_ms: u64, corrupt: f64) -> PyResult<()> {
        for (name, p) in [("drop", drop), ("corrupt", corrupt)] {
            if !(0.0..=1.0).contains(&p) {
                return Err(PyValueError::new_err(format!(
                    "{name} must be in 0.0..=1.0, got {p}"
                )));
            }
        }
        lock(py, &self.inner).set_faults(LinkFaults {
            drop,
            delay_ms,
            corrupt,
        });
        Ok(())
    }

    /// Application messages the hub delivered to sessions so far.
    #[getter]
    fn hub_relayed(&self, py: Python<'_>) -> u64 {
        lock(py, &self.inner).hub().relayed()
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let net = lock(py, &self.inner);
        format!(
            "<sockline.testing.Network now_ms={} clients={}>",
            net.now().as_millis(),
            net.clients()
        )
    }
}

//! The test kit's heart (`sockline/testing`): client sessions and the real hub core on in-memory
//! links in virtual time (`sockline_core::testing::Network`), for an application's own tests.

use serde_json::Value;
use sockline_core::hub::{HubSettings, ScriptedAgent};
use sockline_core::testing::{
    ClientId, LinkFaults, Network as CoreNetwork, Watchdog as CoreWatchdog,
};
use sockline_core::SendRequest;
use wasm_bindgen::prelude::*;

use crate::convert::{parse, snake_keys_deep, snake_keys_top, time, whole, Failure};
use crate::hub::hub_options;

type Result<T> = std::result::Result<T, Failure>;

/// Clients and a hub on in-memory links, driven together in virtual time.
#[wasm_bindgen]
pub struct Network {
    inner: CoreNetwork,
}

/// Hub settings a test may set (camelCased, as for `Hub`) and the links' latency (`latencyMs`).
fn settings(options: &Value, seed: u64) -> Result<(HubSettings, Option<ScriptedAgent>, u64)> {
    let (settings, agent) = hub_options(options, seed, &["latencyMs"])?;
    let latency = match options.get("latencyMs").filter(|v| !v.is_null()) {
        Some(v) => v
            .as_u64()
            .ok_or_else(|| Failure::new("invalid_argument", "latencyMs must be a whole number"))?,
        None => 5,
    };
    Ok((settings, agent, latency))
}

#[wasm_bindgen]
impl Network {
    /// A hub (options as for `Hub`, plus `latencyMs`) and no clients; `seed` fixes session ids,
    /// client seeds and every fault.
    #[wasm_bindgen(constructor)]
    pub fn new(options_json: &str, seed: f64) -> Result<Network> {
        let seed = whole("seed", seed)?;
        let (settings, agent, latency) = settings(&parse("options", options_json)?, seed)?;
        let mut inner = CoreNetwork::new(settings, seed).with_agent(agent);
        inner.set_latency_ms(latency);
        Ok(Network { inner })
    }

    /// Adds an idle client (session options as for `Session`, camelCased); returns its number.
    #[wasm_bindgen(js_name = addClient)]
    pub fn add_client(&mut self, options_json: &str) -> Result<f64> {
        let config = crate::config(snake_keys_deep(parse("options", options_json)?))?;
        Ok(self.inner.add_client(config)?.0 as f64)
    }

    fn client(&self, client: f64) -> Result<ClientId> {
        let id = whole("client", client)? as usize;
        if id < self.inner.clients() {
            Ok(ClientId(id))
        } else {
            Err(Failure::new(
                "invalid_argument",
                format!("no client {id} in this network"),
            ))
        }
    }

    /// The virtual time in ms.
    #[wasm_bindgen(getter)]
    pub fn now(&self) -> f64 {
        self.inner.now().as_millis() as f64
    }

    /// Runs `ms` of virtual time.
    pub fn advance(&mut self, ms: f64) -> Result<()> {
        let ms = whole("ms", ms)?;
        self.inner
            .advance(ms)
            .map_err(|e| Failure::new("livelock", e.to_string()))
    }

    /// Moves to the next instant something happens, at most `endMs`; false when nothing does.
    pub fn step(&mut self, end_ms: f64) -> Result<bool> {
        Ok(self.inner.step(time(end_ms)?))
    }

    /// Connects a client.
    pub fn connect(&mut self, client: f64) -> Result<()> {
        let id = self.client(client)?;
        Ok(self.inner.with(id, |s, now| s.connect(now))?)
    }

    /// Closes a client (1000).
    pub fn disconnect(&mut self, client: f64) -> Result<()> {
        let id = self.client(client)?;
        self.inner.with(id, |s, now| s.disconnect(now));
        Ok(())
    }

    /// A client sends a message (as for `Session.send`); returns its id.
    pub fn send(&mut self, client: f64, message_json: &str) -> Result<String> {
        let id = self.client(client)?;
        let req: SendRequest =
            serde_json::from_value(snake_keys_top(parse("message", message_json)?))
                .map_err(|e| Failure::new("invalid_message", format!("invalid message: {e}")))?;
        Ok(self.inner.with(id, |s, now| s.send(now, req))?)
    }

    /// A client subscribes; returns the subscription number.
    pub fn subscribe(
        &mut self,
        client: f64,
        pattern: &str,
        project_id: Option<f64>,
    ) -> Result<f64> {
        let id = self.client(client)?;
        let project_id = project_id.map(|p| whole("projectId", p)).transpose()?;
        let sub = self
            .inner
            .with(id, |s, now| s.subscribe(now, pattern, project_id))?;
        Ok(sub.0 as f64)
    }

    /// A client joins a project.
    #[wasm_bindgen(js_name = joinProject)]
    pub fn join_project(&mut self, client: f64, project_id: f64) -> Result<()> {
        let id = self.client(client)?;
        let p = whole("projectId", project_id)?;
        Ok(self.inner.with(id, |s, now| s.join_project(now, p))?)
    }

    /// A client's connection state.
    pub fn state(&self, client: f64) -> Result<String> {
        Ok(self.inner.state(self.client(client)?).as_str().to_string())
    }

    /// A client's events so far, as a JSON array of canonical objects.
    pub fn events(&self, client: f64) -> Result<String> {
        let events: Vec<_> = self.inner.events(self.client(client)?);
        Ok(serde_json::to_string(&events).unwrap_or_default())
    }

    /// The messages a client's subscriptions received, as a JSON array of envelopes.
    pub fn messages(&self, client: f64) -> Result<String> {
        let messages: Vec<_> = self.inner.messages(self.client(client)?);
        Ok(serde_json::to_string(&messages).unwrap_or_default())
    }

    /// The text of an agent stream a client received so far.
    #[wasm_bindgen(js_name = streamContent)]
    pub fn stream_content(&self, client: f64, stream_id: &str) -> Result<Option<String>> {
        let s = self.inner.session(self.client(client)?);
        Ok(s.stream_content(stream_id).map(str::to_string))
    }

    /// Users typing in a project, as a client sees them (JSON array).
    #[wasm_bindgen(js_name = typingUsers)]
    pub fn typing_users(&self, client: f64, project_id: f64) -> Result<String> {
        let s = self.inner.session(self.client(client)?);
        Ok(Value::from(s.typing_users(whole("projectId", project_id)?)).to_string())
    }

    /// Cuts a client's link without a close frame.
    #[wasm_bindgen(js_name = dropLink)]
    pub fn drop_link(&mut self, client: f64) -> Result<()> {
        let id = self.client(client)?;
        self.inner.drop_link(id);
        Ok(())
    }

    /// Makes a client's link half-open.
    #[wasm_bindgen(js_name = stallLink)]
    pub fn stall_link(&mut self, client: f64) -> Result<()> {
        let id = self.client(client)?;
        self.inner.stall_link(id);
        Ok(())
    }

    /// Restarts the hub: 1012 and its restart window to everyone, refused for `downMs`, back with
    /// its state or not.
    #[wasm_bindgen(js_name = restartHub)]
    pub fn restart_hub(&mut self, keep_state: bool, down_ms: f64) -> Result<()> {
        self.inner
            .restart_hub(keep_state, whole("downMs", down_ms)?);
        Ok(())
    }

    /// Seeded faults on every frame from now on (`drop` and `corrupt` are chances 0..1).
    #[wasm_bindgen(js_name = setFaults)]
    pub fn set_faults(&mut self, drop: f64, delay_ms: f64, corrupt: f64) -> Result<()> {
        for (name, p) in [("drop", drop), ("corrupt", corrupt)] {
            if !(0.0..=1.0).contains(&p) {
                return Err(Failure::new(
                    "invalid_argument",
                    format!("{name} must be in 0..1, got {p}"),
                ));
            }
        }
        let delay_ms = whole("delayMs", delay_ms)?;
        self.inner.set_faults(LinkFaults {
            drop,
            delay_ms,
            corrupt,
        });
        Ok(())
    }

    /// Application messages the hub delivered so far.
    #[wasm_bindgen(getter, js_name = hubRelayed)]
    pub fn hub_relayed(&self) -> f64 {
        self.inner.hub().relayed() as f64
    }
}

/// Counts the steps a drive takes at one virtual instant (the core's livelock rule).
#[wasm_bindgen]
pub struct Watchdog {
    inner: CoreWatchdog,
}

#[wasm_bindgen]
impl Watchdog {
    /// A watchdog for a drive starting at `nowMs`.
    #[wasm_bindgen(constructor)]
    pub fn new(now_ms: f64) -> Result<Watchdog> {
        Ok(Watchdog {
            inner: CoreWatchdog::new(time(now_ms)?),
        })
    }

    /// Records one step ending at `nowMs`; throws `livelock` once too many end at one instant.
    pub fn check(&mut self, now_ms: f64) -> Result<()> {
        self.inner
            .check(time(now_ms)?)
            .map_err(|e| Failure::new("livelock", e.to_string()))
    }
}

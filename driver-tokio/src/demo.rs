//! `sockline demo`: a live story in the terminal. An embedded hub and two clients on loopback:
//! connect, join a project, an edit, typing, an agent answer streaming in, the hub shut down and
//! restarted mid-stream (the window it tells its clients to come back in, a message sent during
//! the outage, the stream resuming), stats.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use serde_json::json;
use sockline_core::{Config, Event, Jitter, SendRequest, State, Stats};
use tokio::time::{sleep, timeout, Instant};

use crate::client::{Client, ClientOptions, StreamUpdate};
use crate::hub::{Hub, HubConfig};

const PROJECT: u64 = 1;
const CHUNKS: u32 = 24;

#[derive(Clone, Copy)]
struct Printer {
    color: bool,
    start: Instant,
}

impl Printer {
    fn line(&self, who: &str, text: &str) {
        let t = self.start.elapsed().as_secs_f64();
        let (c, r) = match (self.color, who) {
            (false, _) => ("", ""),
            (true, "hub") => ("\x1b[35m", "\x1b[0m"),
            (true, "ann") => ("\x1b[36m", "\x1b[0m"),
            (true, "bob") => ("\x1b[33m", "\x1b[0m"),
            (true, _) => ("\x1b[1m", "\x1b[0m"),
        };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{t:6.2}s {c}{who:>5}{r}  {text}");
        let _ = out.flush();
    }

    fn step(&self, text: &str) {
        let (b, r) = if self.color {
            ("\x1b[1m", "\x1b[0m")
        } else {
            ("", "")
        };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "\n{b}── {text}{r}");
        let _ = out.flush();
    }
}

fn config(url: &str, user: &str, initial_ms: u64) -> Config {
    let mut c = Config::new(url);
    c.user_id = Some(user.into());
    c.reconnect.jitter = Jitter::None;
    c.reconnect.initial_ms = initial_ms;
    c.reconnect.max_attempts = None;
    c.heartbeat.interval_ms = 2_000;
    c
}

/// Prints what a client's session reports, as the story goes.
fn narrate(client: &Client, who: &'static str, p: Printer) {
    let mut events = client.events();
    tokio::spawn(async move {
        while let Some(e) = events.recv().await {
            let text = match &e {
                Event::Status {
                    from, to, reason, ..
                } => format!("status {from} → {to} ({reason})"),
                Event::ReconnectScheduled { attempt, delay_ms } => {
                    format!("reconnect attempt {attempt} in {delay_ms} ms")
                }
                Event::Ready { resumed: true, .. } => {
                    "session resumed: the hub replays what was missed".into()
                }
                Event::Presence { members, .. } => {
                    format!("presence in project {PROJECT}: {}", members.join(", "))
                }
                Event::Typing { users, .. } if users.is_empty() => "nobody is typing".into(),
                Event::Typing { users, .. } => format!("typing: {} …", users.join(", ")),
                Event::Message { message, .. } if message.msg_type == "project_updated" => {
                    let d = message.data_value();
                    format!("project {PROJECT} is now v{}: {}", d["version"], d["title"])
                }
                Event::Message { message, .. } if message.msg_type == "chat" => {
                    format!("chat received: {}", message.data.get())
                }
                Event::Stream { state, len, .. }
                    if !matches!(state, sockline_core::StreamState::Delta) =>
                {
                    format!("agent stream {state:?} ({len} bytes)").to_lowercase()
                }
                Event::Dropped { id, reason, .. } => format!("dropped {id}: {reason:?}"),
                _ => continue,
            };
            p.line(who, &text);
        }
    });
}

fn summary(p: Printer, who: &str, s: &Stats) {
    p.line(
        who,
        &format!(
            "frames in/out {}/{}, sent {}, delivered {}, resent {}, reconnects {}, dropped {}, last RTT {}",
            s.frames_in,
            s.frames_out,
            s.messages_sent,
            s.messages_delivered,
            s.resent,
            s.reconnects,
            s.dropped,
            s.last_rtt_ms.map_or("-".into(), |r| format!("{r} ms"))
        ),
    );
}

async fn wait_open(c: &Client) -> Result<(), String> {
    let mut st = c.state();
    let opened = timeout(Duration::from_secs(10), st.wait_for(|s| *s == State::Open))
        .await
        .map_err(|_| "a client did not connect within 10 s".to_string())?
        .is_ok();
    if opened {
        Ok(())
    } else {
        Err("a client stopped".to_string())
    }
}

/// Runs the demo; returns the process exit code.
pub async fn run() -> u8 {
    match story().await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("sockline demo: {e}");
            1
        }
    }
}

async fn story() -> Result<(), String> {
    let p = Printer {
        color: std::io::stdout().is_terminal(),
        start: Instant::now(),
    };
    let mut cfg = HubConfig::default();
    cfg.settings.agent_chunk_ms = 120;
    // The story's hub is back after about 1.6 s: its clients come back in the 0.7 s after 1.8 s.
    cfg.settings.restart_retry_after_ms = 1_800;
    cfg.settings.restart_spread_ms = 700;
    cfg.agent = Some(sockline_core::hub::ScriptedAgent { chunks: CHUNKS });
    let hub = Hub::start(cfg.clone())
        .await
        .map_err(|e| format!("hub: {e}"))?;
    cfg.listen = hub.local_addr();
    let url = hub.url();
    p.step("An embedded hub and two clients, ann and bob, on loopback");
    p.line("hub", &format!("listening on {url}"));
    let options = |seed| ClientOptions {
        seed: Some(seed),
        ..ClientOptions::default()
    };
    let ann =
        Client::connect_with(config(&url, "ann", 400), options(1)).map_err(|e| e.to_string())?;
    let bob =
        Client::connect_with(config(&url, "bob", 250), options(2)).map_err(|e| e.to_string())?;
    narrate(&ann, "ann", p);
    narrate(&bob, "bob", p);
    let _bob_chat = bob
        .subscribe("chat", Some(PROJECT))
        .await
        .map_err(|e| e.to_string())?;
    let _bob_updates = bob
        .subscribe("project_updated", Some(PROJECT))
        .await
        .map_err(|e| e.to_string())?;
    let mut bob_inbox = bob
        .subscribe("chat", Some(PROJECT))
        .await
        .map_err(|e| e.to_string())?;
    wait_open(&ann).await?;
    wait_open(&bob).await?;

    p.step("Both join project 1");
    ann.join_project(PROJECT).await.map_err(|e| e.to_string())?;
    bob.join_project(PROJECT).await.map_err(|e| e.to_string())?;
    sleep(Duration::from_millis(400)).await;

    p.step("ann edits the project; the hub bumps its version and broadcasts it");
    ann.send(
        SendRequest::new("project_update", json!({"title": "Quarterly filing"})).project(PROJECT),
    )
    .await
    .map_err(|e| e.to_string())?;
    sleep(Duration::from_millis(400)).await;

    p.step("bob starts typing; ann sees it");
    bob.start_typing(PROJECT).await.map_err(|e| e.to_string())?;
    sleep(Duration::from_millis(500)).await;

    p.step("ann asks the agent; the answer streams in");
    let mut deltas = ann.stream("answer").map_err(|e| e.to_string())?;
    ann.send(SendRequest::new(
        "agent_prompt",
        json!({"prompt": "summarise the filing", "streamId": "answer"}),
    ))
    .await
    .map_err(|e| e.to_string())?;
    let reader = tokio::spawn(async move {
        let mut text = String::new();
        let mut n = 0;
        while let Some(u) = deltas.recv().await {
            match u {
                StreamUpdate::Delta(d) => {
                    text.push_str(&d);
                    n += 1;
                    if n % 4 == 0 {
                        p.line("ann", &format!("agent ▸ {}", text.trim_end()));
                    }
                }
                StreamUpdate::Done => return Ok(text),
                other => return Err(format!("the stream ended with {other:?}")),
            }
        }
        Err("the stream never finished".to_string())
    });
    sleep(Duration::from_millis(1_300)).await;

    p.step(
        "The hub shuts down mid-stream, telling its clients to come back in 1.8-2.5 s (close 1012)",
    );
    let state = hub.state();
    hub.shutdown().await;
    p.line("hub", "down");
    sleep(Duration::from_millis(400)).await;
    p.step("ann sends a chat while the hub is down: it waits in her outbox");
    ann.send(SendRequest::new("chat", json!("sent during the outage")).project(PROJECT))
        .await
        .map_err(|e| e.to_string())?;
    sleep(Duration::from_millis(1_200)).await;

    p.step("The hub restarts on the same port (its sessions kept, as a shared broker would)");
    let hub = Hub::start_with_state(cfg, state)
        .await
        .map_err(|e| format!("hub restart: {e}"))?;
    p.line("hub", &format!("back on {}", hub.url()));
    wait_open(&ann).await?;
    wait_open(&bob).await?;
    let chat = timeout(Duration::from_secs(10), bob_inbox.recv())
        .await
        .map_err(|_| "bob never got the chat sent during the outage".to_string())?;
    if chat.is_none() {
        return Err("bob's client stopped".into());
    }
    let text = timeout(Duration::from_secs(15), reader)
        .await
        .map_err(|_| "the agent stream did not finish".to_string())?
        .map_err(|e| e.to_string())??;
    let words = text.split_whitespace().count();
    p.line(
        "ann",
        &format!(
            "agent ✔ {} ({words} words, each once, in order)",
            text.trim_end()
        ),
    );
    if words != CHUNKS as usize {
        return Err(format!(
            "expected {CHUNKS} words in the answer, got {words}"
        ));
    }

    p.step("Stats");
    summary(p, "ann", &ann.stats().await.map_err(|e| e.to_string())?);
    summary(p, "bob", &bob.stats().await.map_err(|e| e.to_string())?);
    ann.close().await.map_err(|e| e.to_string())?;
    bob.close().await.map_err(|e| e.to_string())?;
    hub.shutdown().await;
    p.step("Done: every message delivered once, in order, across a hub restart");
    Ok(())
}

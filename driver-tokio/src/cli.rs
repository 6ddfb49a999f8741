//! The `sockline` command line: `connect`, `replay`, `hub`, `demo`.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::Value;
use sockline_core::{
    Config, Delivery, Event, Output, RateLimitConfig, SendRequest, State, Timestamp,
};
use tokio::io::AsyncBufReadExt;

use crate::client::{Client, ClientOptions};

/// Exit code for a clean close.
pub const EXIT_OK: u8 = 0;
/// Exit code for bad arguments, a bad URL or an unreadable file.
pub const EXIT_USAGE: u8 = 2;
/// Exit code when the session gave up.
pub const EXIT_GAVE_UP: u8 = 3;

/// sockline: a deterministic real-time WebSocket session layer.
#[derive(Debug, Parser)]
#[command(name = "sockline", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
// Parsed once per process: the hub's many flags make its variant the largest, at no cost.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Connect to a server, print every output as it happens, send JSON lines read from stdin.
    Connect(ConnectArgs),
    /// Replay a trace file and print every output as one canonical JSON line.
    Replay {
        /// The trace (`{"config", "seed", "inputs"}`).
        trace: std::path::PathBuf,
    },
    /// Run the reference hub (WebSocket at /ws, the browser demo at /demo/websocket) until
    /// Ctrl-C or SIGTERM.
    Hub(HubArgs),
    /// A live story on loopback: two clients, a hub killed and restarted mid-stream; with
    /// `--web`, a hub serving the browser demo instead, until Ctrl-C.
    Demo {
        /// Start a hub with the scripted agent and print the demo page's URL to open.
        #[arg(long)]
        web: bool,
        /// Address the `--web` hub listens on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
    },
}

/// Flags of `sockline hub`.
#[derive(Debug, clap::Args)]
pub struct HubArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// Require this token in `hello` (close 4001 otherwise): a development option, one shared
    /// secret for everybody (use --jwt-secret-file or --jwt-public-key-file in production).
    #[arg(long, conflicts_with_all = ["jwt_secret_file", "jwt_public_key_file"])]
    pub token: Option<String>,
    /// Verify `hello.token` as an HS256 JWT signed with the secret in this file (at least 32
    /// bytes): a connection is its token's `sub`, may join its `projects` claim only.
    #[arg(long, value_name = "PATH", conflicts_with = "jwt_public_key_file")]
    pub jwt_secret_file: Option<std::path::PathBuf>,
    /// Verify `hello.token` as an RS256 or ES256 JWT with the public key (PEM) in this file.
    #[arg(long, value_name = "PATH")]
    pub jwt_public_key_file: Option<std::path::PathBuf>,
    /// Accept WebSocket upgrades only from browsers on this origin (repeatable, e.g.
    /// `https://app.example`); without it any origin may connect.
    #[arg(long = "allowed-origin", value_name = "ORIGIN")]
    pub allowed_origins: Vec<String>,
    /// Per-user and per-connection limits as JSON with the `HubLimits` keys, e.g.
    /// `{"maxConnectionsPerUser":8,"maxProjectsPerConnection":16}` (unnamed keys keep their
    /// defaults).
    #[arg(long, value_name = "JSON")]
    pub limits: Option<String>,
    /// Directory served at `/` (default: the browser demo built by bindings-wasm/build.sh,
    /// when there is one).
    #[arg(long = "static", value_name = "DIR")]
    pub static_dir: Option<std::path::PathBuf>,
    /// Milliseconds between agent stream chunks.
    #[arg(long, default_value_t = 50)]
    pub agent_chunk_ms: u64,
    /// Close a welcomed connection silent this long (1001 "idle timeout", the client may reconnect); 0 = never.
    #[arg(long, default_value_t = 120_000)]
    pub idle_timeout_ms: u64,
    /// On shutdown (Ctrl-C, SIGTERM), tell clients to wait at least this long before reconnecting
    /// (the 1012 close's `retryAfterMs`): about how long a restart takes.
    #[arg(long, default_value_t = 0)]
    pub restart_retry_after_ms: u64,
    /// ... and to spread their reconnects uniformly over this many ms above that (`spreadMs`),
    /// so they do not all arrive at once; both 0: no hint, clients keep their own backoff.
    #[arg(long, default_value_t = 3_000)]
    pub restart_spread_ms: u64,
    /// Chunks per agent stream.
    #[arg(long, default_value_t = 20)]
    pub agent_chunks: u32,
    /// Messages kept per session for replay on resume.
    #[arg(long, default_value_t = 1024)]
    pub replay: usize,
    /// Frames queued per connection before it is closed as a slow consumer (4009).
    #[arg(long, default_value_t = 1024)]
    pub outbound_queue: usize,
    /// Largest inbound frame in bytes (bigger: close 1009).
    #[arg(long, default_value_t = 1 << 20)]
    pub max_frame_bytes: usize,
    /// Inbound rate limit per connection, `PER_SEC:BURST` or `off`.
    #[arg(long, default_value = "200:400")]
    pub rate: String,
    /// Seed for every chaos choice.
    #[arg(long, default_value_t = 0)]
    pub chaos_seed: u64,
    /// Drop each connection after a random time in `A..B` ms.
    #[arg(long, value_name = "A..B")]
    pub chaos_drop_ms: Option<String>,
    /// Close dropped connections with this code (abrupt drop when omitted).
    #[arg(long)]
    pub chaos_close_code: Option<u16>,
    /// Delay every pong by this many ms.
    #[arg(long)]
    pub chaos_pong_delay_ms: Option<u64>,
    /// Never answer pings.
    #[arg(long)]
    pub chaos_swallow_pongs: bool,
    /// Stall (stop reading and writing, keep the socket) after a random time in `A..B` ms.
    #[arg(long, value_name = "A..B")]
    pub chaos_stall_ms: Option<String>,
    /// Fraction of outbound frames to corrupt (0.0-1.0).
    #[arg(long, default_value_t = 0.0)]
    pub chaos_corrupt: f64,
    /// Share projects (logs, states) with every hub on this Redis, e.g. `redis://127.0.0.1:6379`;
    /// without it the hub keeps them in memory, alone.
    #[arg(long, value_name = "URL")]
    pub redis: Option<String>,
    /// Prefix of the Redis keys and events channel (one Redis, several clusters).
    #[arg(long, default_value = "sockline", requires = "redis")]
    pub redis_prefix: String,
}

fn parse_range(flag: &str, v: &str) -> Result<std::ops::Range<u64>, String> {
    let (a, b) = v
        .split_once("..")
        .ok_or_else(|| format!("{flag}: expected A..B, got {v:?}"))?;
    let (a, b): (u64, u64) = (
        a.trim()
            .parse()
            .map_err(|_| format!("{flag}: bad number {a:?}"))?,
        b.trim()
            .parse()
            .map_err(|_| format!("{flag}: bad number {b:?}"))?,
    );
    if a >= b {
        return Err(format!("{flag}: the range {a}..{b} is empty"));
    }
    Ok(a..b)
}

/// Turns `sockline hub` flags into a hub configuration.
pub fn hub_config(args: &HubArgs) -> Result<crate::hub::HubConfig, String> {
    let rate = match args.rate.as_str() {
        "off" => RateLimitConfig::Off,
        r => {
            let (p, b) = r
                .split_once(':')
                .ok_or_else(|| format!("--rate: expected PER_SEC:BURST or off, got {r:?}"))?;
            let p: u32 = p
                .parse()
                .map_err(|_| format!("--rate: bad per-second {p:?}"))?;
            let b: u32 = b.parse().map_err(|_| format!("--rate: bad burst {b:?}"))?;
            if p == 0 || b == 0 {
                return Err("--rate: both numbers must be at least 1".into());
            }
            RateLimitConfig::Bucket {
                per_sec: p,
                burst: b,
            }
        }
    };
    if !(0.0..=1.0).contains(&args.chaos_corrupt) {
        return Err(format!(
            "--chaos-corrupt: {} is not in 0.0..=1.0",
            args.chaos_corrupt
        ));
    }
    let window = args
        .restart_retry_after_ms
        .saturating_add(args.restart_spread_ms);
    if window > sockline_core::hub::MAX_RESTART_WINDOW_MS {
        return Err(format!(
            "--restart-retry-after-ms + --restart-spread-ms: {window} ms is past {} ms, the latest a client honours",
            sockline_core::hub::MAX_RESTART_WINDOW_MS
        ));
    }
    let read = |flag: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| format!("{flag}: cannot read {}: {e}", path.display()))
    };
    let jwt = match (&args.jwt_secret_file, &args.jwt_public_key_file) {
        (Some(path), _) => Some(
            crate::hub::JwtVerifier::hs256(&read("--jwt-secret-file", path)?)
                .map_err(|e| format!("--jwt-secret-file: {e}"))?,
        ),
        (None, Some(path)) => Some(
            crate::hub::JwtVerifier::public_key_pem(&read("--jwt-public-key-file", path)?)
                .map_err(|e| format!("--jwt-public-key-file: {e}"))?,
        ),
        (None, None) => None,
    };
    let limits = match &args.limits {
        Some(json) => serde_json::from_str(json).map_err(|e| format!("--limits: {e}"))?,
        None => sockline_core::hub::HubLimits::default(),
    };
    let chaos = sockline_core::hub::ChaosConfig {
        seed: args.chaos_seed,
        drop_ms: args
            .chaos_drop_ms
            .as_deref()
            .map(|v| parse_range("--chaos-drop-ms", v))
            .transpose()?,
        close_code: args.chaos_close_code,
        pong_delay_ms: args.chaos_pong_delay_ms,
        swallow_pongs: args.chaos_swallow_pongs,
        stall_ms: args
            .chaos_stall_ms
            .as_deref()
            .map(|v| parse_range("--chaos-stall-ms", v))
            .transpose()?,
        corrupt: args.chaos_corrupt,
    };
    Ok(crate::hub::HubConfig {
        listen: args.listen,
        settings: sockline_core::hub::HubSettings {
            token: args.token.clone(),
            limits,
            allowed_origins: args.allowed_origins.clone(),
            replay_capacity: args.replay,
            rate_limit: rate,
            agent_chunk_ms: args.agent_chunk_ms,
            idle_timeout_ms: args.idle_timeout_ms,
            max_frame_bytes: args.max_frame_bytes,
            chaos,
            restart_retry_after_ms: args.restart_retry_after_ms,
            restart_spread_ms: args.restart_spread_ms,
            ..sockline_core::hub::HubSettings::default()
        },
        agent: Some(sockline_core::hub::ScriptedAgent {
            chunks: args.agent_chunks,
        }),
        outbound_queue: args.outbound_queue.max(1),
        static_dir: args.static_dir.clone().or_else(built_demo),
        redis: args.redis.clone(),
        redis_prefix: args.redis_prefix.clone(),
        jwt: jwt.map(std::sync::Arc::new),
        ..crate::hub::HubConfig::default()
    })
}

/// The browser demo as `bindings-wasm/build.sh` writes it next to this crate, if it was built.
pub fn built_demo() -> Option<std::path::PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../bindings-wasm/dist/demo");
    dir.join("index.html").is_file().then_some(dir)
}

async fn hub(args: HubArgs) -> u8 {
    let cfg = match hub_config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sockline hub: {e}");
            return EXIT_USAGE;
        }
    };
    let handle = match crate::hub::Hub::start(cfg).await {
        Ok(h) => h,
        Err(e) => {
            eprintln!("sockline hub: cannot start on {}: {e}", args.listen);
            return EXIT_USAGE;
        }
    };
    println!(
        "sockline hub listening on {} (demo page at http://{}/demo/websocket)",
        handle.url(),
        handle.local_addr()
    );
    stop_requested().await;
    handle.shutdown().await;
    EXIT_OK
}

/// `sockline demo --web`: a hub with the scripted agent serving the browser demo.
async fn demo_web(listen: std::net::SocketAddr) -> u8 {
    let Some(dir) = built_demo() else {
        eprintln!(
            "sockline demo --web: the browser demo is not built; run bindings-wasm/build.sh first"
        );
        return EXIT_USAGE;
    };
    let cfg = crate::hub::HubConfig {
        listen,
        static_dir: Some(dir),
        ..crate::hub::HubConfig::default()
    };
    let handle = match crate::hub::Hub::start(cfg).await {
        Ok(h) => h,
        Err(e) => {
            eprintln!("sockline demo --web: cannot listen on {listen}: {e}");
            return EXIT_USAGE;
        }
    };
    println!(
        "sockline demo: open http://{}/demo/websocket (two windows show typing and presence); Ctrl-C stops",
        handle.local_addr()
    );
    stop_requested().await;
    handle.shutdown().await;
    EXIT_OK
}

/// Ctrl-C, or SIGTERM (how service managers and containers stop a process).
async fn stop_requested() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Flags of `sockline connect`.
#[derive(Debug, clap::Args)]
pub struct ConnectArgs {
    /// `ws://` or `wss://` URL; several hubs' URLs for failover (reconnects rotate through them).
    #[arg(required = true, num_args = 1.., value_name = "URL")]
    pub urls: Vec<String>,
    /// Join this project (repeatable).
    #[arg(long = "project", value_name = "N")]
    pub projects: Vec<u64>,
    /// Print messages matching this pattern (`type`, `prefix*` or `*`; repeatable); every
    /// message (`*`) when omitted.
    #[arg(long = "subscribe", value_name = "PATTERN")]
    pub subscribe: Vec<String>,
    /// Record the session's inputs and write the replayable trace here when it ends.
    #[arg(long, value_name = "PATH")]
    pub record: Option<std::path::PathBuf>,
    /// Token sent in `hello`.
    #[arg(long)]
    pub token: Option<String>,
    /// The local user id.
    #[arg(long)]
    pub user: Option<String>,
    /// Print canonical JSON lines instead of readable ones.
    #[arg(long)]
    pub json: bool,
    /// Seed for the session's PRNG (random when omitted).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Any config key by dotted path, value as JSON (or a bare string), e.g.
    /// `--set reconnect.max_attempts=null --set heartbeat.interval_ms=5000` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

/// Parses arguments and runs; the process exit code follows the documented contract.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sockline: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(run(cli));
    // A blocking stdin read may still be parked on its thread: do not wait for it.
    runtime.shutdown_background();
    ExitCode::from(code)
}

/// Runs a parsed command; returns the exit code.
pub async fn run(cli: Cli) -> u8 {
    match cli.command {
        Command::Connect(args) => connect(args).await,
        Command::Replay { trace } => replay(&trace),
        Command::Hub(args) => hub(args).await,
        Command::Demo { web: false, .. } => crate::demo::run().await,
        Command::Demo { web: true, listen } => demo_web(listen).await,
    }
}

fn replay(path: &std::path::Path) -> u8 {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("sockline replay: cannot read {}: {e}", path.display());
            return EXIT_USAGE;
        }
    };
    let result = sockline_core::replay_text(&text, std::io::stdout().lock());
    match result {
        Ok(()) => EXIT_OK,
        Err(e) => {
            eprintln!("sockline replay: {}: {e}", path.display());
            EXIT_USAGE
        }
    }
}

/// Builds the session config from flags through the canonical JSON form, so every key works.
pub fn build_config(args: &ConnectArgs) -> Result<Config, String> {
    let mut json = match args.urls.as_slice() {
        [one] => serde_json::json!({ "url": one }),
        many => serde_json::json!({ "urls": many }),
    };
    if let Some(u) = &args.user {
        json["user_id"] = u.clone().into();
    }
    if let Some(t) = &args.token {
        json["token"] = t.clone().into();
    }
    for kv in &args.set {
        let (key, value) = kv
            .split_once('=')
            .ok_or_else(|| format!("--set {kv:?}: expected KEY=VALUE"))?;
        let value: Value =
            serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_string()));
        let mut slot = &mut json;
        for part in key.split('.') {
            if !slot.is_object() {
                *slot = serde_json::json!({});
            }
            slot = slot
                .as_object_mut()
                .map(|m| m.entry(part.to_string()).or_insert(Value::Null))
                .ok_or_else(|| format!("--set {key}: not an object path"))?;
        }
        *slot = value;
    }
    Config::from_json(&json.to_string()).map_err(|e| e.to_string())
}

/// A message line read from stdin.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SendLine {
    #[serde(rename = "type")]
    msg_type: String,
    #[serde(default)]
    data: Value,
    #[serde(default)]
    project_id: Option<u64>,
    #[serde(default)]
    delivery: Option<Delivery>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    ttl_ms: Option<u64>,
    #[serde(default)]
    coalesce: Option<String>,
}

impl SendLine {
    fn into_request(self) -> SendRequest {
        SendRequest {
            msg_type: self.msg_type,
            data: self.data,
            project_id: self.project_id,
            delivery: self.delivery.unwrap_or_default(),
            ttl_ms: self.ttl_ms,
            coalesce: self.coalesce,
            id: self.id,
            unix_ms: Some(unix_ms()),
        }
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

async fn connect(args: ConnectArgs) -> u8 {
    let config = match build_config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sockline connect: {e}");
            return EXIT_USAGE;
        }
    };
    let options = ClientOptions {
        seed: args.seed,
        record: args.record.is_some(),
        ..ClientOptions::default()
    };
    // Idle until subscribed and joined: the session's history starts the same on every run.
    let (client, mut outputs) = match Client::idle_observed(config, options) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sockline connect: {e}");
            return EXIT_USAGE;
        }
    };
    let patterns = if args.subscribe.is_empty() {
        vec!["*".to_string()]
    } else {
        args.subscribe.clone()
    };
    for pattern in &patterns {
        match client.subscribe(pattern, None).await {
            // Messages print from the outputs; the subscription only has to exist.
            Ok(mut sub) => drop(tokio::spawn(
                async move { while sub.recv().await.is_some() {} },
            )),
            Err(e) => {
                eprintln!("sockline connect: --subscribe {pattern:?}: {e}");
                return EXIT_USAGE;
            }
        }
    }
    for p in &args.projects {
        if let Err(e) = client.join_project(*p).await {
            eprintln!("sockline connect: --project {p}: {e}");
            return EXIT_USAGE;
        }
    }
    if let Err(e) = client.reconnect().await {
        eprintln!("sockline connect: {e}");
        return EXIT_USAGE;
    }
    let mut status = client.state();
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let code = loop {
        tokio::select! {
            Some((at, out)) = outputs.next() => print_output(at, &out, args.json),
            changed = status.changed() => {
                if changed.is_err() || *status.borrow() == State::Failed {
                    break EXIT_GAVE_UP;
                }
            }
            line = lines.next_line() => match line {
                Ok(Some(line)) if line.trim().is_empty() => {}
                Ok(Some(line)) => match serde_json::from_str::<SendLine>(&line) {
                    Ok(msg) => {
                        if let Err(e) = client.send(msg.into_request()).await {
                            eprintln!("sockline connect: not sent: {e}");
                        }
                    }
                    Err(e) => eprintln!("sockline connect: skipped malformed line: {e}"),
                },
                Ok(None) | Err(_) => {
                    let _ = client.close().await;
                    break EXIT_OK;
                }
            },
        }
    };
    // Print whatever the last moments produced (the close, or the give-up).
    while let Ok(Some((at, out))) =
        tokio::time::timeout(Duration::from_millis(50), outputs.next()).await
    {
        print_output(at, &out, args.json);
    }
    if code == EXIT_GAVE_UP {
        let _ = client.close().await;
    }
    if let Some(path) = &args.record {
        let written = match client.trace().await {
            Some(trace) => std::fs::write(path, trace.to_json()).map_err(|e| e.to_string()),
            None => Err("no trace was recorded".into()),
        };
        if let Err(e) = written {
            eprintln!("sockline connect: --record {}: {e}", path.display());
            return EXIT_USAGE;
        }
    }
    code
}

/// Prints one output as a canonical JSON line or a readable line.
pub fn print_output(at: Timestamp, out: &Output, json: bool) {
    let line = match out {
        // Frames print verbatim, except that a hello's token never reaches a terminal or log.
        Output::Transmit { text } if json => Output::Transmit {
            text: redact_hello(text),
        }
        .to_json_at(at),
        _ if json => out.to_json_at(at),
        _ => readable(at, out),
    };
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    let _ = writeln!(lock, "{line}");
    let _ = lock.flush();
}

/// A one-line human rendering of an output.
pub fn readable(at: Timestamp, out: &Output) -> String {
    let t = format!("{:>9.3}s", at.as_millis() as f64 / 1000.0);
    match out {
        Output::OpenTransport { url, attempt } => format!("{t}  open    {url} (attempt {attempt})"),
        Output::Transmit { text } => format!("{t}  send    {}", redact_hello(text)),
        Output::CloseTransport { code, reason } => format!("{t}  close   {code} {reason}"),
        Output::Timeout(_) => String::new(),
        Output::Event(e) => match e {
            Event::Status {
                from, to, reason, ..
            } => format!("{t}  status  {from} -> {to} ({reason})"),
            Event::ReconnectScheduled { attempt, delay_ms } => {
                format!("{t}  retry   attempt {attempt} in {delay_ms} ms")
            }
            Event::Message { message, .. } => {
                let project = message
                    .project_id
                    .map(|p| format!(" project {p}"))
                    .unwrap_or_default();
                format!(
                    "{t}  recv    {}{project} {}",
                    message.msg_type,
                    message.data.get()
                )
            }
            other => {
                let json = Output::Event(other.clone()).to_json();
                format!("{t}  event   {json}")
            }
        },
        // An output a newer core adds: its canonical JSON.
        other => format!("{t}  output  {}", other.to_json()),
    }
}

/// Readable output never shows the token a `hello` carries.
fn redact_hello(text: &str) -> String {
    if !text.starts_with(r#"{"type":"hello""#) {
        return text.to_string();
    }
    match serde_json::from_str::<Value>(text) {
        // Re-encoded only to hide a token: any other frame prints byte for byte as sent.
        Ok(mut v) if v["data"].get("token").is_some() => {
            v["data"]["token"] = sockline_core::Secret::REDACTED.into();
            v.to_string()
        }
        _ => text.to_string(),
    }
}

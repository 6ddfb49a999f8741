//! Hub benchmarks, printed as figures (run: `cargo bench -p sockline-tokio --bench hub`): the
//! issue 10 baseline for the protocol v2 rework.
//! 1. hub fan-out: one publisher to 1,000 subscribers, the subscribers in a child process of this
//!    binary that only counts frames, so the figure is the hub's (the `driver` bench runs its
//!    readers in the hub's own process);
//! 2. the transport ceiling in the same run: a plain tokio-tungstenite server (no sockline)
//!    writing one pre-encoded frame, byte for byte one the hub relayed, to the same child's 1,000
//!    connections;
//! 3. the hub's memory per idle connection: a hub in a child process, 10,000 connections from
//!    this one (hello only, then hello + one project joined), the hub's VmRSS before and after.
//!
//! Under `cargo test` (no `--bench`) it runs a small smoke version of each instead.
//! `SOCKLINE_BENCH_ONLY=fanout` or `=memory` runs one part; `SOCKLINE_BENCH_MESSAGES` and
//! `SOCKLINE_BENCH_ROUNDS` override the fan-out's notes per subscriber and rounds,
//! `SOCKLINE_BENCH_CONNECTIONS` the idle connections of the memory part;
//! `SOCKLINE_BENCH_MARKS=1` prints the CLOCK_MONOTONIC time at the start and end of each timed
//! window to stderr (to cut a `perf record -k CLOCK_MONOTONIC` profile to it);
//! `SOCKLINE_BENCH_INPROC=1` runs the subscribers as tasks of the hub's process instead, as the
//! `driver` bench does (for comparison only).

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use sockline_core::RateLimitConfig;
use sockline_tokio::hub::{Hub, HubConfig};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{ChildStdout, Command};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const HELLO: &str = r#"{"type":"hello","data":{"protocol":2}}"#;
const SUBSCRIBE: &str = r#"{"type":"project_subscribe","data":{},"projectId":7}"#;
/// What the counting child looks for (a substring check, no JSON parse).
const NOTE: &str = r#""type":"note""#;
const SNAPSHOT: &str = r#""type":"project_snapshot""#;
/// Publishes in flight (sent, not yet acked by the hub) at most.
const WINDOW: usize = 32;
/// Connections being opened at once (the listeners' backlog is 1,024).
const CONNECTING: usize = 64;
/// Between the subscribers' readiness and the first publish: what the subscriptions set off (a
/// presence diff to every earlier member for each join) is written out before the clock starts.
const SETTLE: Duration = Duration::from_millis(500);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A 200-byte JSON payload.
fn payload() -> String {
    let text = "x".repeat(200 - r#"{"text":""}"#.len());
    format!(r#"{{"text":"{text}"}}"#)
}

fn note(i: u64, payload: &str) -> String {
    format!(r#"{{"type":"note","data":{payload},"projectId":7,"id":"p-{i}"}}"#)
}

/// Raises the soft RLIMIT_NOFILE to the hard limit; returns (soft, hard) as they are after.
fn raise_nofile() -> (usize, usize) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: both calls get a pointer to a live, initialised `rlimit`.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return (0, 0);
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    (lim.rlim_cur as usize, lim.rlim_max as usize)
}

/// `SOCKLINE_BENCH_INPROC=1`: the subscribers run as tasks of this process instead (as in the
/// `driver` bench), to compare; never the default.
fn in_process() -> bool {
    std::env::var("SOCKLINE_BENCH_INPROC").is_ok_and(|v| v == "1")
}

/// With `SOCKLINE_BENCH_MARKS` set: `mark <what> <CLOCK_MONOTONIC seconds>` on stderr.
fn mark(what: &str) {
    if std::env::var_os("SOCKLINE_BENCH_MARKS").is_none() {
        return;
    }
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a pointer to a live, initialised `timespec`.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    eprintln!("mark {what} {}.{:09}", ts.tv_sec, ts.tv_nsec);
}

fn vm_rss_kib(pid: u32) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("reading /proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no VmRSS in /proc/{pid}/status"))
}

// ---- child processes ------------------------------------------------------------------------

/// A child process of this binary, killed when dropped (also on every error path), or the
/// same work as a task of this process (`SOCKLINE_BENCH_INPROC=1`, for comparison only).
struct ChildProc {
    source: Source,
    what: &'static str,
}

// One per benchmark step: the size difference between the variants costs nothing.
#[allow(clippy::large_enum_variant)]
enum Source {
    Process(
        tokio::process::Child,
        tokio::io::Lines<BufReader<ChildStdout>>,
    ),
    Task(mpsc::UnboundedReceiver<String>, tokio::task::JoinHandle<()>),
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        if let Source::Task(_, task) = &self.source {
            task.abort();
        }
    }
}

impl ChildProc {
    fn spawn(what: &'static str, args: &str) -> Result<ChildProc, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let mut child = Command::new(exe)
            .env("SOCKLINE_BENCH_CHILD", args)
            // The child exits when its stdin closes: also when this process dies unannounced.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("spawning the {what}: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        Ok(ChildProc {
            source: Source::Process(child, BufReader::new(stdout).lines()),
            what,
        })
    }

    /// The subscribers: a child process, or with `in_process` tasks of this one.
    fn subscribers(url: &str, n: usize, m: u64, in_process: bool) -> Result<ChildProc, String> {
        if !in_process {
            return ChildProc::spawn("subscriber child", &format!("subs {url} {n} {m}"));
        }
        let (say, lines) = mpsc::unbounded_channel();
        let task = tokio::spawn(run_subscribers(url.to_string(), n, m, say));
        Ok(ChildProc {
            source: Source::Task(lines, task),
            what: "in-process subscribers",
        })
    }

    /// The child's next line; its `fail ...` lines and its silence are errors.
    async fn line(&mut self, within: Duration) -> Result<String, String> {
        let next = match &mut self.source {
            Source::Process(_, lines) => tokio::time::timeout(within, lines.next_line()).await,
            Source::Task(lines, _) => {
                tokio::time::timeout(within, async { Ok(lines.recv().await) }).await
            }
        };
        match next {
            Ok(Ok(Some(l))) => match l.strip_prefix("fail ") {
                Some(why) => Err(format!("{}: {why}", self.what)),
                None => Ok(l),
            },
            Ok(Ok(None)) => {
                let status = match &mut self.source {
                    Source::Process(child, _) => format!("{:?}", child.wait().await),
                    Source::Task(..) => "task ended".to_string(),
                };
                Err(format!("the {} exited ({status})", self.what))
            }
            Ok(Err(e)) => Err(format!("reading the {}: {e}", self.what)),
            Err(_) => Err(format!("the {} said nothing for {within:?}", self.what)),
        }
    }

    async fn expect(&mut self, want: &str, within: Duration) -> Result<(), String> {
        let l = self.line(within).await?;
        if l == want {
            Ok(())
        } else {
            Err(format!("the {} said {l:?}, not {want:?}", self.what))
        }
    }

    fn pid(&self) -> Result<u32, String> {
        match &self.source {
            Source::Process(child, _) => child.id(),
            Source::Task(..) => None,
        }
        .ok_or_else(|| format!("the {} is gone", self.what))
    }

    async fn stop(mut self) {
        match &mut self.source {
            Source::Process(child, _) => {
                let _ = child.kill().await;
            }
            Source::Task(_, task) => {
                task.abort();
                let _ = task.await;
            }
        }
    }
}

/// In a child: exit as soon as the parent closes our stdin (or dies).
fn exit_with_parent() {
    tokio::spawn(async {
        let mut sink = Vec::new();
        let _ = tokio::io::stdin().read_to_end(&mut sink).await;
        std::process::exit(0);
    });
}

enum SubEvent {
    Ready,
    Done(Option<String>),
    Ended { i: usize, got: u64, why: String },
}

/// Child mode: [`run_subscribers`], its lines on stdout.
async fn subscribers_child(url: String, n: usize, m: u64) {
    exit_with_parent();
    let (soft, _) = raise_nofile();
    if soft < n + 64 {
        println!("fail RLIMIT_NOFILE {soft} is too low for {n} connections");
        return std::future::pending().await;
    }
    let (say, mut lines) = mpsc::unbounded_channel();
    tokio::spawn(run_subscribers(url, n, m, say));
    while let Some(line) = lines.recv().await {
        println!("{line}");
    }
}

/// `n` subscribers to `url`; says `ready` once each has its project snapshot, then
/// `frame <text>` (the last counted frame of subscriber 0) and `done` once each has counted `m`
/// notes, or `fail <why>` if a connection ends first. Never returns: the connections stay open
/// until it is dropped (a subscriber closing early would make the hub send presence diffs to
/// the others while they still count).
async fn run_subscribers(url: String, n: usize, m: u64, say: mpsc::UnboundedSender<String>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let gate = Arc::new(Semaphore::new(CONNECTING));
    // Dropped with this future: every subscriber goes with it.
    let mut subscribers = tokio::task::JoinSet::new();
    for i in 0..n {
        let permit = gate.clone().acquire_owned().await.expect("never closed");
        subscribers.spawn(subscriber(i, url.clone(), m, permit, tx.clone()));
    }
    let outcome = async {
        let (mut ready, mut done, mut frame) = (0, 0, None);
        while done < n {
            match rx.recv().await {
                Some(SubEvent::Ready) => {
                    ready += 1;
                    if ready == n {
                        let _ = say.send("ready".to_string());
                    }
                }
                Some(SubEvent::Done(f)) => {
                    done += 1;
                    frame = frame.or(f);
                }
                Some(SubEvent::Ended { i, got, why }) => {
                    return Err(format!(
                        "subscriber {i} ended after {got} of {m} notes ({ready} of {n} were ready, {done} done): {why}"
                    ))
                }
                None => return Err("every subscriber task is gone".to_string()),
            }
        }
        Ok(frame.unwrap_or_default())
    }
    .await;
    match outcome {
        Ok(frame) => {
            let _ = say.send(format!("frame {frame}"));
            let _ = say.send("done".to_string());
        }
        Err(why) => {
            let _ = say.send(format!("fail {why}"));
        }
    }
    std::future::pending::<()>().await
}

async fn subscriber(
    i: usize,
    url: String,
    m: u64,
    permit: OwnedSemaphorePermit,
    tx: mpsc::UnboundedSender<SubEvent>,
) {
    let ended = |got, why| SubEvent::Ended { i, got, why };
    // As a light client would: the default 128 KiB read buffer for 1,000 connections is not
    // needed to keep up (each read takes what the socket holds, up to this).
    let cfg = WebSocketConfig::default().read_buffer_size(16 << 10);
    let mut ws = match tokio_tungstenite::connect_async_with_config(&url, Some(cfg), true).await {
        Ok((ws, _)) => ws,
        Err(e) => {
            let _ = tx.send(ended(0, format!("connect: {e}")));
            return;
        }
    };
    for text in [HELLO, SUBSCRIBE] {
        if let Err(e) = ws.send(Message::text(text)).await {
            let _ = tx.send(ended(0, format!("send: {e}")));
            return;
        }
    }
    let mut permit = Some(permit);
    let mut got = 0u64;
    loop {
        let why = match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                let t = t.as_str();
                if t.contains(NOTE) {
                    got += 1;
                    if got == m {
                        let _ = tx.send(SubEvent::Done((i == 0).then(|| t.to_string())));
                    }
                } else if permit.is_some() && t.contains(SNAPSHOT) {
                    permit = None;
                    let _ = tx.send(SubEvent::Ready);
                }
                continue;
            }
            Some(Ok(Message::Close(f))) => format!("closed by the server: {f:?}"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => format!("{e}"),
            None => "the connection ended".to_string(),
        };
        let _ = tx.send(ended(got, why));
        return;
    }
}

/// Child mode: a hub as `sockline hub` would run it (rate limit off); prints its URL, then only
/// serves.
async fn hub_child() {
    exit_with_parent();
    let (soft, _) = raise_nofile();
    let mut cfg = HubConfig::default();
    cfg.settings.rate_limit = RateLimitConfig::Off;
    let hub = match Hub::start(cfg).await {
        Ok(hub) => hub,
        Err(e) => {
            println!("fail Hub::start: {e}");
            return std::future::pending().await;
        }
    };
    println!("url {} nofile {soft}", hub.url());
    std::future::pending::<()>().await
}

// ---- 1. hub fan-out -------------------------------------------------------------------------

struct Round {
    rate: f64,
    secs: f64,
}

/// One publisher, `n` subscribers in a child process, `m` notes: deliveries/s and the last frame
/// subscriber 0 counted.
async fn hub_fanout(n: usize, m: u64, patience: Duration) -> Result<(Round, String), String> {
    let mut cfg = HubConfig::default();
    cfg.settings.rate_limit = RateLimitConfig::Off;
    // Far more than a subscriber can be behind by (m notes and n presence diffs): the queue is
    // not what is measured, and never a 4009 (which the child would report as a failure).
    cfg.outbound_queue = 1 << 16;
    let hub = Hub::start(cfg)
        .await
        .map_err(|e| format!("Hub::start: {e}"))?;
    let result = fanout_with(&hub.url(), n, m, patience).await;
    hub.shutdown().await;
    result
}

async fn fanout_with(
    url: &str,
    n: usize,
    m: u64,
    patience: Duration,
) -> Result<(Round, String), String> {
    // The publisher joins first (so the subscribers' joins, not its own, are what the settle
    // period lets drain), and reads everything it is sent: its acks pace it.
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .map_err(|e| format!("publisher connect: {e}"))?;
    let (mut sink, mut stream) = ws.split();
    for text in [HELLO, SUBSCRIBE] {
        sink.send(Message::text(text))
            .await
            .map_err(|e| format!("publisher send: {e}"))?;
    }
    loop {
        match stream.next().await {
            Some(Ok(Message::Text(t))) if t.as_str().contains(SNAPSHOT) => break,
            Some(Ok(_)) => {}
            other => return Err(format!("publisher before its snapshot: {other:?}")),
        }
    }
    let acks = Arc::new(Semaphore::new(WINDOW));
    let reader = tokio::spawn({
        let acks = acks.clone();
        async move {
            while let Some(msg) = stream.next().await {
                match msg {
                    Ok(Message::Text(t)) if t.as_str().contains(r#""type":"ack""#) => {
                        acks.add_permits(1)
                    }
                    Ok(Message::Close(f)) => return format!("publisher closed by the hub: {f:?}"),
                    Ok(_) => {}
                    Err(e) => return format!("publisher: {e}"),
                }
            }
            "the publisher's connection ended".to_string()
        }
    });
    let result = async {
        let mut child = ChildProc::subscribers(url, n, m, in_process())?;
        child.expect("ready", patience).await?;
        tokio::time::sleep(SETTLE).await;
        let payload = payload();
        mark("hub-start");
        let start = Instant::now();
        for i in 0..m {
            let permit = tokio::time::timeout(patience, acks.acquire())
                .await
                .map_err(|_| format!("no ack from the hub for {patience:?}"))?
                .map_err(|e| e.to_string())?;
            permit.forget();
            sink.send(Message::text(note(i, &payload)))
                .await
                .map_err(|e| format!("publish: {e}"))?;
        }
        let frame = child.line(patience).await?;
        child.expect("done", patience).await?;
        let secs = start.elapsed().as_secs_f64();
        mark("hub-end");
        child.stop().await;
        let frame = frame
            .strip_prefix("frame ")
            .ok_or_else(|| format!("the child said {frame:?}"))?
            .to_string();
        let rate = (n as u64 * m) as f64 / secs;
        Ok((Round { rate, secs }, frame))
    }
    .await;
    if reader.is_finished() {
        let why = reader.await.unwrap_or_else(|e| e.to_string());
        return Err(result.err().unwrap_or(why));
    }
    reader.abort();
    result
}

// ---- 2. the transport ceiling ---------------------------------------------------------------

/// A plain tokio-tungstenite server writing `frame` `m` times to each of the same child's `n`
/// connections: frames/s. With `flush_each`, every frame is flushed on its own (a write syscall
/// per frame, which is what the hub's writers mostly do: see docs/benchmarks.md), instead of
/// collecting in tungstenite's write buffer.
async fn ceiling(
    n: usize,
    m: u64,
    frame: &str,
    flush_each: bool,
    patience: Duration,
) -> Result<Round, String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("bind: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let (go, go_rx) = watch::channel(false);
    // Encoded once: every write hands tungstenite the same shared bytes.
    let frame = Utf8Bytes::from(frame.to_string());
    let server = tokio::spawn(async move {
        // Dropped with the server task: every connection task goes with it.
        let mut conns = tokio::task::JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            let go = go_rx.clone();
            conns.spawn(ceiling_conn(stream, m, frame.clone(), flush_each, go));
        }
    });
    let result = async {
        let url = format!("ws://{addr}/ws");
        let mut child = ChildProc::subscribers(&url, n, m, in_process())?;
        child.expect("ready", patience).await?;
        tokio::time::sleep(SETTLE).await;
        mark("ceiling-start");
        let start = Instant::now();
        go.send_replace(true);
        let _frame = child.line(patience).await?;
        child.expect("done", patience).await?;
        let secs = start.elapsed().as_secs_f64();
        mark("ceiling-end");
        child.stop().await;
        Ok(Round {
            rate: (n as u64 * m) as f64 / secs,
            secs,
        })
    }
    .await;
    server.abort();
    let _ = server.await;
    result
}

async fn ceiling_conn(
    stream: TcpStream,
    m: u64,
    frame: Utf8Bytes,
    flush_each: bool,
    mut go: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    // The hub's read buffer; writes as tungstenite does by default (frames collect in its
    // 128 KiB write buffer, written out when it fills and on flush).
    let cfg = WebSocketConfig::default().read_buffer_size(4096);
    let Ok(mut ws) = tokio_tungstenite::accept_async_with_config(stream, Some(cfg)).await else {
        return;
    };
    // Answers like a hub as far as the child looks: a welcome, then the snapshot it waits for.
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.as_str().contains(r#""type":"hello""#) => {
                let welcome = r#"{"type":"welcome","data":{"sessionId":"c"}}"#;
                if ws.send(Message::text(welcome)).await.is_err() {
                    return;
                }
            }
            Some(Ok(Message::Text(t))) if t.as_str().contains("project_subscribe") => {
                let snapshot = r#"{"type":"project_snapshot","data":{"version":0},"projectId":7}"#;
                if ws.send(Message::text(snapshot)).await.is_err() {
                    return;
                }
                break;
            }
            Some(Ok(_)) => {}
            _ => return,
        }
    }
    if go.wait_for(|g| *g).await.is_err() {
        return;
    }
    for _ in 0..m {
        let written = if flush_each {
            ws.send(Message::Text(frame.clone())).await
        } else {
            ws.feed(Message::Text(frame.clone())).await
        };
        if written.is_err() {
            return;
        }
    }
    if ws.flush().await.is_err() {
        return;
    }
    while let Some(Ok(_)) = ws.next().await {}
}

// ---- 3. memory per idle connection ----------------------------------------------------------

struct Memory {
    per_conn_kib: f64,
    before_kib: u64,
    after_kib: u64,
    setup_secs: f64,
}

/// A hub in a child process, `n` connections from this one that say hello (and, with `join`,
/// subscribe to a project of their own each): the hub's RSS growth per connection.
async fn memory(n: usize, join: bool, patience: Duration) -> Result<Memory, String> {
    let mut hub = ChildProc::spawn("hub child", "hub")?;
    let line = hub.line(patience).await?;
    let mut words = line.split(' ');
    let (Some("url"), Some(url), Some("nofile"), Some(nofile)) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Err(format!("the hub child said {line:?}"));
    };
    let nofile: usize = nofile.parse().unwrap_or(0);
    if nofile < n + 64 {
        return Err(format!(
            "the hub's RLIMIT_NOFILE is {nofile}, too low for {n} connections"
        ));
    }
    let pid = hub.pid()?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before_kib = vm_rss_kib(pid)?;

    // Each connection lives in a task: it reports `ready` once welcomed (and snapshotted),
    // answers a ping when asked (proof it is still open when the RSS is read), and closes when
    // the phase moves past that.
    let (phase, phase_rx) = watch::channel(0u8);
    let (tx, mut rx) = mpsc::unbounded_channel::<Result<(), String>>();
    let gate = Arc::new(Semaphore::new(CONNECTING));
    let start = Instant::now();
    let opener = tokio::spawn({
        let url = url.to_string();
        async move {
            let mut conns = tokio::task::JoinSet::new();
            for i in 0..n {
                let permit = gate.clone().acquire_owned().await.expect("never closed");
                let project = join.then_some(1_000 + i as u64);
                conns.spawn(idle_conn(
                    url.clone(),
                    project,
                    permit,
                    tx.clone(),
                    phase_rx.clone(),
                ));
            }
            // Held until this task is aborted: the connections' tasks go with it.
            std::future::pending::<()>().await
        }
    });
    let result = async {
        collect(&mut rx, n, patience, "connecting").await?;
        let setup_secs = start.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let after_kib = vm_rss_kib(pid)?;
        phase.send_replace(1);
        collect(&mut rx, n, patience, "ping after the reading").await?;
        Ok(Memory {
            per_conn_kib: after_kib.saturating_sub(before_kib) as f64 / n as f64,
            before_kib,
            after_kib,
            setup_secs,
        })
    }
    .await;
    opener.abort();
    let _ = opener.await;
    hub.stop().await;
    result
}

/// Waits for `n` connections' reports.
async fn collect(
    rx: &mut mpsc::UnboundedReceiver<Result<(), String>>,
    n: usize,
    patience: Duration,
    what: &str,
) -> Result<(), String> {
    for k in 0..n {
        match tokio::time::timeout(patience, rx.recv()).await {
            Ok(Some(Ok(()))) => {}
            Ok(Some(Err(why))) => {
                return Err(format!(
                    "{what}: a connection failed ({k} of {n} ok): {why}"
                ))
            }
            Ok(None) => return Err(format!("{what}: the connection tasks are gone")),
            Err(_) => return Err(format!("{what}: {k} of {n} after {patience:?}")),
        }
    }
    Ok(())
}

async fn idle_conn(
    url: String,
    project: Option<u64>,
    permit: OwnedSemaphorePermit,
    tx: mpsc::UnboundedSender<Result<(), String>>,
    mut phase: watch::Receiver<u8>,
) {
    let setup = async {
        let cfg = WebSocketConfig::default().read_buffer_size(4096);
        let (mut ws, _) = tokio_tungstenite::connect_async_with_config(&url, Some(cfg), true)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        send(&mut ws, HELLO).await?;
        until(&mut ws, r#""type":"welcome""#).await?;
        if let Some(p) = project {
            let subscribe =
                format!(r#"{{"type":"project_subscribe","data":{{}},"projectId":{p}}}"#);
            send(&mut ws, &subscribe).await?;
            until(&mut ws, SNAPSHOT).await?;
        }
        Ok::<Ws, String>(ws)
    };
    let mut ws = match setup.await {
        Ok(ws) => ws,
        Err(e) => {
            let _ = tx.send(Err(e));
            return;
        }
    };
    drop(permit);
    let _ = tx.send(Ok(()));
    if phase.wait_for(|p| *p >= 1).await.is_err() {
        return;
    }
    let alive = async {
        send(&mut ws, r#"{"type":"ping","data":{"t":1}}"#).await?;
        until(&mut ws, r#""type":"pong""#).await
    };
    let _ = tx.send(alive.await);
    let _ = phase.wait_for(|p| *p >= 2).await;
}

async fn send(ws: &mut Ws, text: &str) -> Result<(), String> {
    ws.send(Message::text(text))
        .await
        .map_err(|e| format!("send: {e}"))
}

/// Reads until a text frame containing `marker` (anything else is skipped).
async fn until(ws: &mut Ws, marker: &str) -> Result<(), String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.as_str().contains(marker) => return Ok(()),
            Some(Ok(Message::Close(f))) => return Err(format!("closed by the hub: {f:?}")),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(format!("waiting for {marker}: {e}")),
            None => return Err(format!("ended before {marker}")),
        }
    }
}

// ---- main -----------------------------------------------------------------------------------

/// `min-max (median m)` of the figures, with `digits` decimals.
fn spread(xs: &[f64], digits: usize) -> String {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => "none".to_string(),
        1 => format!("{:.digits$}", v[0]),
        k => {
            let median = if k % 2 == 1 {
                v[k / 2]
            } else {
                (v[k / 2 - 1] + v[k / 2]) / 2.0
            };
            format!(
                "{:.digits$}-{:.digits$} (median {median:.digits$})",
                v[0],
                v[k - 1]
            )
        }
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Ok(args) = std::env::var("SOCKLINE_BENCH_CHILD") {
        let mut it = args.split(' ');
        match it.next() {
            Some("subs") => {
                let url = it.next().expect("url").to_string();
                let n = it.next().and_then(|v| v.parse().ok()).expect("n");
                let m = it.next().and_then(|v| v.parse().ok()).expect("m");
                rt.block_on(subscribers_child(url, n, m));
            }
            Some("hub") => rt.block_on(hub_child()),
            other => panic!("unknown child mode {other:?}"),
        }
        return;
    }
    let full = std::env::args().any(|a| a == "--bench");
    // (subscribers, messages, rounds, idle connections, patience per step)
    let (subs, msgs, rounds, idle, patience) = if full {
        (1_000, 1_000u64, 5u64, 10_000usize, Duration::from_secs(180))
    } else {
        (20, 20, 1, 200, Duration::from_secs(30))
    };
    let knob = |name: &str, default| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (msgs, rounds) = (
        knob("SOCKLINE_BENCH_MESSAGES", msgs),
        knob("SOCKLINE_BENCH_ROUNDS", rounds),
    );
    let idle = knob("SOCKLINE_BENCH_CONNECTIONS", idle as u64) as usize;
    let only = std::env::var("SOCKLINE_BENCH_ONLY").unwrap_or_default();
    let (soft, hard) = raise_nofile();
    println!("RLIMIT_NOFILE raised to the hard limit in each process: soft {soft}, hard {hard}");
    let mut failed = false;
    rt.block_on(async {
        if only.is_empty() || only == "fanout" {
            let (mut hub_rates, mut ceil_rates, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
            let mut each_rates = Vec::new();
            let mut frame: Option<String> = None;
            for round in 1..=rounds {
                let hub = match hub_fanout(subs, msgs, patience).await {
                    Ok((r, f)) => {
                        println!(
                            "round {round}: hub fan-out, 1 publisher -> {subs} subscribers (another process) x {msgs} notes, {}-byte relayed frames: {:.0} deliveries/s ({:.2} s)",
                            f.len(), r.rate, r.secs
                        );
                        frame.get_or_insert(f);
                        hub_rates.push(r.rate);
                        Some(r.rate)
                    }
                    Err(e) => {
                        println!("round {round}: hub fan-out FAILED: {e}");
                        failed = true;
                        None
                    }
                };
                let f = frame.clone().unwrap_or_else(|| {
                    println!("(no frame from the hub: the ceiling writes a locally built one of the same shape)");
                    format!(r#"{{"type":"note","data":{},"id":"p-{}","projectId":7,"epoch":"0123456789abcdef","offset":{}}}"#, payload(), msgs - 1, msgs)
                });
                match ceiling(subs, msgs, &f, false, patience).await {
                    Ok(r) => {
                        let ratio = hub.map(|h| h / r.rate);
                        println!(
                            "round {round}: transport ceiling, tokio-tungstenite writing one pre-encoded {}-byte frame x {msgs} to the same child's {subs} connections: {:.0} frames/s ({:.2} s); hub / ceiling {}",
                            f.len(), r.rate, r.secs,
                            ratio.map_or("n/a".to_string(), |x| format!("{x:.3}"))
                        );
                        ceil_rates.push(r.rate);
                        ratios.extend(ratio);
                    }
                    Err(e) => {
                        println!("round {round}: transport ceiling FAILED: {e}");
                        failed = true;
                    }
                }
                match ceiling(subs, msgs, &f, true, patience).await {
                    Ok(r) => {
                        println!(
                            "round {round}: the same with a flush per frame (one write syscall per frame): {:.0} frames/s ({:.2} s)",
                            r.rate, r.secs
                        );
                        each_rates.push(r.rate);
                    }
                    Err(e) => {
                        println!("round {round}: flush per frame FAILED: {e}");
                        failed = true;
                    }
                }
            }
            println!(
                "summary over {rounds} rounds: hub fan-out {} deliveries/s; transport ceiling {} frames/s; hub / ceiling {}; ceiling with a flush per frame {} frames/s (issue 10 target: >= 10x this hub figure and >= 0.5x the ceiling)",
                spread(&hub_rates, 0), spread(&ceil_rates, 0), spread(&ratios, 3), spread(&each_rates, 0)
            );
        }
        if only.is_empty() || only == "memory" {
            for (join, what) in [(false, "hello only"), (true, "hello + project_subscribe (a project of its own each)")] {
                match memory(idle, join, patience).await {
                    Ok(m) => println!(
                        "hub RSS per idle connection, {idle} connections from another process, {what}: {:.2} KiB (hub VmRSS {} -> {} KiB; connected in {:.1} s) (target <= 16 KiB)",
                        m.per_conn_kib, m.before_kib, m.after_kib, m.setup_secs
                    ),
                    Err(e) => {
                        println!("hub RSS per idle connection, {what}: FAILED: {e}");
                        failed = true;
                    }
                }
            }
        }
    });
    drop(rt);
    if failed {
        std::process::exit(1);
    }
}

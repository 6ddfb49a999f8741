//! Cross-node benchmark, printed as figures (run: `cargo bench -p sockline-tokio --features cli
//! --bench cluster`; issue 10's "3 hubs on one Redis beside 1 hub alone"): one publisher,
//! subscribers spread round-robin over the hubs, for
//! 1. one hub alone with the in-memory broker (the embedded default),
//! 2. one hub on Redis (what the broker's round trip costs),
//! 3. three hubs on one Redis (what crossing nodes costs),
//!
//! each measured twice: deliveries/s with the publisher as fast as a window of 32 unacked notes
//! allows, and publish-to-delivery latency (p50, p99) at a fixed rate well under that.
//!
//! Everything is in this process but `redis-server`: the hubs, the publisher, the subscribers
//! (raw tokio-tungstenite clients) and the one clock the latency needs (a note carries its
//! publish time in microseconds, its receiver stamps the delivery on the same clock). So the
//! subscribers' reading competes with the hubs for the cores (2 on the project's machine, with
//! Redis beside them): the figures are conservative, a lower bound on what the hubs alone would
//! do. `redis-server` is a child process on a free loopback port with persistence off, killed
//! when its guard drops (every return, error and panic path) and, should this process die
//! without unwinding, by `PR_SET_PDEATHSIG`. Each setup gets fresh hubs and its own key prefix.
//!
//! Columns: deliveries/s of the throughput part (first publish to last delivery) and its
//! length; the same deliveries per CPU second this process spent meanwhile (hubs, publisher and
//! subscribers together: steadier than deliveries/s when other work takes cores); p50/p99/max of every delivery's latency; `first`, the p50/p99 over notes of each
//! note's earliest delivery (hub and broker without the fan-out queued behind it); `remote`,
//! the deliveries to subscribers on hubs other than the publisher's. After the table, where the
//! CPU went in each part (`/proc`: this process, `redis-server`, everything else on the machine,
//! in cores busy on average), since on a shared machine other work moves the figures.
//!
//! Honesty checks: every subscriber must get every note exactly once (counted per subscriber
//! and note id; a repeat, a missing note after 30 s of silence, a subscriber connection that
//! ends, or an `error` to the publisher fails the run), and every note must be acked once.
//!
//! Under `cargo test` (no `--bench`) it runs a small smoke version instead (6 subscribers).
//! `SOCKLINE_BENCH_SUBSCRIBERS` (in all), `SOCKLINE_BENCH_MESSAGES` (notes of the throughput
//! part), `SOCKLINE_BENCH_RATE` (the latency part's notes per second) and
//! `SOCKLINE_BENCH_SECONDS` (the latency part's length) override the defaults.

#[cfg(target_os = "linux")]
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use sockline_core::RateLimitConfig;
use sockline_tokio::hub::{Hub, HubConfig, HubHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

const HELLO: &str = r#"{"type":"hello","data":{"protocol":2}}"#;
const SUBSCRIBE: &str = r#"{"type":"project_subscribe","data":{},"projectId":7}"#;
const NOTE: &str = r#""type":"note""#;
const SNAPSHOT: &str = r#""type":"project_snapshot""#;
/// Publishes in flight (sent, not yet acked) at most, in the throughput part.
const WINDOW: usize = 32;
/// Silence after which a part fails.
const PATIENCE: Duration = Duration::from_secs(30);
/// Between the last join and the first publish: the joins' presence diffs are written out.
const SETTLE: Duration = Duration::from_millis(500);

/// Microseconds since `epoch`: the one clock publisher and subscribers share.
fn micros(epoch: Instant) -> u64 {
    epoch.elapsed().as_micros() as u64
}

// ---- redis-server -------------------------------------------------------------------------

/// A `redis-server` child on a free loopback port, killed when dropped.
struct Redis {
    child: std::process::Child,
    url: String,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_redis(port: u16) -> Result<std::process::Child, String> {
    let mut cmd = std::process::Command::new("redis-server");
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: between fork and exec the closure only makes the async-signal-safe `prctl`.
    // Called from the main thread (inside `block_on`), which lives until the process ends, so
    // the signal comes when this process dies, also by SIGKILL or an abort that skips `Drop`.
    #[cfg(target_os = "linux")]
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd.spawn()
        .map_err(|e| format!("starting redis-server (is it installed?): {e}"))
}

async fn start_redis() -> Result<Redis, String> {
    for _ in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("a free port: {e}"))?
            .port();
        // The guard first: a redis that never answers is killed too.
        let mut redis = Redis {
            child: spawn_redis(port)?,
            url: format!("redis://127.0.0.1:{port}"),
        };
        for _ in 0..100 {
            if ping(port).await {
                return Ok(redis);
            }
            if let Ok(Some(_)) = redis.child.try_wait() {
                break; // exited (the port was taken meanwhile): another port
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Err("redis-server did not answer PING on any of 5 ports".into())
}

async fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    let mut buf = [0u8; 16];
    s.write_all(b"PING\r\n").await.is_ok()
        && matches!(s.read(&mut buf).await, Ok(n) if buf[..n].starts_with(b"+PONG"))
}

// ---- where the CPU went ------------------------------------------------------------------

/// CPU ticks (USER_HZ) so far: the machine's busy time (all cores), this process's, redis's.
#[derive(Clone, Copy, Default)]
struct Cpu {
    machine: u64,
    this: u64,
    redis: u64,
}

/// utime + stime of a process, from `/proc/<pid>/stat` (0 if unreadable).
fn proc_ticks(pid: &str) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // Fields after the command name (which may hold spaces) in parentheses; utime and stime are
    // the 14th and 15th fields of the line, the 12th and 13th after it.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let f: Vec<u64> = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    f.iter().sum()
}

fn cpu_now(redis_pid: u32) -> Cpu {
    let machine = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            let line = s.lines().next()?.strip_prefix("cpu ")?.to_string();
            let v: Vec<u64> = line
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            // user nice system idle iowait irq softirq steal: busy is all but idle and iowait.
            Some(v.iter().take(8).sum::<u64>() - v.get(3)? - v.get(4)?)
        })
        .unwrap_or(0);
    Cpu {
        machine,
        this: proc_ticks("self"),
        redis: proc_ticks(&redis_pid.to_string()),
    }
}

/// CPU seconds this process used between the samples.
fn this_cpu_secs(a: Cpu, b: Cpu) -> f64 {
    (b.this - a.this) as f64 / 100.0
}

/// `this X, redis Y, other Z` as cores busy on average over `secs`.
fn cpu_share(a: Cpu, b: Cpu, secs: f64) -> String {
    if secs < 0.5 {
        return "too short to tell (10 ms ticks)".to_string();
    }
    let hz = 100.0; // USER_HZ on Linux
    let cores = |t: u64| t as f64 / hz / secs;
    let (this, redis) = (b.this - a.this, b.redis - a.redis);
    let other = (b.machine - a.machine).saturating_sub(this + redis);
    format!(
        "this process {:.2}, redis-server {:.2}, everything else {:.2} cores",
        cores(this),
        cores(redis),
        cores(other)
    )
}

// ---- hubs and clients ---------------------------------------------------------------------

async fn start_hubs(n: usize, redis: Option<(&str, &str)>) -> Result<Vec<HubHandle>, String> {
    let mut hubs = Vec::new();
    for _ in 0..n {
        let mut cfg = HubConfig {
            agent: None,
            // Far more than a subscriber can be behind by: never a 4009, the queue is not what
            // is measured.
            outbound_queue: 1 << 16,
            redis: redis.map(|(url, _)| url.to_string()),
            redis_prefix: redis.map_or("sockline".into(), |(_, p)| p.to_string()),
            ..HubConfig::default()
        };
        cfg.settings.rate_limit = RateLimitConfig::Off;
        cfg.settings.limits.user_messages_per_sec = 0;
        match Hub::start(cfg).await {
            Ok(h) => hubs.push(h),
            Err(e) => {
                for h in hubs {
                    h.shutdown().await;
                }
                return Err(format!("Hub::start: {e}"));
            }
        }
    }
    Ok(hubs)
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// A raw protocol client, welcomed and joined to project 7 (its snapshot read).
async fn joined(url: &str) -> Result<Ws, String> {
    // TCP_NODELAY, as sockline's own transport sets it: no write waits for Nagle.
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true)
        .await
        .map_err(|e| format!("connect {url}: {e}"))?;
    for text in [HELLO, SUBSCRIBE] {
        ws.send(Message::text(text))
            .await
            .map_err(|e| format!("send to {url}: {e}"))?;
    }
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) if t.as_str().contains(SNAPSHOT) => return Ok(ws),
            Ok(Some(Ok(Message::Text(t)))) if t.as_str().contains(r#""type":"error""#) => {
                return Err(format!("joining at {url}: {t}"))
            }
            Ok(Some(Ok(_))) => {}
            other => return Err(format!("joining at {url}: {other:?}")),
        }
    }
}

/// The unsigned number after `key` (e.g. `"t":`), without a JSON parse.
fn number_after(frame: &str, key: &str) -> Option<u64> {
    let rest = &frame[frame.find(key)? + key.len()..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

fn note(k: u64, epoch: Instant) -> String {
    format!(
        r#"{{"type":"note","data":{{"t":{}}},"projectId":7,"id":"n{k}"}}"#,
        micros(epoch)
    )
}

enum Event {
    /// Subscriber `sub` got note `k`, published at `sent`, at `at` (µs on the one clock).
    Note {
        sub: usize,
        k: u64,
        sent: u64,
        at: u64,
    },
    Ended {
        sub: usize,
        why: String,
    },
}

/// Reads one subscriber's notes until its connection ends (or the task is aborted).
async fn read_notes(sub: usize, mut ws: Ws, epoch: Instant, tx: mpsc::UnboundedSender<Event>) {
    let why = loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                let at = micros(epoch);
                let t = t.as_str();
                if !t.contains(NOTE) {
                    continue; // presence diffs, pings
                }
                match (number_after(t, r#""t":"#), number_after(t, r#""id":"n"#)) {
                    (Some(sent), Some(k)) => {
                        let _ = tx.send(Event::Note { sub, k, sent, at });
                    }
                    _ => break format!("a note without a time or id: {t}"),
                }
            }
            Some(Ok(Message::Close(f))) => break format!("closed by the hub: {f:?}"),
            Some(Ok(_)) => {}
            Some(Err(e)) => break e.to_string(),
            None => break "the connection ended".to_string(),
        }
    };
    let _ = tx.send(Event::Ended { sub, why });
}

/// What each subscriber got of each note: every count must end at exactly 1.
struct Tally {
    seen: Vec<Vec<u8>>,
    got: u64,
}

impl Tally {
    /// Counts events until every subscriber has every note in `notes` once; returns the latest
    /// delivery time and, per delivery, (subscriber, note, latency in µs).
    async fn collect(
        &mut self,
        rx: &mut mpsc::UnboundedReceiver<Event>,
        notes: std::ops::Range<u64>,
        what: &str,
    ) -> Result<(u64, Vec<(usize, u64, u64)>), String> {
        let subs = self.seen.len();
        let want = subs as u64 * (notes.end - notes.start);
        let mut samples = Vec::with_capacity(want as usize);
        let mut last = 0;
        self.got = 0;
        while self.got < want {
            let ev = match tokio::time::timeout(PATIENCE, rx.recv()).await {
                Ok(Some(ev)) => ev,
                Ok(None) => return Err(format!("{what}: every subscriber task is gone")),
                Err(_) => {
                    let behind = (0..subs)
                        .filter(|&s| notes.clone().any(|k| self.seen[s][k as usize] == 0))
                        .count();
                    return Err(format!(
                        "{what}: {} of {want} deliveries, {behind} of {subs} subscribers missing notes after {PATIENCE:?} of silence",
                        self.got
                    ));
                }
            };
            let (sub, k, sent, at) = self.check(ev)?;
            if !notes.contains(&k) {
                return Err(format!(
                    "{what}: subscriber {sub} got note n{k} out of its part"
                ));
            }
            self.got += 1;
            last = last.max(at);
            samples.push((sub, k, at.saturating_sub(sent)));
        }
        Ok((last, samples))
    }

    fn check(&mut self, ev: Event) -> Result<(usize, u64, u64, u64), String> {
        match ev {
            Event::Note { sub, k, sent, at } => {
                let Some(count) = self.seen[sub].get_mut(k as usize) else {
                    return Err(format!("subscriber {sub} got note n{k}, never published"));
                };
                *count += 1;
                if *count > 1 {
                    return Err(format!("subscriber {sub} got note n{k} {count} times"));
                }
                Ok((sub, k, sent, at))
            }
            Event::Ended { sub, why } => Err(format!("subscriber {sub} ended: {why}")),
        }
    }
}

/// The publisher's reading side: counts acks (each frees a place in the window); an `error`,
/// a close or the end of the connection closes the window and is kept as the reason.
async fn read_acks(
    mut stream: futures_util::stream::SplitStream<Ws>,
    window: Arc<Semaphore>,
    acks: Arc<Mutex<(u64, Option<String>)>>,
) {
    let why = loop {
        match stream.next().await {
            Some(Ok(Message::Text(t))) => {
                let t = t.as_str();
                if t.contains(r#""type":"ack""#) {
                    acks.lock().unwrap().0 += 1;
                    window.add_permits(1);
                } else if t.contains(r#""type":"error""#) {
                    break format!("the hub told the publisher {t}");
                }
            }
            Some(Ok(Message::Close(f))) => break format!("publisher closed by the hub: {f:?}"),
            Some(Ok(_)) => {}
            Some(Err(e)) => break format!("publisher: {e}"),
            None => break "the publisher's connection ended".to_string(),
        }
    };
    acks.lock().unwrap().1 = Some(why);
    window.close();
}

struct Run {
    deliveries: u64,
    secs: f64,
    /// Latencies (µs) of every delivery of the latency part, sorted; of those to subscribers
    /// on hubs other than the publisher's; and per note, of its first delivery (the way through
    /// hub and broker without the fan-out behind it).
    all: Vec<u64>,
    remote: Vec<u64>,
    first: Vec<u64>,
    /// Deliveries of the throughput part per CPU second of this process (hubs and clients).
    per_cpu_sec: Option<f64>,
    /// Where the CPU went in each part.
    cpu_throughput: String,
    cpu_latency: String,
}

/// Nearest-rank percentile of sorted figures.
fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64
}

/// One setup: `subs` subscribers spread round-robin over `hubs`, the publisher on the first hub.
async fn run(
    hubs: &[HubHandle],
    subs: usize,
    messages: u64,
    rate: u64,
    secs: f64,
    redis_pid: u32,
) -> Result<Run, String> {
    let epoch = Instant::now();
    let urls: Vec<String> = hubs.iter().map(|h| h.url()).collect();
    // The publisher joins first: its own join's presence diff is not in the timed window.
    let (mut sink, stream) = joined(&urls[0]).await?.split();
    let window = Arc::new(Semaphore::new(WINDOW));
    let acks = Arc::new(Mutex::new((0u64, None::<String>)));
    // Dropped with this function: the reader tasks go with it (also on every error path).
    let mut tasks = JoinSet::new();
    tasks.spawn(read_acks(stream, window.clone(), acks.clone()));
    let (tx, mut rx) = mpsc::unbounded_channel();
    for sub in 0..subs {
        let ws = joined(&urls[sub % urls.len()]).await?;
        tasks.spawn(read_notes(sub, ws, epoch, tx.clone()));
    }
    drop(tx);
    tokio::time::sleep(SETTLE).await;
    let lat_notes = ((rate as f64 * secs) as u64).max(10);
    let total = messages + lat_notes;
    let mut tally = Tally {
        seen: vec![vec![0u8; total as usize]; subs],
        got: 0,
    };
    let why_closed = |acks: &Mutex<(u64, Option<String>)>| {
        acks.lock()
            .unwrap()
            .1
            .clone()
            .unwrap_or_else(|| "the ack window closed".into())
    };

    // Throughput: as fast as the ack window allows; the clock runs from the first publish to
    // the last delivery.
    let start = micros(epoch);
    let cpu0 = cpu_now(redis_pid);
    let publish = async {
        for k in 0..messages {
            match tokio::time::timeout(PATIENCE, window.acquire()).await {
                Ok(Ok(p)) => p.forget(),
                Ok(Err(_)) => return Err(why_closed(&acks)),
                Err(_) => return Err(format!("no ack for {PATIENCE:?}")),
            }
            sink.send(Message::text(note(k, epoch)))
                .await
                .map_err(|e| format!("publish: {e}"))?;
        }
        Ok::<_, String>(())
    };
    let ((), (last, _)) = tokio::try_join!(
        async { publish.await.map_err(|e| format!("throughput: {e}")) },
        tally.collect(&mut rx, 0..messages, "throughput")
    )?;
    let deliveries = tally.got;
    let thr_secs = (last - start) as f64 / 1e6;
    let cpu1 = cpu_now(redis_pid);
    // The ticks are 10 ms: under 0.2 s of CPU (the smoke run) the ratio says nothing.
    let cpu_secs = this_cpu_secs(cpu0, cpu1);
    let per_cpu_sec = (cpu_secs >= 0.2).then(|| deliveries as f64 / cpu_secs);
    let cpu_throughput = cpu_share(cpu0, cpu1, micros(epoch).saturating_sub(start) as f64 / 1e6);

    // Latency: a fixed rate; every delivery's publish-to-delivery time on the one clock.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (cpu0, lat_start) = (cpu_now(redis_pid), Instant::now());
    let publish = async {
        let t0 = tokio::time::Instant::now();
        for i in 0..lat_notes {
            tokio::time::sleep_until(t0 + Duration::from_micros(i * 1_000_000 / rate)).await;
            if window.is_closed() {
                return Err(why_closed(&acks));
            }
            // The time is taken as the frame is built, right before it is written.
            sink.send(Message::text(note(messages + i, epoch)))
                .await
                .map_err(|e| format!("publish: {e}"))?;
        }
        Ok::<_, String>(())
    };
    let ((), (_, samples)) = tokio::try_join!(
        async { publish.await.map_err(|e| format!("latency: {e}")) },
        tally.collect(&mut rx, messages..total, "latency")
    )?;
    let cpu_latency = cpu_share(cpu0, cpu_now(redis_pid), lat_start.elapsed().as_secs_f64());

    // Every note acked once, and nothing more arrives (a late repeat would show here).
    let deadline = Instant::now() + PATIENCE;
    while acks.lock().unwrap().0 < total && Instant::now() < deadline && !window.is_closed() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let acked = acks.lock().unwrap().0;
    if acked != total {
        return Err(format!(
            "{acked} acks for {total} notes ({})",
            acks.lock().unwrap().1.clone().unwrap_or_default()
        ));
    }
    if let Ok(Some(ev)) = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await {
        tally.check(ev)?;
        return Err("a delivery after every subscriber had every note".into());
    }
    let _ = sink.close().await;

    let mut all: Vec<u64> = samples.iter().map(|&(_, _, l)| l).collect();
    let mut remote: Vec<u64> = samples
        .iter()
        .filter(|&&(sub, _, _)| sub % hubs.len() != 0)
        .map(|&(_, _, l)| l)
        .collect();
    let mut first = vec![u64::MAX; lat_notes as usize];
    for &(_, k, l) in &samples {
        let f = &mut first[(k - messages) as usize];
        *f = (*f).min(l);
    }
    all.sort_unstable();
    remote.sort_unstable();
    first.sort_unstable();
    Ok(Run {
        deliveries,
        secs: thr_secs,
        all,
        remote,
        first,
        per_cpu_sec,
        cpu_throughput,
        cpu_latency,
    })
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let full = std::env::args().any(|a| a == "--bench");
    let knob = |name: &str, default: f64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (subs, messages, rate, secs) = if full {
        (300.0, 5_000.0, 200.0, 3.0)
    } else {
        (6.0, 50.0, 100.0, 0.3)
    };
    let subs = knob("SOCKLINE_BENCH_SUBSCRIBERS", subs) as usize;
    let messages = knob("SOCKLINE_BENCH_MESSAGES", messages) as u64;
    let rate = knob("SOCKLINE_BENCH_RATE", rate).max(1.0) as u64;
    let secs = knob("SOCKLINE_BENCH_SECONDS", secs);
    let mut cpu_lines = Vec::new();
    let result = rt.block_on(async {
        // Dropped (killed) at the end of this block, whichever way it ends.
        let redis = start_redis().await?;
        println!(
            "cross-node ({}): 1 publisher, {subs} subscribers in this process (round-robin over the hubs; the publisher on the first), project 7",
            if full { "full" } else { "smoke" }
        );
        println!(
            "throughput: {messages} notes, at most {WINDOW} unacked; latency: {rate} notes/s for {secs} s, publish to delivery"
        );
        println!(
            "{:<26} {:>12} {:>6} {:>11} {:>7} {:>7} {:>7} {:>17} {:>17}",
            "setup", "deliveries/s", "secs", "per cpu-sec", "p50 ms", "p99 ms", "max ms", "first p50/p99 ms", "remote p50/p99 ms"
        );
        for (i, (name, nodes, on_redis)) in [
            ("1 hub, in-memory broker", 1, false),
            ("1 hub on Redis", 1, true),
            ("3 hubs on one Redis", 3, true),
        ]
        .into_iter()
        .enumerate()
        {
            let prefix = format!("bench{i}");
            let hubs = start_hubs(nodes, on_redis.then_some((redis.url.as_str(), &prefix))).await?;
            let r = run(&hubs, subs, messages, rate, secs, redis.child.id()).await;
            for h in hubs {
                h.shutdown().await;
            }
            let r = r.map_err(|e| format!("{name}: {e}"))?;
            let remote = if nodes > 1 {
                format!(
                    "{:.2}/{:.2}",
                    pct(&r.remote, 50.0) / 1e3,
                    pct(&r.remote, 99.0) / 1e3
                )
            } else {
                "-".to_string()
            };
            let first = format!(
                "{:.2}/{:.2}",
                pct(&r.first, 50.0) / 1e3,
                pct(&r.first, 99.0) / 1e3
            );
            let per_cpu = r.per_cpu_sec.map_or("-".to_string(), |d| format!("{d:.0}"));
            println!(
                "{name:<26} {:>12.0} {:>6.2} {per_cpu:>11} {:>7.2} {:>7.2} {:>7.2} {first:>17} {remote:>17}",
                r.deliveries as f64 / r.secs,
                r.secs,
                pct(&r.all, 50.0) / 1e3,
                pct(&r.all, 99.0) / 1e3,
                pct(&r.all, 100.0) / 1e3,
            );
            cpu_lines.push(format!(
                "{name}: cpu in the throughput part: {}; in the latency part: {}",
                r.cpu_throughput, r.cpu_latency
            ));
        }
        Ok::<_, String>(())
    });
    drop(rt);
    for l in cpu_lines {
        println!("{l}");
    }
    if let Err(e) = result {
        eprintln!("cluster bench failed: {e}");
        std::process::exit(1);
    }
}

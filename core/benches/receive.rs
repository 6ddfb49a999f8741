//! Receive path: 200-byte `project_updated` envelopes through a `Session` with 10 subscriptions,
//! beside a bare `serde_json::from_slice` of the same bytes into a plain struct, in the same run.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde::Deserialize;
use sockline_core::{Config, Output, Session, Timestamp};

/// The message the bare baseline parses into.
#[derive(Deserialize)]
#[allow(dead_code)]
struct Plain {
    #[serde(rename = "type")]
    msg_type: String,
    data: PlainData,
    timestamp: String,
    #[serde(rename = "projectId")]
    project_id: u64,
    epoch: String,
    offset: u64,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct PlainData {
    version: u64,
    title: String,
    status: String,
    owner: String,
}

/// A ~200-byte `project_updated` envelope at offset `seq` of project 42's log.
fn frame(seq: u64) -> String {
    let f = format!(
        r#"{{"type":"project_updated","data":{{"version":{seq},"title":"Quarterly regulatory filing","status":"in_review","owner":"user-4821"}},"timestamp":"2026-11-28T17:43:07.123Z","projectId":42,"epoch":"e1","offset":{seq}}}"#
    );
    debug_assert!((180..=230).contains(&f.len()), "{}", f.len());
    f
}

/// An open session with 10 subscriptions, 3 of which match the benchmark's messages.
fn open_session() -> Session {
    let mut s = Session::new(Config::new("ws://127.0.0.1:1/ws"), 1, Timestamp::ZERO).unwrap();
    let t = Timestamp::ZERO;
    for (p, project) in [
        ("chat", None),
        ("user_typing_*", None),
        ("agent_stream_*", None),
        ("presence_state", Some(42)),
        ("presence_diff", Some(42)),
        ("project_snapshot", Some(42)),
        ("project_updated", Some(7)),
        ("project_updated", Some(42)),
        ("project_*", None),
        ("*", None),
    ] {
        s.subscribe(t, p, project).unwrap();
    }
    s.connect(t).unwrap();
    s.transport_opened(t);
    s.frame(t, r#"{"type":"welcome","data":{"sessionId":"bench"}}"#);
    // Joined, so every frame takes a project message's position check, as in real use.
    s.join_project(t, 42).unwrap();
    s.frame(
        t,
        r#"{"type":"project_joined","data":{"epoch":"e1","offset":0},"projectId":42}"#,
    );
    while !matches!(s.poll_output(), Output::Timeout(_)) {}
    s
}

/// Feeds `n` fresh frames (built untimed, in chunks) through the session; returns the timed part.
fn session_path(s: &mut Session, next_seq: &mut u64, n: u64) -> Duration {
    let mut spent = Duration::ZERO;
    let mut left = n;
    while left > 0 {
        let chunk = left.min(10_000);
        let frames: Vec<String> = (0..chunk).map(|i| frame(*next_seq + i)).collect();
        *next_seq += chunk;
        let start = Instant::now();
        for f in &frames {
            s.frame(Timestamp::ZERO, black_box(f));
            loop {
                match s.poll_output() {
                    Output::Timeout(_) => break,
                    o => {
                        black_box(o);
                    }
                }
            }
        }
        spent += start.elapsed();
        left -= chunk;
    }
    spent
}

fn bare_path(bytes: &[Vec<u8>], n: u64) -> Duration {
    let start = Instant::now();
    for i in 0..n {
        let b = &bytes[(i % bytes.len() as u64) as usize];
        black_box(serde_json::from_slice::<Plain>(black_box(b)).unwrap());
    }
    start.elapsed()
}

fn receive(c: &mut Criterion) {
    let samples: Vec<Vec<u8>> = (1..=1024).map(|i| frame(i).into_bytes()).collect();
    let mut g = c.benchmark_group("receive_200B_project_updated");
    g.throughput(Throughput::Elements(1));
    g.bench_function("bare_serde_json_from_slice", |b| {
        b.iter_custom(|n| bare_path(&samples, n))
    });
    let mut s = open_session();
    let mut seq = 1;
    g.bench_function("session_10_subscriptions", |b| {
        b.iter_custom(|n| session_path(&mut s, &mut seq, n))
    });
    g.finish();

    // The ratio the target is stated in, measured back to back (skipped under `cargo test`).
    if std::env::args().any(|a| a == "--bench") {
        let n = 300_000;
        let bare = bare_path(&samples, n);
        let mut s = open_session();
        let mut seq = 1;
        let sess = session_path(&mut s, &mut seq, n);
        let rate = |d: Duration| n as f64 / d.as_secs_f64();
        println!(
            "receive: bare parse {:.0} msg/s, session {:.0} msg/s, ratio {:.2} (target >= 0.5)",
            rate(bare),
            rate(sess),
            rate(sess) / rate(bare)
        );
        assert_eq!(s.stats().messages_delivered, n);
    }
}

criterion_group!(benches, receive);
criterion_main!(benches);

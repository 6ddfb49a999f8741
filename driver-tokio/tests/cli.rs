//! The `sockline` binary: exit codes, canonical JSON lines, replay, and the demo.

use std::io::Write;
use std::process::{Command, Stdio};

use sockline_tokio::hub::{Hub, HubConfig};

fn sockline() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sockline"))
}

#[test]
fn bad_arguments_and_bad_urls_exit_2_with_a_message() {
    let out = sockline()
        .args(["connect", "http://example.com/"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("url") && err.contains("ws://"), "{err}");
    let out = sockline()
        .args(["connect", "ws://h/", "--set", "reconnect.factor=0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("reconnect.factor"));
    let out = sockline().args(["frobnicate"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = sockline()
        .args(["replay", "/nonexistent.json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn giving_up_exits_3() {
    // A port nobody listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = sockline()
        .args(["connect", &format!("ws://127.0.0.1:{port}/ws"), "--json"])
        .args([
            "--set",
            "reconnect.max_attempts=2",
            "--set",
            "reconnect.initial_ms=20",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take(); // kept open: only the give-up may end the run
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    assert_eq!(out.status.code(), Some(3));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()),
        "{text}"
    );
    assert!(text.contains(r#""to":"failed""#), "{text}");
}

#[test]
fn connect_with_several_urls_moves_on_to_the_next_hub() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let hub = rt.block_on(Hub::start(HubConfig::default())).unwrap();
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = format!("ws://127.0.0.1:{dead}/ws");
    let mut child = sockline()
        .args(["connect", &dead, &hub.url(), "--json", "--seed", "1"])
        .args(["--set", "reconnect.initial_ms=20"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take();
    std::thread::sleep(std::time::Duration::from_millis(800));
    drop(stdin); // EOF: a clean close
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let urls: Vec<&str> = lines
        .iter()
        .filter(|l| l["kind"] == "open_transport")
        .map(|l| l["url"].as_str().unwrap())
        .collect();
    assert_eq!(urls, [dead.as_str(), hub.url().as_str()], "{stdout}");
    assert!(stdout.contains(r#""to":"open""#), "{stdout}");
    rt.block_on(hub.shutdown());
}

#[test]
fn connect_prints_json_lines_sends_stdin_and_closes_cleanly_on_eof() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let hub = rt.block_on(Hub::start(HubConfig::default())).unwrap();
    let mut child = sockline()
        .args([
            "connect",
            &hub.url(),
            "--json",
            "--user",
            "cli",
            "--project",
            "3",
            "--seed",
            "1",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut stdin = child.stdin.take().unwrap();
        writeln!(
            stdin,
            r#"{{"type":"chat","data":{{"text":"hi"}},"projectId":3,"delivery":"at_least_once"}}"#
        )
        .unwrap();
        writeln!(stdin, "this is not json").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(800));
    } // EOF
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = lines.iter().map(|l| l["kind"].as_str().unwrap()).collect();
    assert!(lines.iter().all(|l| l["at"].is_u64()));
    assert!(
        kinds.contains(&"open_transport") && kinds.contains(&"acked"),
        "{kinds:?}"
    );
    let chat = lines
        .iter()
        .find(|l| {
            l["kind"] == "transmit" && l["text"].as_str().unwrap().contains(r#""type":"chat""#)
        })
        .expect("the stdin message was transmitted");
    assert!(chat["text"].as_str().unwrap().contains(r#""projectId":3"#));
    assert!(
        lines
            .iter()
            .any(|l| l["kind"] == "status" && l["to"] == "closed"),
        "{stdout}"
    );
    assert!(stderr.contains("skipped malformed line"), "{stderr}");
    rt.block_on(hub.shutdown());
}

#[test]
fn replay_prints_the_golden_output() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../core/tests/traces/");
    let out = sockline()
        .args(["replay", &format!("{root}stream_resume.json")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let want = std::fs::read_to_string(format!("{root}stream_resume.out")).unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), want);
}

#[test]
fn the_demo_tells_its_story_and_exits_0() {
    let out = sockline().arg("demo").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "reconnect attempt",
        "chat received: \"sent during the outage\"",
        "agent ✔",
        "session resumed",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    assert!(
        !text.contains('\x1b'),
        "no colour when stdout is not a terminal"
    );
}

/// A `sockline connect` child whose stdout lines arrive on a channel.
struct Connected {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Connected {
    fn spawn(args: &[&str]) -> Connected {
        let mut child = sockline()
            .arg("connect")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(line);
            }
        });
        Connected {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (10 s at most) for a line containing `needle`.
    fn wait_for(&mut self, needle: &str) {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !self.seen.iter().any(|l| l.contains(needle)) {
            let left = until.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => self.seen.push(l),
                Err(_) => panic!("no line with {needle:?} in:\n{}", self.seen.join("\n")),
            }
        }
    }

    /// Closes stdin (a clean close) and returns every line printed.
    fn finish(mut self) -> Vec<String> {
        drop(self.child.stdin.take());
        let status = self.child.wait().unwrap();
        assert_eq!(status.code(), Some(0));
        self.seen.extend(self.lines.iter());
        self.seen
    }
}

#[test]
fn connect_prints_every_message_by_default_and_subscribe_narrows_it() {
    use sockline_core::{Config, Event, SendRequest, Trace};
    let rt = tokio::runtime::Runtime::new().unwrap();
    let hub = rt.block_on(Hub::start(HubConfig::default())).unwrap();
    let url = hub.url();
    let trace_path = std::env::temp_dir().join(format!("sockline-cli-{}.json", std::process::id()));
    let trace_arg = trace_path.to_str().unwrap();
    let mut all = Connected::spawn(&[&url, "--user", "a", "--project", "4", "--record", trace_arg]);
    let mut chats =
        Connected::spawn(&[&url, "--user", "b", "--project", "4", "--subscribe", "chat"]);
    rt.block_on(async {
        let mut c = Config::new(&url);
        c.user_id = Some("sender".into());
        let sender = sockline_tokio::Client::connect(c).unwrap();
        let mut events = sender.events();
        sender.join_project(4).await.unwrap();
        // Both CLIs are members once the hub's presence lists them.
        tokio::time::timeout(std::time::Duration::from_secs(10), async {
            while let Some(e) = events.recv().await {
                if let Event::Presence { members, .. } = e {
                    if members.contains(&"a".into()) && members.contains(&"b".into()) {
                        break;
                    }
                }
            }
        })
        .await
        .expect("both CLIs joined");
        for (t, n) in [("note", 1), ("chat", 2)] {
            sender
                .send(SendRequest::new(t, serde_json::json!({ "n": n })).project(4))
                .await
                .unwrap();
        }
        sender.close().await.unwrap();
    });
    all.wait_for(r#"recv    note project 4 {"n":1}"#);
    all.wait_for(r#"recv    chat project 4 {"n":2}"#);
    chats.wait_for(r#"recv    chat project 4 {"n":2}"#);
    let all = all.finish();
    let chats = chats.finish();
    assert!(
        !chats.iter().any(|l| l.contains("recv    note")),
        "--subscribe chat prints no note:\n{}",
        chats.join("\n")
    );
    assert!(
        all.iter().any(|l| l.contains("-> closed")),
        "{}",
        all.join("\n")
    );
    // The recorded trace starts with the subscription and the join, then the connect.
    let trace = Trace::from_json(&std::fs::read_to_string(&trace_path).unwrap()).unwrap();
    let _ = std::fs::remove_file(&trace_path);
    let kinds: Vec<String> = trace.inputs.iter().map(|i| i.input.kind()).collect();
    assert_eq!(
        kinds[..3],
        ["subscribe", "join_project", "connect"],
        "{kinds:?}"
    );
    assert!(kinds.iter().filter(|k| *k == "frame").count() >= 2);
    rt.block_on(hub.shutdown());
}

/// A child process killed when the test ends, however it ends.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_hub_stopped_by_sigterm_tells_its_clients_the_restart_window_from_its_flags() {
    let out = sockline()
        .args([
            "hub",
            "--listen",
            "127.0.0.1:0",
            "--restart-spread-ms",
            "400000",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--restart-spread-ms"), "{err}");

    let mut hub = Killed(
        sockline()
            .args(["hub", "--listen", "127.0.0.1:0"])
            .args([
                "--restart-retry-after-ms",
                "250",
                "--restart-spread-ms",
                "1500",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(hub.0.stdout.take().unwrap()),
        &mut first,
    )
    .unwrap();
    // "sockline hub listening on ws://127.0.0.1:PORT/ws (demo page at ...)"
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("ws://"))
        .unwrap_or_else(|| panic!("no URL in {first:?}"))
        .to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (code, reason) = rt.block_on(async {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .unwrap();
        ws.send(Message::text(r#"{"type":"hello","data":{"protocol":2}}"#))
            .await
            .unwrap();
        let welcome = ws.next().await.unwrap().unwrap();
        assert!(
            welcome.to_text().unwrap().contains("welcome"),
            "{welcome:?}"
        );
        let killed = Command::new("kill")
            .args(["-TERM", &hub.0.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let wait = std::time::Duration::from_secs(10);
        tokio::time::timeout(wait, async {
            while let Some(msg) = ws.next().await {
                if let Ok(Message::Close(Some(f))) = msg {
                    return (u16::from(f.code), f.reason.to_string());
                }
            }
            panic!("the stream ended without a close frame");
        })
        .await
        .expect("a close frame in time")
    });
    assert_eq!(code, 1012);
    assert_eq!(reason, r#"{"retryAfterMs":250,"spreadMs":1500}"#);
    assert_eq!(hub.0.wait().unwrap().code(), Some(0), "a clean exit");
}

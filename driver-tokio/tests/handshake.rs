//! The client's own opening handshake against hand-written servers on loopback: a frame sent in
//! the same write as the 101 response is not lost, and refusals or a wrong accept key fail the
//! attempt with a reason that says why.

use std::time::Duration;

use sockline_core::{Config, Event, Jitter, State};
use sockline_tokio::{Client, ClientOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

const WAIT: Duration = Duration::from_secs(10);

/// Reads the upgrade request; returns its Sec-WebSocket-Key.
async fn read_request(sock: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = sock.read(&mut chunk).await.unwrap();
        assert!(n > 0, "client closed before finishing its request");
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8(buf).unwrap();
    text.lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("sec-websocket-key")
                .then(|| value.trim().to_string())
        })
        .expect("request has a key")
}

/// A one-connection server answering with `respond(key)`, then holding the socket open.
async fn server(respond: fn(&str) -> Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let key = read_request(&mut sock).await;
                sock.write_all(&respond(&key)).await.unwrap();
                let mut sink = [0u8; 1024];
                while matches!(sock.read(&mut sink).await, Ok(n) if n > 0) {}
            });
        }
    });
    format!("ws://{addr}/ws")
}

fn client(url: &str) -> Client {
    let mut c = Config::new(url);
    c.reconnect.jitter = Jitter::None;
    c.reconnect.max_attempts = Some(0);
    Client::connect_with(
        c,
        ClientOptions {
            seed: Some(1),
            ..ClientOptions::default()
        },
    )
    .unwrap()
}

/// The reason the session gave for failing.
async fn failure_reason(c: &Client) -> String {
    let mut events = c.events();
    timeout(WAIT, async {
        loop {
            match events.recv().await.expect("client running") {
                Event::Status {
                    to: State::Failed,
                    reason,
                    ..
                } => return reason,
                _ => continue,
            }
        }
    })
    .await
    .expect("the attempt fails in time")
}

#[tokio::test]
async fn a_frame_in_the_same_write_as_the_101_is_read() {
    let url = server(|key| {
        let welcome = br#"{"type":"welcome","data":{"sessionId":"t1"}}"#;
        let mut out = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
            derive_accept_key(key.as_bytes())
        )
        .into_bytes();
        out.extend_from_slice(&[0x81, welcome.len() as u8]);
        out.extend_from_slice(welcome);
        out
    })
    .await;
    let c = client(&url);
    let mut st = c.state();
    timeout(WAIT, st.wait_for(|s| *s == State::Open))
        .await
        .expect("welcomed by the frame behind the response")
        .unwrap();
}

#[tokio::test]
async fn a_refused_upgrade_names_the_status() {
    let url = server(|_| b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n".to_vec()).await;
    let reason = failure_reason(&client(&url)).await;
    assert!(reason.contains("HTTP 403"), "{reason}");
}

#[tokio::test]
async fn a_wrong_accept_key_is_refused() {
    let url = server(|_| {
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: bm90IHRoZSByaWdodCBrZXk=\r\n\r\n".to_vec()
    })
    .await;
    let reason = failure_reason(&client(&url)).await;
    assert!(reason.contains("Sec-WebSocket-Accept"), "{reason}");
}

//! The adversarial suite over real sockets, for what only sockets show: forged JWTs refused by
//! the real `jsonwebtoken` verifier, a wrong `Origin` refused at the upgrade, a handshake that
//! never says hello, an oversized hello, a flood of one user's connections and another user's
//! session id. Each attacker gets its typed refusal while a legitimate client keeps being served.
//! (The protocol decisions are tested in virtual time in `core/tests/security.rs`.)

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use sockline_core::hub::{HubLimits, HubSettings};
use sockline_tokio::hub::{Hub, HubConfig, HubHandle, JwtVerifier};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const SECRET: &[u8] = b"the hub's secret, thirty-two bytes or more";
const WAIT: Duration = Duration::from_secs(10);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn token(claims: Value, secret: &[u8]) -> String {
    let key = EncodingKey::from_secret(secret).unwrap();
    encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap()
}

fn valid(user: &str) -> String {
    token(json!({"sub": user, "exp": now_s() + 600}), SECRET)
}

async fn hub(settings: HubSettings) -> HubHandle {
    Hub::start(HubConfig {
        settings,
        jwt: Some(Arc::new(JwtVerifier::hs256(SECRET).unwrap())),
        ..HubConfig::default()
    })
    .await
    .unwrap()
}

async fn open(url: &str) -> Ws {
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

async fn say(ws: &mut Ws, frame: Value) {
    ws.send(Message::text(frame.to_string())).await.unwrap();
}

/// The next text frame, as JSON.
async fn next(ws: &mut Ws) -> Value {
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return serde_json::from_str(&t).unwrap(),
            Ok(Some(Ok(_))) => {}
            other => panic!("no frame: {other:?}"),
        }
    }
}

/// Every text frame until the hub closes the connection, and the close code.
async fn until_closed(ws: &mut Ws) -> (Vec<Value>, Option<u16>) {
    let mut frames = Vec::new();
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => frames.push(serde_json::from_str(&t).unwrap()),
            Ok(Some(Ok(Message::Close(c)))) => return (frames, c.map(|c| u16::from(c.code))),
            Ok(Some(Ok(_))) => {}
            Ok(None) | Ok(Some(Err(_))) => return (frames, None),
            Err(_) => panic!("the hub never closed: {frames:?}"),
        }
    }
}

/// A welcomed connection of `user`, in project 1; returns it and its session id.
async fn member(url: &str, user: &str) -> (Ws, String) {
    let mut ws = open(url).await;
    say(
        &mut ws,
        json!({"type": "hello", "data": {"protocol": 2, "token": valid(user)}}),
    )
    .await;
    let welcome = next(&mut ws).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    say(
        &mut ws,
        json!({"type": "project_subscribe", "data": {}, "projectId": 1}),
    )
    .await;
    while next(&mut ws).await["type"] != "presence_state" {}
    (
        ws,
        welcome["data"]["sessionId"].as_str().unwrap().to_string(),
    )
}

/// The legitimate pair is still served: ann's note reaches bob.
async fn still_served(ann: &mut Ws, bob: &mut Ws, n: u32) {
    let note = json!({"type": "note", "data": n, "projectId": 1, "id": format!("n{n}")});
    say(ann, note).await;
    loop {
        let f = next(bob).await;
        if f["type"] == "note" {
            assert_eq!(f["data"], n);
            return;
        }
    }
}

#[tokio::test]
async fn forged_tokens_are_refused_4001_and_everybody_else_is_served() {
    let hub = hub(HubSettings::default()).await;
    let url = hub.url();
    let (mut ann, _) = member(&url, "ann").await;
    let (mut bob, _) = member(&url, "bob").await;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let good = valid("eve");
    let parts: Vec<&str> = good.split('.').collect();
    let forged = [
        (
            "wrong key",
            token(
                json!({"sub": "ann", "exp": now_s() + 600}),
                b"not the hub's secret, but long enough",
            ),
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
                b64.encode(json!({"sub": "ann", "exp": now_s() + 600}).to_string())
            ),
        ),
        (
            "expired",
            token(json!({"sub": "ann", "exp": now_s() - 5}), SECRET),
        ),
        (
            "tampered payload",
            format!(
                "{}.{}.{}",
                parts[0],
                b64.encode(json!({"sub": "ann", "exp": now_s() + 600}).to_string()),
                parts[2]
            ),
        ),
        ("no sub", token(json!({"exp": now_s() + 600}), SECRET)),
        ("no exp", token(json!({"sub": "ann"}), SECRET)),
    ];
    for (i, (what, token)) in forged.into_iter().enumerate() {
        let mut eve = open(&url).await;
        say(
            &mut eve,
            json!({"type": "hello", "data": {"protocol": 2, "token": token}}),
        )
        .await;
        let (frames, code) = until_closed(&mut eve).await;
        assert_eq!(code, Some(4001), "{what}: {frames:?}");
        assert_eq!(frames.len(), 1, "{what}: only the refusal: {frames:?}");
        assert_eq!(frames[0]["data"]["code"], "unauthorized", "{what}");
        still_served(&mut ann, &mut bob, i as u32).await;
    }
    // A spoofed userId beside a valid token: forbidden (4003), fatal for the client.
    let mut eve = open(&url).await;
    say(
        &mut eve,
        json!({"type": "hello", "data": {"protocol": 2, "token": valid("eve"), "userId": "ann"}}),
    )
    .await;
    let (frames, code) = until_closed(&mut eve).await;
    assert_eq!(
        (code, frames[0]["data"]["code"].as_str()),
        (Some(4003), Some("forbidden"))
    );
    hub.shutdown().await;
}

#[tokio::test]
async fn another_users_session_id_gets_a_fresh_session_and_a_forbidden_project_nothing() {
    let hub = hub(HubSettings::default()).await;
    let url = hub.url();
    let (mut ann, sid) = member(&url, "ann").await;
    assert_eq!(sid.len(), 33, "128 bits: {sid}");
    let mut eve = open(&url).await;
    let only_2 = token(
        json!({"sub": "eve", "exp": now_s() + 600, "projects": [2]}),
        SECRET,
    );
    say(
        &mut eve,
        json!({"type": "hello", "data": {"protocol": 2, "token": only_2, "sessionId": sid}}),
    )
    .await;
    let welcome = next(&mut eve).await;
    assert_eq!(welcome["data"]["resumed"], false);
    assert_ne!(welcome["data"]["sessionId"], sid.as_str());
    say(
        &mut eve,
        json!({"type": "project_subscribe", "data": {}, "projectId": 1, "id": "j"}),
    )
    .await;
    let refused = next(&mut eve).await;
    assert_eq!(
        (
            refused["data"]["code"].as_str(),
            refused["data"]["id"].as_str()
        ),
        (Some("forbidden"), Some("j"))
    );
    say(
        &mut eve,
        json!({"type": "note", "data": "spam", "projectId": 1, "id": "x"}),
    )
    .await;
    let refused = next(&mut eve).await;
    assert_eq!(refused["data"]["code"], "not_member");
    // Ann heard nothing of eve: her next frame is her own ack.
    say(
        &mut ann,
        json!({"type": "note", "data": 1, "projectId": 1, "id": "a"}),
    )
    .await;
    let f = next(&mut ann).await;
    assert_eq!(f["type"], "ack", "{f}");
    hub.shutdown().await;
}

#[tokio::test]
async fn a_wrong_origin_is_refused_at_the_upgrade() {
    let hub = hub(HubSettings {
        allowed_origins: vec!["https://app.example".into()],
        ..HubSettings::default()
    })
    .await;
    let with_origin = |origin: Option<&str>| {
        let mut req = hub.url().into_client_request().unwrap();
        if let Some(o) = origin {
            req.headers_mut().insert("origin", o.parse().unwrap());
        }
        req
    };
    match tokio_tungstenite::connect_async(with_origin(Some("https://evil.example"))).await {
        Err(WsError::Http(resp)) => assert_eq!(resp.status(), 403),
        other => panic!("accepted a foreign origin: {:?}", other.map(|r| r.1)),
    }
    for origin in [Some("https://app.example"), None] {
        let (mut ws, _) = tokio_tungstenite::connect_async(with_origin(origin))
            .await
            .unwrap();
        say(
            &mut ws,
            json!({"type": "hello", "data": {"protocol": 2, "token": valid("ann")}}),
        )
        .await;
        assert_eq!(next(&mut ws).await["type"], "welcome", "{origin:?}");
    }
    hub.shutdown().await;
}

#[tokio::test]
async fn a_silent_handshake_an_oversized_hello_and_a_connection_flood_are_cut_off() {
    let hub = hub(HubSettings {
        hello_timeout_ms: 300,
        limits: HubLimits {
            max_connections_per_user: 3,
            ..HubLimits::default()
        },
        ..HubSettings::default()
    })
    .await;
    let url = hub.url();
    let (mut ann, _) = member(&url, "ann").await;
    let (mut bob, _) = member(&url, "bob").await;
    // Opens the WebSocket and never says hello.
    let mut mute = open(&url).await;
    let (frames, code) = until_closed(&mut mute).await;
    assert_eq!((frames.len(), code), (0, Some(1008)));
    // A 900 KB userId (under the frame limit, far over the hello limit).
    let mut big = open(&url).await;
    let huge = "u".repeat(900_000);
    say(
        &mut big,
        json!({"type": "hello", "data": {"protocol": 2, "token": valid("eve"), "userId": huge}}),
    )
    .await;
    let (frames, code) = until_closed(&mut big).await;
    assert_eq!(code, Some(1008));
    assert_eq!(frames[0]["data"]["code"], "too_large");
    // Eve's fourth connection is one too many.
    let mut eves = Vec::new();
    for _ in 0..3 {
        let mut ws = open(&url).await;
        say(
            &mut ws,
            json!({"type": "hello", "data": {"protocol": 2, "token": valid("eve")}}),
        )
        .await;
        assert_eq!(next(&mut ws).await["type"], "welcome");
        eves.push(ws);
    }
    let mut fourth = open(&url).await;
    say(
        &mut fourth,
        json!({"type": "hello", "data": {"protocol": 2, "token": valid("eve")}}),
    )
    .await;
    let (frames, code) = until_closed(&mut fourth).await;
    assert_eq!(code, Some(1013));
    assert_eq!(frames[0]["data"]["code"], "too_many_connections");
    assert!(frames[0]["data"]["retryAfterMs"].as_u64().is_some());
    still_served(&mut ann, &mut bob, 7).await;
    hub.shutdown().await;
}

#[tokio::test]
async fn a_client_renews_its_token_in_band_and_one_that_does_not_is_closed_at_expiry() {
    use sockline_core::{Config, Event, Secret, State};
    use sockline_tokio::Client;
    let hub = hub(HubSettings {
        token_warning_ms: 2_500,
        ..HubSettings::default()
    })
    .await;
    // Both tokens run out 3 s from now (JWT `exp` is in whole seconds: 2-3 s).
    let short = |user: &str| token(json!({"sub": user, "exp": now_s() + 3}), SECRET);
    let client = |user: &str| {
        let mut c = Config::new(hub.url());
        c.token = Some(Secret::new(short(user)));
        Client::connect(c).unwrap()
    };
    let (ann, bob) = (client("ann"), client("bob"));
    let (mut ann_events, mut bob_events) = (ann.events(), bob.events());
    // Ann does what an app does on `token_refresh_due`: fetches a new token and sets it.
    let renewed = tokio::time::timeout(WAIT, async {
        while let Some(e) = ann_events.recv().await {
            if matches!(e, Event::TokenRefreshDue { .. }) {
                ann.set_token(&valid("ann"), None).await.unwrap();
                return true;
            }
        }
        false
    })
    .await
    .unwrap();
    assert!(renewed, "the hub's token_expiring became token_refresh_due");
    // Bob does not: the hub closes him with 4001 at expiry and he waits for a token.
    let mut bob_state = bob.state();
    tokio::time::timeout(WAIT, bob_state.wait_for(|s| *s == State::Unauthorized))
        .await
        .expect("bob is closed at expiry")
        .unwrap();
    let mut bob_saw = Vec::new();
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(50), bob_events.recv()).await
    {
        bob_saw.push(e);
    }
    assert!(
        bob_saw
            .iter()
            .any(|e| matches!(e, Event::ServerError { code, .. } if code == "unauthorized")),
        "{bob_saw:?}"
    );
    // Past the first token's expiry ann is still on her first connection.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(*ann.state().borrow(), State::Open);
    let mut readies = 0;
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(50), ann_events.recv()).await
    {
        readies += usize::from(matches!(e, Event::Ready { .. }));
        assert!(!matches!(e, Event::ServerError { .. }), "{e:?}");
    }
    assert_eq!(
        readies, 0,
        "no reconnect: the first welcome came before the refresh"
    );
    ann.close().await.unwrap();
    bob.close().await.unwrap();
    hub.shutdown().await;
}

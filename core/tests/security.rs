//! The adversarial suite, in virtual time: raw frames from an attacker's connection against the
//! hub core, each refused with its typed error while everybody else is served and nothing leaks.
//! Token verdicts come from a scripted verifier here (checking signatures is the driver's
//! capability: forged JWTs are refused by the real `jsonwebtoken` verifier over sockets in
//! `driver-tokio/tests/security.rs`); what the hub does with each verdict is what is tested.

use std::collections::BTreeSet;

use serde_json::{json, Value};
use sockline_core::hub::{
    Claims, ConnId, HubCore, HubLimits, HubOutput, HubSettings, InMemoryBroker, ScriptedAgent,
    SecretSource, TokenError, TokenVerifier,
};
use sockline_core::{close, Timestamp};

/// Tokens are `sub|expires_in_ms|p1,p2` (an empty list: every project), `expired` or anything
/// else (a bad signature).
struct Scripted;

impl TokenVerifier for Scripted {
    fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        if token == "expired" {
            return Err(TokenError::Expired);
        }
        let mut parts = token.split('|');
        let (Some(sub), Some(ms), Some(projects)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::BadSignature);
        };
        let projects: Option<BTreeSet<u64>> = (!projects.is_empty())
            .then(|| projects.split(',').filter_map(|p| p.parse().ok()).collect());
        Ok(Claims {
            sub: sub.to_string(),
            expires_in_ms: ms.parse().map_err(|_| TokenError::MissingClaim("exp"))?,
            projects,
        })
    }
}

struct Hub {
    core: HubCore<InMemoryBroker>,
    now: u64,
    next: u64,
}

impl Hub {
    fn new(settings: HubSettings) -> Hub {
        let core = HubCore::new(settings, InMemoryBroker::new(64, 1), 2)
            .with_agent(Box::new(ScriptedAgent { chunks: 50 }))
            .with_verifier(Box::new(Scripted));
        Hub {
            core,
            now: 0,
            next: 0,
        }
    }

    fn t(&self) -> Timestamp {
        Timestamp::from_millis(self.now)
    }

    fn drain(&mut self) -> Vec<HubOutput> {
        let mut out = Vec::new();
        loop {
            match self.core.poll_output() {
                HubOutput::Timeout { .. } => return out,
                o => out.push(o),
            }
        }
    }

    /// A new connection that says `hello` with `data`; what it got.
    fn hello(&mut self, data: Value) -> (ConnId, Vec<HubOutput>) {
        self.next += 1;
        let conn = ConnId(self.next);
        self.core.accepted(self.t(), conn);
        let hello = json!({"type": "hello", "data": data});
        (conn, self.send(conn, &hello.to_string()))
    }

    /// A welcomed connection of `user` (its token allows `projects`, empty: all), in `joined`.
    fn user(&mut self, user: &str, projects: &str, joined: &[u64]) -> ConnId {
        let token = format!("{user}|600000|{projects}");
        let (conn, out) = self.hello(json!({"protocol": 2, "token": token}));
        assert_eq!(frames(&out, conn)[0]["type"], "welcome", "{out:?}");
        for p in joined {
            self.send(conn, &sub(*p));
        }
        conn
    }

    fn send(&mut self, conn: ConnId, text: &str) -> Vec<HubOutput> {
        self.core.frame(self.t(), conn, text);
        self.drain()
    }

    fn advance(&mut self, ms: u64) -> Vec<HubOutput> {
        self.now += ms;
        self.core.handle_timeout(self.t());
        self.drain()
    }
}

fn sub(project: u64) -> String {
    json!({"type": "project_subscribe", "data": {}, "projectId": project, "id": format!("j{project}")})
        .to_string()
}

fn note(project: Value, id: &str) -> String {
    json!({"type": "note", "data": "hi", "projectId": project, "id": id}).to_string()
}

fn frames(out: &[HubOutput], to: ConnId) -> Vec<Value> {
    out.iter()
        .filter_map(|o| match o {
            HubOutput::Send { conn, text } if *conn == to => serde_json::from_str(text).ok(),
            _ => None,
        })
        .collect()
}

fn error(out: &[HubOutput], to: ConnId) -> (String, Option<String>) {
    let errors: Vec<Value> = frames(out, to)
        .into_iter()
        .filter(|f| f["type"] == "error")
        .collect();
    assert_eq!(errors.len(), 1, "one error: {out:?}");
    let d = &errors[0]["data"];
    (
        d["code"].as_str().unwrap_or("").to_string(),
        d["id"].as_str().map(str::to_string),
    )
}

fn closed_with(out: &[HubOutput], conn: ConnId) -> Option<u16> {
    out.iter().find_map(|o| match o {
        HubOutput::Close { conn: c, code, .. } if *c == conn => Some(*code),
        _ => None,
    })
}

/// Everything `conn` got, as text (to check nothing of someone else's leaked into it).
fn text_to(out: &[HubOutput], to: ConnId) -> String {
    frames(out, to).iter().map(Value::to_string).collect()
}

#[test]
fn forged_expired_and_missing_tokens_are_unauthorized_and_closed_4001() {
    let mut hub = Hub::new(HubSettings::default());
    for data in [
        json!({"protocol": 2, "token": "forged"}),
        json!({"protocol": 2, "token": "expired"}),
        json!({"protocol": 2, "token": "ann|x|"}),
        json!({"protocol": 2}),
    ] {
        let (conn, out) = hub.hello(data.clone());
        assert_eq!(error(&out, conn).0, "unauthorized", "{data}");
        assert_eq!(closed_with(&out, conn), Some(close::UNAUTHORIZED), "{data}");
        assert!(frames(&out, conn).iter().all(|f| f["type"] != "welcome"));
    }
}

#[test]
fn a_spoofed_user_id_is_refused_and_presence_shows_the_token_s_user() {
    let mut hub = Hub::new(HubSettings::default());
    let ann = hub.user("ann", "", &[5]);
    let (eve, out) = hub.hello(json!({"protocol": 2, "token": "eve|600000|", "userId": "ann"}));
    assert_eq!(error(&out, eve).0, "forbidden");
    assert_eq!(closed_with(&out, eve), Some(close::FORBIDDEN));
    // Without a userId the connection is its token's user, whatever else it says.
    let (eve, _) = hub.hello(json!({"protocol": 2, "token": "eve|600000|"}));
    let out = hub.send(eve, &sub(5));
    let presence = frames(&out, eve)
        .into_iter()
        .find(|f| f["type"] == "presence_state")
        .expect("presence");
    assert_eq!(presence["data"]["members"], json!(["ann", "eve"]));
    let diff = &frames(&out, ann)[0];
    assert_eq!(diff["data"]["joins"], json!(["eve"]));
}

#[test]
fn a_project_outside_the_token_is_forbidden_and_posting_without_joining_is_not_member() {
    let mut hub = Hub::new(HubSettings::default());
    let ann = hub.user("ann", "", &[5, 6]);
    let eve = hub.user("eve", "6", &[6]);
    let out = hub.send(eve, &sub(5));
    assert_eq!(error(&out, eve), ("forbidden".into(), Some("j5".into())));
    assert!(frames(&out, ann).is_empty(), "nobody hears of it");
    for text in [
        note(json!(5), "n1"),
        json!({"type": "project_update", "data": {"x": 1}, "projectId": 5, "id": "u1"}).to_string(),
        json!({"type": "project_sync_request", "data": {}, "projectId": 5, "id": "s1"}).to_string(),
        json!({"type": "user_typing_start", "data": {}, "projectId": 5, "id": "t1"}).to_string(),
    ] {
        let out = hub.send(eve, &text);
        let (code, id) = error(&out, eve);
        assert_eq!(code, "not_member", "{text}");
        assert!(id.is_some());
        assert!(frames(&out, ann).is_empty(), "nothing relayed: {text}");
        assert!(
            !text_to(&out, eve).contains("project_snapshot"),
            "no state leaks: {text}"
        );
    }
    assert!(hub.core.broker().log(5).is_empty(), "nothing logged");
    // In project 6, where she is a member, eve is served.
    let out = hub.send(eve, &note(json!(6), "n2"));
    assert_eq!(frames(&out, ann)[0]["type"], "note");
}

#[test]
fn a_project_id_out_of_range_is_a_bad_message_by_id() {
    let mut hub = Hub::new(HubSettings::default());
    let ann = hub.user("ann", "", &[5]);
    for (project, id) in [("-1", "a"), ("18446744073709551616", "b"), ("\"5\"", "c")] {
        let text = format!(r#"{{"type":"note","data":1,"projectId":{project},"id":"{id}"}}"#);
        let out = hub.send(ann, &text);
        let want = ("bad_message".to_string(), Some(id.to_string()));
        assert_eq!(error(&out, ann), want, "{project}");
    }
}

#[test]
fn another_users_session_id_gets_a_fresh_session_and_none_of_its_messages() {
    let mut hub = Hub::new(HubSettings::default());
    let (ann, out) = hub.hello(json!({"protocol": 2, "token": "ann|600000|"}));
    let sid = frames(&out, ann)[0]["data"]["sessionId"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(sid.len(), 33, "s + 128 bits in hex: {sid}");
    let prompt =
        json!({"type": "agent_prompt", "data": {"prompt": "secret plans", "streamId": "x"}});
    hub.send(ann, &prompt.to_string());
    hub.core.closed(hub.t(), ann);
    hub.drain();
    let (eve, out) = hub.hello(json!({"protocol": 2, "token": "eve|600000|", "sessionId": sid}));
    let welcome = &frames(&out, eve)[0];
    assert_eq!(welcome["data"]["resumed"], false);
    assert_ne!(welcome["data"]["sessionId"], sid.as_str());
    let resume = json!({"type": "agent_stream_resume", "data": {"streamId": "x", "fromSeq": 0}});
    let out = hub.send(eve, &resume.to_string());
    let got = frames(&out, eve);
    assert_eq!(got[0]["type"], "agent_stream_error", "{got:?}");
    assert!(!text_to(&out, eve).contains("secret"));
    // Ann herself resumes it.
    let (ann2, out) = hub.hello(json!({"protocol": 2, "token": "ann|600000|", "sessionId": sid}));
    assert_eq!(frames(&out, ann2)[0]["data"]["resumed"], true);
}

#[test]
fn session_ids_come_from_the_secret_source_when_one_is_given() {
    struct Counting(u8);
    impl SecretSource for Counting {
        fn fill(&mut self, buf: &mut [u8]) {
            self.0 += 1;
            buf.fill(self.0);
        }
    }
    let mut core = HubCore::new(HubSettings::default(), InMemoryBroker::new(4, 1), 2)
        .with_secrets(Box::new(Counting(0)));
    core.accepted(Timestamp::ZERO, ConnId(1));
    core.frame(
        Timestamp::ZERO,
        ConnId(1),
        r#"{"type":"hello","data":{"protocol":2}}"#,
    );
    let HubOutput::Send { text, .. } = core.poll_output() else {
        panic!()
    };
    assert!(text.contains(&format!("s{}", "01".repeat(16))), "{text}");
}

#[test]
fn limits_refuse_a_connection_flood_a_project_flood_a_stream_flood_and_a_huge_hello() {
    let limits = HubLimits {
        max_connections_per_user: 3,
        max_projects_per_connection: 2,
        max_streams_per_connection: 2,
        max_hello_bytes: 512,
        max_user_id_bytes: 16,
        ..HubLimits::default()
    };
    let mut hub = Hub::new(HubSettings {
        limits,
        ..HubSettings::default()
    });
    let bob = hub.user("bob", "", &[1]);
    let ann: Vec<ConnId> = (0..3).map(|_| hub.user("ann", "", &[])).collect();
    let (extra, out) = hub.hello(json!({"protocol": 2, "token": "ann|600000|"}));
    assert_eq!(error(&out, extra).0, "too_many_connections");
    assert_eq!(closed_with(&out, extra), Some(close::TRY_AGAIN_LATER));
    // One of hers closes: room for one more.
    hub.core.closed(hub.t(), ann[0]);
    hub.drain();
    hub.user("ann", "", &[]);

    hub.send(ann[1], &sub(1));
    hub.send(ann[1], &sub(2));
    let out = hub.send(ann[1], &sub(3));
    assert_eq!(
        error(&out, ann[1]),
        ("too_many_projects".into(), Some("j3".into()))
    );
    let rejoin = r#"{"type":"project_subscribe","data":{},"projectId":1,"id":"again"}"#;
    assert_eq!(
        frames(&hub.send(ann[1], rejoin), ann[1])[0]["type"],
        "project_joined",
        "a rejoin is fine"
    );

    for i in 0..2 {
        let p = json!({"type": "agent_prompt", "data": {"prompt": "p"}, "id": format!("p{i}")});
        assert_eq!(
            frames(&hub.send(ann[1], &p.to_string()), ann[1])[0]["type"],
            "agent_stream_start"
        );
    }
    let p = json!({"type": "agent_prompt", "data": {"prompt": "p"}, "id": "p9"});
    let out = hub.send(ann[1], &p.to_string());
    assert_eq!(
        error(&out, ann[1]),
        ("too_many_streams".into(), Some("p9".into()))
    );

    let padding = "x".repeat(600);
    let (big, out) = hub.hello(json!({"protocol": 2, "token": "ann|600000|", "pad": padding}));
    assert_eq!(error(&out, big).0, "too_large");
    assert_eq!(closed_with(&out, big), Some(close::POLICY));
    let (long, out) =
        hub.hello(json!({"protocol": 2, "token": format!("{}|600000|", "z".repeat(17))}));
    assert_eq!(error(&out, long).0, "bad_message");
    assert_eq!(closed_with(&out, long), Some(close::POLICY));
    // Bob was served throughout.
    let out = hub.send(bob, &note(json!(1), "b1"));
    assert_eq!(frames(&out, bob)[0]["type"], "ack");
    assert!(frames(&out, ann[1]).iter().any(|f| f["type"] == "note"));
}

#[test]
fn one_user_cannot_multiply_the_rate_by_opening_connections() {
    let limits = HubLimits {
        user_messages_per_sec: 10,
        user_burst: 10,
        ..HubLimits::default()
    };
    let mut hub = Hub::new(HubSettings {
        limits,
        ..HubSettings::default()
    });
    let conns: Vec<ConnId> = (0..4).map(|_| hub.user("ann", "", &[1])).collect();
    let bob = hub.user("bob", "", &[1]);
    let mut refused = 0;
    for i in 0..40 {
        let out = hub.send(conns[i % 4], &note(json!(1), &format!("n{i}")));
        refused += frames(&out, conns[i % 4])
            .iter()
            .filter(|f| f["data"]["code"] == "rate_limited")
            .count();
    }
    assert!(refused >= 1, "warned");
    // The welcomes and joins spent part of the burst; never more than the burst got through.
    let logged = hub.core.broker().log(1).len();
    assert!(logged <= 10, "{logged} messages got through in one instant");
    // Bob has his own budget.
    let out = hub.send(bob, &note(json!(1), "b"));
    assert_eq!(frames(&out, bob)[0]["type"], "ack");
}

#[test]
fn a_token_running_out_is_announced_then_closes_unless_renewed() {
    let mut hub = Hub::new(HubSettings {
        token_warning_ms: 5_000,
        ..HubSettings::default()
    });
    let (ann, _) = hub.hello(json!({"protocol": 2, "token": "ann|20000|"}));
    assert!(hub.advance(14_999).is_empty());
    let out = hub.advance(1);
    let told = &frames(&out, ann)[0];
    assert_eq!(told["type"], "token_expiring");
    assert_eq!(told["data"]["expiresInMs"], 5_000);
    let out = hub.advance(5_000);
    assert_eq!(error(&out, ann).0, "unauthorized");
    assert_eq!(closed_with(&out, ann), Some(close::UNAUTHORIZED));

    // Renewed in time: it carries on past the old expiry.
    let (bob, _) = hub.hello(json!({"protocol": 2, "token": "bob|20000|"}));
    hub.advance(16_000);
    let renew = json!({"type": "auth", "data": {"token": "bob|60000|"}});
    assert!(hub.send(bob, &renew.to_string()).is_empty());
    assert_eq!(closed_with(&hub.advance(10_000), bob), None);
    // A renewal for someone else, or a forged one, ends it.
    let other = json!({"type": "auth", "data": {"token": "ann|60000|"}});
    let out = hub.send(bob, &other.to_string());
    assert_eq!(closed_with(&out, bob), Some(close::FORBIDDEN));
    let (cat, _) = hub.hello(json!({"protocol": 2, "token": "cat|60000|"}));
    let forged = json!({"type": "auth", "data": {"token": "forged"}});
    assert_eq!(
        closed_with(&hub.send(cat, &forged.to_string()), cat),
        Some(close::UNAUTHORIZED)
    );
}

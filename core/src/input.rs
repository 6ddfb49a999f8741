//! Everything that can happen to a session, in the canonical JSON form traces store.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::Secret;
use crate::outbox::Delivery;
use crate::subscription::SubscriptionId;
use crate::timer::Timestamp;

/// An application message to send.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    /// Message type; must not be a control type.
    #[serde(rename = "type")]
    pub msg_type: String,
    /// Payload.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub data: Value,
    /// Project the message belongs to (sent as `projectId`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<u64>,
    /// Delivery class.
    #[serde(default, skip_serializing_if = "is_default_delivery")]
    pub delivery: Delivery,
    /// Drop the message instead of sending it this long after `send`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
    /// A newer queued message with the same key replaces this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coalesce: Option<String>,
    /// Caller-chosen id; generated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The caller's wall clock (Unix ms), stamped into the envelope as RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unix_ms: Option<u64>,
}

fn is_default_delivery(d: &Delivery) -> bool {
    *d == Delivery::default()
}

impl SendRequest {
    /// A message of type `msg_type` with payload `data` and default options.
    pub fn new(msg_type: impl Into<String>, data: Value) -> Self {
        SendRequest {
            msg_type: msg_type.into(),
            data,
            project_id: None,
            delivery: Delivery::default(),
            ttl_ms: None,
            coalesce: None,
            id: None,
            unix_ms: None,
        }
    }

    /// Sets the project.
    pub fn project(mut self, project_id: u64) -> Self {
        self.project_id = Some(project_id);
        self
    }

    /// Sets the delivery class.
    pub fn delivery(mut self, delivery: Delivery) -> Self {
        self.delivery = delivery;
        self
    }

    /// Sets the time to live.
    pub fn ttl_ms(mut self, ttl_ms: u64) -> Self {
        self.ttl_ms = Some(ttl_ms);
        self
    }

    /// Sets the coalescing key.
    pub fn coalesce(mut self, key: impl Into<String>) -> Self {
        self.coalesce = Some(key.into());
        self
    }

    /// Sets the message id.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Sets the wall-clock time to stamp.
    pub fn unix_ms(mut self, unix_ms: u64) -> Self {
        self.unix_ms = Some(unix_ms);
        self
    }
}

/// One input to the session: `{"kind": ..., ...}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Input {
    /// The user asks to connect.
    Connect,
    /// The user asks to close (code 1000; never reconnects).
    Disconnect,
    /// The transport the session asked for is open.
    TransportOpened,
    /// A close frame arrived (the WebSocket closed).
    TransportClosed {
        /// Its close code; absent for a close frame without one (the session names it 1005).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<u16>,
        /// Its close reason.
        #[serde(default)]
        reason: String,
    },
    /// The transport ended without any close frame (EOF or reset; the session names it 1006).
    TransportLost,
    /// The transport failed with an I/O error.
    TransportError {
        /// What the driver saw.
        #[serde(default)]
        message: String,
    },
    /// A text frame arrived.
    Frame {
        /// Its text.
        text: String,
    },
    /// A binary frame arrived (protocol v1 is text only; only its size matters).
    BinaryFrame {
        /// Its size in bytes.
        len: usize,
    },
    /// The user sends a message.
    Send(SendRequest),
    /// The user subscribes to a message pattern, optionally for one project.
    Subscribe {
        /// `type`, `prefix*` or `*`.
        pattern: String,
        /// Only messages with this `projectId`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        project_id: Option<u64>,
    },
    /// The user removes a subscription.
    Unsubscribe {
        /// The id `subscribe` returned.
        id: SubscriptionId,
    },
    /// The host regained network connectivity.
    Online,
    /// The host lost network connectivity.
    Offline,
    /// The page became visible.
    Visible,
    /// The page was hidden.
    Hidden,
    /// The local user typed in a project.
    StartTyping {
        /// The project.
        project_id: u64,
    },
    /// The local user stopped typing in a project.
    StopTyping {
        /// The project.
        project_id: u64,
    },
    /// The user stops an agent stream.
    InterruptStream {
        /// The stream.
        stream_id: String,
    },
    /// The user joins a project (re-joined after every reconnect).
    JoinProject {
        /// The project.
        project_id: u64,
    },
    /// The user leaves a project.
    LeaveProject {
        /// The project.
        project_id: u64,
    },
    /// A new credential (redacted in recorded traces).
    SetToken {
        /// The token.
        token: Secret,
        /// When it expires (driver monotonic ms).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_at: Option<Timestamp>,
    },
    /// Puts back messages from `snapshot_outbox`.
    RestoreOutbox {
        /// The snapshot's canonical JSON.
        snapshot: Value,
    },
    /// The driver's timer fired.
    Timeout,
    /// The host slept: the clock jumps `ms` without firing the deadlines in between.
    Suspend {
        /// How long it slept.
        ms: u64,
    },
    /// The driver holds this many bytes of transmitted frames unsent (fed when
    /// `Session::should_report_buffered` says so).
    Buffered {
        /// Unsent bytes.
        bytes: u64,
    },
}

impl Input {
    /// The canonical `kind` name: the serde tag (a test checks every variant against it).
    pub fn kind(&self) -> String {
        // A match, not a round trip through `serde_json::to_value`: that instantiated the whole
        // `Value` serializer for every input type, some 6 KB of the wasm for a cold path.
        match self {
            Input::Connect => "connect",
            Input::Disconnect => "disconnect",
            Input::TransportOpened => "transport_opened",
            Input::TransportClosed { .. } => "transport_closed",
            Input::TransportLost => "transport_lost",
            Input::TransportError { .. } => "transport_error",
            Input::Frame { .. } => "frame",
            Input::BinaryFrame { .. } => "binary_frame",
            Input::Send(_) => "send",
            Input::Subscribe { .. } => "subscribe",
            Input::Unsubscribe { .. } => "unsubscribe",
            Input::Online => "online",
            Input::Offline => "offline",
            Input::Visible => "visible",
            Input::Hidden => "hidden",
            Input::StartTyping { .. } => "start_typing",
            Input::StopTyping { .. } => "stop_typing",
            Input::InterruptStream { .. } => "interrupt_stream",
            Input::JoinProject { .. } => "join_project",
            Input::LeaveProject { .. } => "leave_project",
            Input::SetToken { .. } => "set_token",
            Input::RestoreOutbox { .. } => "restore_outbox",
            Input::Timeout => "timeout",
            Input::Suspend { .. } => "suspend",
            Input::Buffered { .. } => "buffered",
        }
        .to_string()
    }
}

/// What a successful input returned.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Nothing to report.
    Done,
    /// `send` accepted the message under this id.
    Sent(String),
    /// `subscribe` created this subscription.
    Subscribed(SubscriptionId),
    /// `restore_outbox` put back this many messages.
    Restored(usize),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms_round_trip() {
        let cases = [
            r#"{"kind":"transport_closed","code":1006,"reason":""}"#,
            r#"{"kind":"transport_closed","reason":""}"#,
            r#"{"kind":"transport_lost"}"#,
            r#"{"kind":"buffered","bytes":2097152}"#,
            r#"{"kind":"frame","text":"{}"}"#,
            r#"{"kind":"send","type":"chat","data":{"a":1},"project_id":1,"delivery":"at_least_once","ttl_ms":5000,"coalesce":"key"}"#,
            r#"{"kind":"subscribe","pattern":"project_updated","project_id":1}"#,
            r#"{"kind":"unsubscribe","id":1}"#,
            r#"{"kind":"suspend","ms":60000}"#,
            r#"{"kind":"connect"}"#,
            r#"{"kind":"start_typing","project_id":3}"#,
            r#"{"kind":"interrupt_stream","stream_id":"a1"}"#,
            r#"{"kind":"set_token","token":"<redacted>","expires_at":90000}"#,
            r#"{"kind":"restore_outbox","snapshot":{"messages":[],"version":1}}"#,
        ];
        for c in cases {
            let i: Input = serde_json::from_str(c).unwrap();
            assert_eq!(serde_json::to_string(&i).unwrap(), c);
        }
    }

    #[test]
    fn unknown_fields_and_kinds_are_errors() {
        assert!(
            serde_json::from_str::<Input>(r#"{"kind":"send","type":"x","projectId":1}"#).is_err()
        );
        assert!(serde_json::from_str::<Input>(r#"{"kind":"explode"}"#).is_err());
        assert!(
            serde_json::from_str::<Input>(r#"{"kind":"transport_closed","code":"x"}"#).is_err()
        );
        assert!(serde_json::from_str::<Input>(r#"{"kind":"buffered"}"#).is_err());
    }

    #[test]
    fn every_kind_is_its_serde_tag() {
        let every = [
            Input::Connect,
            Input::Disconnect,
            Input::TransportOpened,
            Input::TransportClosed {
                code: Some(1000),
                reason: String::new(),
            },
            Input::TransportLost,
            Input::TransportError {
                message: String::new(),
            },
            Input::Frame {
                text: String::new(),
            },
            Input::BinaryFrame { len: 1 },
            Input::Send(SendRequest::new("chat", Value::Null)),
            Input::Subscribe {
                pattern: "*".into(),
                project_id: None,
            },
            Input::Unsubscribe {
                id: SubscriptionId(1),
            },
            Input::Online,
            Input::Offline,
            Input::Visible,
            Input::Hidden,
            Input::StartTyping { project_id: 1 },
            Input::StopTyping { project_id: 1 },
            Input::InterruptStream {
                stream_id: "s".into(),
            },
            Input::JoinProject { project_id: 1 },
            Input::LeaveProject { project_id: 1 },
            Input::SetToken {
                token: Secret::new("t"),
                expires_at: None,
            },
            Input::RestoreOutbox {
                snapshot: Value::Null,
            },
            Input::Timeout,
            Input::Suspend { ms: 1 },
            Input::Buffered { bytes: 1 },
        ];
        for input in &every {
            let tag = serde_json::to_value(input).unwrap()["kind"].clone();
            assert_eq!(Value::from(input.kind()), tag, "{input:?}");
        }
    }

    #[test]
    fn kind_is_the_serde_tag() {
        let inputs = [
            Input::Connect,
            Input::TransportClosed {
                code: None,
                reason: String::new(),
            },
            Input::TransportLost,
            Input::Send(SendRequest::new("chat", Value::Null)),
            Input::Buffered { bytes: 3 },
            Input::InterruptStream {
                stream_id: "s".into(),
            },
        ];
        let kinds: Vec<String> = inputs.iter().map(Input::kind).collect();
        assert_eq!(
            kinds,
            [
                "connect",
                "transport_closed",
                "transport_lost",
                "send",
                "buffered",
                "interrupt_stream"
            ]
        );
        // A close without a code reads back as one (an empty close frame).
        let i: Input = serde_json::from_str(r#"{"kind":"transport_closed"}"#).unwrap();
        assert_eq!(
            i,
            Input::TransportClosed {
                code: None,
                reason: String::new()
            }
        );
    }
}

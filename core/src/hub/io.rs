//! The hub's inputs and outputs, in the canonical JSON form its traces and fuzz cases use.

use serde::{Deserialize, Serialize};

use crate::hub::Frame;
use crate::timer::Timestamp;

/// Identifies one transport (WebSocket connection) to the hub; the driver picks them, unique
/// for the hub's lifetime.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct ConnId(pub u64);

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "c{}", self.0)
    }
}

/// Something that happened to the hub: `{"kind": ..., ...}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum HubInput {
    /// A WebSocket connection finished its opening handshake.
    Accepted {
        /// The new connection.
        conn: ConnId,
    },
    /// A text frame arrived.
    Frame {
        /// From where.
        conn: ConnId,
        /// Its text.
        text: String,
    },
    /// A binary frame arrived (protocol v1 is text only).
    BinaryFrame {
        /// From where.
        conn: ConnId,
        /// Its size in bytes.
        len: usize,
    },
    /// A frame over the transport's size limit arrived (the driver did not read it whole).
    FrameTooLarge {
        /// From where.
        conn: ConnId,
    },
    /// The connection is gone (closed by either side, failed, or dropped by the driver).
    Closed {
        /// Which one.
        conn: ConnId,
    },
    /// The connection's write queue is full: its peer is not reading.
    WriteBlocked {
        /// Which one.
        conn: ConnId,
    },
    /// The hub is going down: every connection is told so.
    Shutdown,
    /// The broker has events for this hub (a remote broker's answers, another node's messages).
    BrokerReady,
    /// The driver's timer fired.
    Timeout,
}

/// What the hub asks of its driver; drain with `poll_output` until `Timeout`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum HubOutput {
    /// Send this text frame on a connection.
    Send {
        /// The connection.
        conn: ConnId,
        /// The frame (shared: a project message is encoded once for all its recipients).
        text: Frame,
    },
    /// Send a close frame with this code and reason, then end the connection.
    Close {
        /// The connection.
        conn: ConnId,
        /// WebSocket close code.
        code: u16,
        /// Close reason.
        reason: String,
    },
    /// End the connection at once, without a close frame (chaos: an abrupt drop).
    Abort {
        /// The connection.
        conn: ConnId,
    },
    /// Stop reading and writing the connection but keep it open (chaos: a half-open link);
    /// report `closed` once the driver lets it go.
    Stall {
        /// The connection.
        conn: ConnId,
    },
    /// Nothing more to do until this deadline (or any input); `None` means no deadline.
    Timeout {
        /// When to feed `timeout`.
        deadline: Option<Timestamp>,
    },
}

impl HubOutput {
    /// The connection this output is about (`None` for `timeout`).
    pub fn conn(&self) -> Option<ConnId> {
        match self {
            HubOutput::Send { conn, .. }
            | HubOutput::Close { conn, .. }
            | HubOutput::Abort { conn }
            | HubOutput::Stall { conn } => Some(*conn),
            HubOutput::Timeout { .. } => None,
        }
    }

    /// The canonical JSON object.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms_round_trip() {
        for c in [
            r#"{"kind":"accepted","conn":1}"#,
            r#"{"kind":"frame","conn":2,"text":"{}"}"#,
            r#"{"kind":"binary_frame","conn":2,"len":9}"#,
            r#"{"kind":"frame_too_large","conn":2}"#,
            r#"{"kind":"write_blocked","conn":3}"#,
            r#"{"kind":"shutdown"}"#,
            r#"{"kind":"broker_ready"}"#,
            r#"{"kind":"timeout"}"#,
        ] {
            let i: HubInput = serde_json::from_str(c).unwrap();
            assert_eq!(serde_json::to_string(&i).unwrap(), c);
        }
        assert!(serde_json::from_str::<HubInput>(r#"{"kind":"frame","conn":1}"#).is_err());
        let close = HubOutput::Close {
            conn: ConnId(4),
            code: 1001,
            reason: "bye".into(),
        };
        assert_eq!(
            close.to_json(),
            r#"{"kind":"close","conn":4,"code":1001,"reason":"bye"}"#
        );
        assert_eq!(
            HubOutput::Timeout { deadline: None }.to_json(),
            r#"{"kind":"timeout","deadline":null}"#
        );
    }
}

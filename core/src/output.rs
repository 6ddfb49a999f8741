//! What the session asks of its driver, in one canonical JSON form.

use serde::{Serialize, Serializer};

use crate::event::Event;
use crate::timer::Timestamp;

/// The next thing the driver must do; drain with `poll_output` until `Timeout`.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Output {
    /// Open a WebSocket to `url` (then report `transport_opened`, `_closed` or `_error`).
    OpenTransport {
        /// Where to connect.
        url: String,
        /// Reconnect attempt number (0 = initial connect).
        attempt: u32,
    },
    /// Send this text frame.
    Transmit {
        /// The frame.
        text: String,
    },
    /// Close the current transport with this code and reason, and report nothing more about it.
    CloseTransport {
        /// WebSocket close code.
        code: u16,
        /// Close reason.
        reason: String,
    },
    /// Tell the application.
    Event(Event),
    /// Nothing more to do until this deadline (or any input); `None` means no deadline.
    Timeout(Option<Timestamp>),
}

#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Repr<'a> {
    OpenTransport { url: &'a str, attempt: u32 },
    Transmit { text: &'a str },
    CloseTransport { code: u16, reason: &'a str },
    Timeout { deadline: Option<Timestamp> },
}

impl Serialize for Output {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Output::OpenTransport { url, attempt } => Repr::OpenTransport {
                url,
                attempt: *attempt,
            }
            .serialize(s),
            Output::Transmit { text } => Repr::Transmit { text }.serialize(s),
            Output::CloseTransport { code, reason } => Repr::CloseTransport {
                code: *code,
                reason,
            }
            .serialize(s),
            Output::Event(e) => e.serialize(s),
            Output::Timeout(deadline) => Repr::Timeout {
                deadline: *deadline,
            }
            .serialize(s),
        }
    }
}

impl Output {
    /// The canonical JSON object.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The canonical JSON object with `"at"` first, as traces and the CLI print it.
    pub fn to_json_at(&self, at: Timestamp) -> String {
        let body = self.to_json();
        format!("{{\"at\":{},{}", at.as_millis(), &body[1..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::State;

    #[test]
    fn canonical_shapes() {
        assert_eq!(
            Output::Transmit { text: "{}".into() }.to_json(),
            r#"{"kind":"transmit","text":"{}"}"#
        );
        assert_eq!(
            Output::CloseTransport {
                code: 4000,
                reason: "heartbeat timeout".into()
            }
            .to_json(),
            r#"{"kind":"close_transport","code":4000,"reason":"heartbeat timeout"}"#
        );
        assert_eq!(
            Output::Event(Event::Status {
                from: State::Connecting,
                to: State::Reconnecting,
                reason: "x".into(),
                attempt: 1
            })
            .to_json_at(Timestamp::from_millis(5)),
            r#"{"at":5,"kind":"status","from":"connecting","to":"reconnecting","reason":"x","attempt":1}"#
        );
        assert_eq!(
            Output::Event(Event::ReconnectScheduled {
                attempt: 1,
                delay_ms: 1000
            })
            .to_json(),
            r#"{"kind":"reconnect_scheduled","attempt":1,"delay_ms":1000}"#
        );
        assert_eq!(
            Output::Timeout(None).to_json(),
            r#"{"kind":"timeout","deadline":null}"#
        );
    }
}

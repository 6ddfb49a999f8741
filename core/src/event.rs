//! What the session tells the application: connection states and events.

use serde::{Deserialize, Serialize};

use crate::subscription::SubscriptionId;
use crate::timer::Timestamp;
use crate::wire::Envelope;

/// The connection lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum State {
    /// Created, never connected.
    Idle,
    /// A transport is opening or finishing the hello/welcome handshake.
    Connecting,
    /// Welcomed by the server; messages flow.
    Open,
    /// Waiting out a backoff (or for the network) before the next attempt.
    Reconnecting,
    /// The server refused the credential; waiting for a new token.
    Unauthorized,
    /// A user-initiated close is in progress.
    Closing,
    /// Stopped by the user.
    Closed,
    /// Gave up: attempts exhausted or a fatal close.
    Failed,
}

impl State {
    /// The canonical snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::Connecting => "connecting",
            State::Open => "open",
            State::Reconnecting => "reconnecting",
            State::Unauthorized => "unauthorized",
            State::Closing => "closing",
            State::Closed => "closed",
            State::Failed => "failed",
        }
    }

    /// Whether the session will do nothing more on its own in this state (`idle`, `closed`,
    /// `failed`); `unauthorized` is not terminal: it waits for a token.
    pub fn is_terminal(self) -> bool {
        matches!(self, State::Idle | State::Closed | State::Failed)
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a message left the outbox without being delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DropReason {
    /// The outbox was full.
    QueueFull,
    /// A newer message with the same coalescing key replaced it.
    Coalesced,
    /// Its time to live passed before it could be sent (or acked).
    Expired,
    /// A volatile message was sent while not connected.
    NotConnected,
    /// A volatile message was still queued when the connection was lost.
    Disconnected,
    /// The server refused it (an `error` naming its id); sending it again would not help.
    Rejected,
    /// A volatile message was sent while the transport was blocked (the peer is not reading).
    Backpressure,
}

/// Something the application should know; one canonical JSON object each (`{"kind": ...}`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// The connection state changed.
    Status {
        /// Previous state.
        from: State,
        /// New state.
        to: State,
        /// Why, in words.
        reason: String,
        /// The reconnect attempt this state belongs to (0 = the initial connect).
        attempt: u32,
    },
    /// A reconnect attempt will start after `delay_ms`.
    ReconnectScheduled {
        /// Attempt number, from 1.
        attempt: u32,
        /// The delay before it.
        delay_ms: u64,
    },
    /// The server welcomed the client: `resumed` says whether the old session continued.
    Ready {
        /// The server's session id.
        session_id: String,
        /// Whether the hub resumed the session (its agent streams and acknowledged ids).
        resumed: bool,
    },
    /// An application message for the listed subscriptions.
    Message {
        /// Matching subscriptions, ascending.
        subscriptions: Vec<SubscriptionId>,
        /// The message as received.
        message: Envelope,
    },
    /// The server acknowledged an at-least-once message.
    Acked {
        /// The message id.
        id: String,
    },
    /// A message was dropped; `reason` says why.
    Dropped {
        /// The message id.
        id: String,
        /// The message type.
        #[serde(rename = "type")]
        msg_type: String,
        /// Why it was dropped.
        reason: DropReason,
    },
    /// An at-least-once message has waited longer than `ack_timeout_ms`; it is still held.
    AckTimeout {
        /// The message id.
        id: String,
    },
    /// An inbound frame was rejected; the session carries on.
    ProtocolError {
        /// What was wrong with it.
        reason: String,
    },
    /// The server reported an error.
    ServerError {
        /// Its machine-readable code.
        code: String,
        /// Its text.
        message: String,
        /// Its retry hint, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
        /// The refused message's id, if the error is about one (it is then dropped).
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    /// The server refused the credential; call `set_token` to continue.
    TokenRequired {
        /// What the server said.
        reason: String,
    },
    /// A hole in a project's log: the offsets after `from` were skipped (or the epoch changed).
    /// The message is withheld and the project joined again from `from`, which replays the hole
    /// in order (`rejoined` follows).
    Gap {
        /// The project.
        project_id: u64,
        /// The last offset applied.
        from: u64,
        /// The offset received.
        to: u64,
    },
    /// A project was joined again from the client's position (after a reconnect or a gap): either
    /// every message since was recovered (`replayed` of them follow, in order), or not, and the
    /// project's snapshot follows instead (the gap contract: never a silent hole).
    Rejoined {
        /// The project.
        project_id: u64,
        /// Whether every message after the position follows.
        recovered: bool,
        /// How many messages the hub replays.
        replayed: u64,
        /// Why not recovered: `epoch_changed` (the log was created anew or lost), `too_old` (it no
        /// longer reaches back), `too_many` (more were missed than the hub replays), `ahead`.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// The set of remote users typing in a project changed.
    Typing {
        /// The project.
        project_id: u64,
        /// Everyone typing there now, sorted.
        users: Vec<String>,
    },
    /// An agent stream progressed.
    Stream {
        /// The stream.
        stream_id: String,
        /// What happened.
        state: StreamState,
        /// The text appended, for `delta`.
        #[serde(skip_serializing_if = "Option::is_none")]
        delta: Option<String>,
        /// Content bytes (UTF-8) assembled so far.
        len: usize,
        /// Why it failed, for `failed`.
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A joined project's sync state changed.
    Project {
        /// The project.
        project_id: u64,
        /// Its last applied version.
        version: u64,
        /// `stale` after a version gap, `synced` after a snapshot.
        state: ProjectState,
    },
    /// A joined project's member list changed.
    Presence {
        /// The project.
        project_id: u64,
        /// Everyone present, sorted.
        members: Vec<String>,
    },
    /// The transport became blocked (the driver holds more than `max_buffered_bytes` unsent) or
    /// unblocked; while blocked, the outbox holds application messages instead of sending them.
    Backpressure {
        /// Whether it is blocked now.
        blocked: bool,
        /// The unsent bytes the driver reported (0 when the transport went away).
        buffered_bytes: u64,
    },
    /// The token expires soon: call `set_token` with a fresh one.
    TokenRefreshDue {
        /// When the current token expires (driver monotonic ms).
        expires_at: Timestamp,
    },
}

/// Whether a project's state is known to be complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ProjectState {
    /// Versions were skipped; a sync was requested.
    Stale,
    /// A snapshot made the state complete.
    Synced,
}

/// Counters describing the session so far.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Text and binary frames received.
    pub frames_in: u64,
    /// Frames transmitted.
    pub frames_out: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes transmitted.
    pub bytes_out: u64,
    /// Application messages transmitted (first transmissions).
    pub messages_sent: u64,
    /// Application messages delivered to at least one subscription.
    pub messages_delivered: u64,
    /// Application messages no subscription matched.
    pub messages_unrouted: u64,
    /// Inbound duplicates withheld (by `seq` or `id`).
    pub duplicates: u64,
    /// Messages dropped, with a `dropped` event each.
    pub dropped: u64,
    /// At-least-once messages transmitted again after a reconnect.
    pub resent: u64,
    /// At-least-once messages acknowledged.
    pub acked: u64,
    /// Reconnect attempts started.
    pub reconnects: u64,
    /// Inbound frames rejected.
    pub protocol_errors: u64,
    /// Stale or duplicate project versions withheld.
    pub stale_versions: u64,
    /// The last heartbeat round trip.
    pub last_rtt_ms: Option<u64>,
    /// Application messages held in the outbox.
    pub queue_depth: usize,
    /// Bytes held in the outbox.
    pub queue_bytes: usize,
}

/// The state a stream event reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StreamState {
    /// The stream began (no content yet).
    Started,
    /// New content was appended (streaming).
    Delta,
    /// All content arrived.
    Done,
    /// The client stopped the stream.
    Interrupted,
    /// The stream failed (server error, a limit, or refusal).
    Failed,
    /// No chunk arrived for `stall_ms`.
    Stalled,
}

impl StreamState {
    /// Whether the stream has ended for good (`done`, `interrupted`, `failed`): no more events.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            StreamState::Done | StreamState::Interrupted | StreamState::Failed
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_idle_closed_and_failed_are_terminal() {
        let all = [
            State::Idle,
            State::Connecting,
            State::Open,
            State::Reconnecting,
            State::Unauthorized,
            State::Closing,
            State::Closed,
            State::Failed,
        ];
        let terminal: Vec<&str> = all
            .iter()
            .filter(|s| s.is_terminal())
            .map(|s| s.as_str())
            .collect();
        assert_eq!(terminal, ["idle", "closed", "failed"]);
    }
}

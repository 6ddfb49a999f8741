//! The one contract between the session and its feature modules, a leaf every feature imports.
//!
//! A feature (backpressure, typing, projects, streams, presence, auth) owns its state and its
//! wire parsing; it never touches the session. It says what it wants done as `Effect`s, which the
//! session applies in one place, in the order they were pushed. The session names no feature at
//! its lifecycle points: it walks `features::Features` in a fixed order.

use serde_json::Value;

use crate::event::Event;
use crate::input::SendRequest;
use crate::timer::{TimerKind, Timestamp};
use crate::wire::Envelope;

/// One thing a feature wants the session to do.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Effect {
    /// Emit this event to the application.
    Emit(Event),
    /// Send this volatile application message, only while open: it is never queued, and while not
    /// open it is skipped silently (a stale indicator is worth nothing later).
    Volatile(SendRequest),
    /// Send this session frame now if nothing waits and the rate allows, else queue it ahead of
    /// application messages (only while open).
    Send(SessionFrame),
    /// Queue this session frame ahead of application messages (re-sends after a welcome, which
    /// the session flushes once every feature has queued its own).
    Queue(SessionFrame),
    /// Count a duplicate message.
    Duplicate,
    /// Count a stale project version.
    Stale,
    /// Report a protocol error.
    ProtocolError(String),
    /// Abandon the transport: close it with 4000 `close_reason`, then reconnect as for any loss.
    Abandon {
        /// The reason in the close frame.
        close_reason: &'static str,
        /// What the status change says.
        why: String,
    },
}

/// A frame the session derives from a feature's state (re-joins, resumes, sync requests).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct SessionFrame {
    /// The frame's `type`.
    pub(crate) msg_type: &'static str,
    /// The frame's `data`.
    pub(crate) data: Value,
    /// The frame's `projectId`.
    pub(crate) project_id: Option<u64>,
}

/// What a feature wants done, in order.
pub(crate) type Effects = Vec<Effect>;

/// Whether an inbound application message reaches the application.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Route it to the subscriptions.
    Deliver,
    /// Keep it from the application (a duplicate or a stale version).
    Withhold,
}

/// The hooks a feature module offers the session; every one defaults to doing nothing.
pub(crate) trait Feature {
    /// The timer this feature's deadline runs under, if it has one.
    fn timer(&self) -> Option<TimerKind> {
        None
    }

    /// When this feature next needs `on_timer`.
    fn due_at(&self) -> Option<Timestamp> {
        None
    }

    /// Handles this feature's timer falling due at `now`.
    fn on_timer(&mut self, _now: Timestamp, _fx: &mut Effects) {}

    /// Sees an inbound application message (already sequenced and deduplicated).
    fn on_message(&mut self, _now: Timestamp, _env: &Envelope, _fx: &mut Effects) -> Verdict {
        Verdict::Deliver
    }

    /// The transport went away: drop what belonged to it.
    fn on_link_down(&mut self, _fx: &mut Effects) {}

    /// A welcome arrived: queue what the server must hear again on the new link.
    fn on_welcome(&mut self, _now: Timestamp, _fx: &mut Effects) {}
}

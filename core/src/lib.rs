//! `sockline-core`: a deterministic, sans-IO WebSocket client session.
//!
//! The session never touches a socket, a clock or an entropy source. Drivers feed it inputs
//! (user commands, transport events, frames, the current monotonic time) and drain its outputs
//! (`open_transport`, `transmit`, `close_transport`, events) until `Output::Timeout` names the next
//! deadline. The same inputs always give the same outputs, so sessions replay from traces.
//!
//! ```
//! use sockline_core::{Config, Output, Session, Timestamp};
//! let mut s = Session::new(Config::new("ws://127.0.0.1:9/ws"), 7, Timestamp::ZERO).unwrap();
//! s.connect(Timestamp::ZERO).unwrap();
//! assert!(matches!(s.poll_output(), Output::OpenTransport { attempt: 0, .. }));
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod auth;
pub mod backoff;
mod backpressure;
pub mod close;
pub mod config;
mod dedupe;
pub mod error;
pub mod event;
mod feature;
mod heartbeat;
pub mod hub;
pub mod input;
pub mod outbox;
pub mod output;
mod presence;
mod project;
mod ratelimit;
mod reconnect;
mod resume;
pub mod rng;
pub mod router;
mod session;
mod stream;
#[cfg(feature = "testing")]
pub mod testing;
pub mod timer;
pub mod trace;
mod typing;
pub mod wire;

pub use config::{
    Config, HeartbeatConfig, Jitter, OutboxConfig, Overflow, RateLimitConfig, ReconnectConfig,
    Secret,
};
pub use error::{ConfigError, SessionError};
pub use event::{DropReason, Event, ProjectState, State, Stats};
pub use input::{Input, Outcome, SendRequest};
pub use outbox::Delivery;
pub use outbox::{OutboxSnapshot, SnapshotMessage};
pub use output::Output;
pub use router::{Pattern, SubscriptionId};
pub use session::{Session, MAX_PROJECTS};
pub use stream::StreamState;
pub use timer::{Deadline, TimerKind, Timestamp};
pub use trace::{replay, TimedInput, Trace, TraceError};
pub use wire::Envelope;

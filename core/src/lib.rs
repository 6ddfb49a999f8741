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
mod backoff;
mod backpressure;
pub mod close;
mod config;
mod dedupe;
mod error;
mod event;
mod feature;
mod features;
mod heartbeat;
pub mod hub;
mod input;
mod outbox;
mod output;
mod presence;
mod project;
mod ratelimit;
mod reconnect;
mod replay;

mod rng;
mod router;
mod session;
mod stream;
mod subscription;
#[cfg(feature = "testing")]
pub mod testing;
mod timer;
mod trace;
mod typing;
mod weburl;
mod wire;

pub use config::{
    Config, HeartbeatConfig, Jitter, OutboxConfig, Overflow, RateLimitConfig, ReconnectConfig,
    Secret, StreamsConfig, TypingConfig,
};
pub use error::{ConfigError, SessionError};
pub use event::{DropReason, Event, ProjectState, State, Stats, StreamState};
pub use input::{Input, Outcome, SendRequest};
pub use outbox::Delivery;
pub use outbox::{OutboxSnapshot, SnapshotMessage};
pub use output::Output;
pub use replay::{replay, replay_text};
pub use router::Pattern;
pub use session::{Session, MAX_PROJECTS};
pub use subscription::SubscriptionId;
pub use timer::{Deadline, TimerKind, Timestamp};
pub use trace::{TimedInput, Trace, TraceError};
pub use weburl::{set_url_parser, UrlParser, UrlParts};
pub use wire::{Envelope, WireError, PROTOCOL_VERSION};

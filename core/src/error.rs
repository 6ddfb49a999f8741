//! Typed errors: bad configuration, and misuse of the session's commands.

use crate::event::State;
use crate::subscription::SubscriptionId;

/// A configuration value was missing, malformed or out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A field holds a value the session cannot work with.
    #[error("invalid config `{field}`: {reason}")]
    Invalid {
        /// The dotted path of the offending key, e.g. `reconnect.factor`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The configuration text is not the canonical JSON form.
    #[error("invalid config JSON: {0}")]
    Parse(String),
}

impl ConfigError {
    pub(crate) fn invalid(field: &str, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            field: field.to_string(),
            reason: reason.into(),
        }
    }

    /// The offending key, when the error names one.
    pub fn field(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { field, .. } => Some(field),
            ConfigError::Parse(_) => None,
        }
    }
}

/// A user command could not be carried out; the session is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// `connect` was called while a connection is already in progress or open.
    #[error("session is already {state}; call disconnect first")]
    AlreadyActive {
        /// The state the session is in.
        state: State,
    },
    /// The message type is empty, too long or has characters outside `[A-Za-z0-9_.:-]`.
    #[error("invalid message type {0:?}: use 1-64 characters from [A-Za-z0-9_.:-]")]
    InvalidType(String),
    /// The message type belongs to the protocol's control messages.
    #[error("message type `{0}` is reserved for the protocol")]
    ReservedType(String),
    /// A caller-chosen message id or coalescing key is empty or longer than 128 bytes.
    #[error("invalid {what} {value:?}: must be 1-128 bytes")]
    InvalidKey {
        /// Which field (`id` or `coalesce`).
        what: &'static str,
        /// The rejected value (truncated).
        value: String,
    },
    /// A message with this id is already held in the outbox.
    #[error("a message with id {0:?} is already queued or awaiting its ack")]
    DuplicateId(String),
    /// The encoded message is larger than a frame or the whole outbox may be.
    #[error("message of {bytes} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Size of the encoded frame.
        bytes: usize,
        /// The limit it exceeds.
        max: usize,
    },
    /// The outbox is full and its overflow policy is `reject`.
    #[error("outbox full ({messages} messages, {bytes} bytes queued); message rejected")]
    QueueFull {
        /// Messages held.
        messages: usize,
        /// Bytes held.
        bytes: usize,
    },
    /// The subscription pattern is not an exact type, a prefix ending in `*`, or `*`.
    #[error("invalid subscription pattern {pattern:?}: {reason}")]
    InvalidPattern {
        /// The rejected pattern.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No subscription has this id (never issued, or already removed).
    #[error("no subscription with id {0}")]
    UnknownSubscription(SubscriptionId),
    /// Typing indicators need the local user's id (`user_id` in the config).
    #[error("typing indicators need `user_id` in the config")]
    NoUserId,
    /// No agent stream has this id.
    #[error("no agent stream with id {0:?}")]
    UnknownStream(String),
    /// The agent stream already finished.
    #[error("agent stream {0:?} has already finished")]
    StreamFinished(String),
    /// The session already follows the most projects it may.
    #[error("cannot join more than {max} projects")]
    TooManyProjects {
        /// The limit.
        max: usize,
    },
    /// The token is empty or too long.
    #[error("invalid token: {0}")]
    InvalidToken(String),
    /// An outbox snapshot is malformed, oversized or conflicts with what is held.
    #[error("invalid outbox snapshot: {0}")]
    InvalidSnapshot(String),
}

impl SessionError {
    /// A stable snake_case code for bindings and the canonical JSON form.
    pub fn code(&self) -> &'static str {
        match self {
            SessionError::AlreadyActive { .. } => "already_active",
            SessionError::InvalidType(_) => "invalid_type",
            SessionError::ReservedType(_) => "reserved_type",
            SessionError::InvalidKey { .. } => "invalid_key",
            SessionError::DuplicateId(_) => "duplicate_id",
            SessionError::TooLarge { .. } => "too_large",
            SessionError::QueueFull { .. } => "queue_full",
            SessionError::InvalidPattern { .. } => "invalid_pattern",
            SessionError::UnknownSubscription(_) => "unknown_subscription",
            SessionError::NoUserId => "no_user_id",
            SessionError::UnknownStream(_) => "unknown_stream",
            SessionError::StreamFinished(_) => "stream_finished",
            SessionError::TooManyProjects { .. } => "too_many_projects",
            SessionError::InvalidToken(_) => "invalid_token",
            SessionError::InvalidSnapshot(_) => "invalid_snapshot",
        }
    }
}

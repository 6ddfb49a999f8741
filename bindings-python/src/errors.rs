//! The Python exceptions: one class per core `SessionError` code under `SessionError`, plus
//! `ConfigError` (a `ValueError`) and `TraceError` (a `ValueError`).

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyTypeError, PyValueError};
use pyo3::prelude::*;
use sockline_core::{ConfigError as CoreConfigError, SessionError as CoreSessionError};

create_exception!(
    _sockline,
    SessionError,
    PyException,
    "A session command was refused; the session is unchanged. `code` is the core's stable code."
);
create_exception!(
    _sockline,
    ConfigError,
    PyValueError,
    "A configuration key has a bad value; `key` names it (dotted, e.g. `reconnect.factor`)."
);
create_exception!(
    _sockline,
    TraceError,
    PyValueError,
    "A trace is not in the canonical form or its config is invalid."
);

macro_rules! session_errors {
    ($($name:ident => $code:literal, $doc:literal;)*) => {
        $(create_exception!(_sockline, $name, SessionError, $doc);)*

        /// Registers every `SessionError` subclass in the module.
        pub fn register_session_errors(m: &Bound<'_, PyModule>) -> PyResult<()> {
            let py = m.py();
            $(m.add(stringify!($name), py.get_type::<$name>())?;)*
            Ok(())
        }

        /// The Python exception for a core session error, with `code` set.
        pub fn session_error(py: Python<'_>, e: &CoreSessionError) -> PyErr {
            let msg = e.to_string();
            let err = match e.code() {
                $($code => $name::new_err(msg),)*
                _ => SessionError::new_err(msg),
            };
            let _ = err.value(py).setattr("code", e.code());
            err
        }
    };
}

session_errors! {
    AlreadyActiveError => "already_active", "`connect` while a connection is in progress or open.";
    InvalidTypeError => "invalid_type", "The message type is empty, too long or has characters outside [A-Za-z0-9_.:-].";
    ReservedTypeError => "reserved_type", "The message type is a protocol control type.";
    InvalidKeyError => "invalid_key", "A message id or coalescing key is empty or longer than 128 bytes.";
    DuplicateIdError => "duplicate_id", "A message with this id is already queued or awaiting its ack.";
    TooLargeError => "too_large", "The encoded message exceeds the frame or outbox limit.";
    QueueFullError => "queue_full", "The outbox is full and its overflow policy is `reject`.";
    InvalidPatternError => "invalid_pattern", "The subscription pattern is not `type`, `prefix*` or `*`.";
    UnknownSubscriptionError => "unknown_subscription", "No subscription has this id.";
    NoUserIdError => "no_user_id", "Typing indicators need `user_id` in the config.";
    UnknownStreamError => "unknown_stream", "No agent stream has this id.";
    StreamFinishedError => "stream_finished", "The agent stream already finished.";
    TooManyProjectsError => "too_many_projects", "The session already follows the most projects it may.";
    InvalidTokenError => "invalid_token", "The token is empty or too long.";
    InvalidSnapshotError => "invalid_snapshot", "An outbox snapshot is malformed, oversized or conflicts with what is held.";
}

/// The Python exception for a core config error: `ConfigError` (a `ValueError`) with `key` set.
pub fn config_error(py: Python<'_>, e: &CoreConfigError) -> PyErr {
    let err = ConfigError::new_err(e.to_string());
    let _ = err.value(py).setattr("key", e.field());
    err
}

/// A `ConfigError` naming `key` with `message`.
pub fn config_key_error(py: Python<'_>, key: &str, message: String) -> PyErr {
    let err = ConfigError::new_err(message);
    let _ = err.value(py).setattr("key", key);
    err
}

/// A `TypeError` naming a config key.
pub fn config_type_error(key: &str, message: String) -> PyErr {
    PyTypeError::new_err(format!("config key `{key}`: {message}"))
}

"""sockline: a deterministic, sans-IO WebSocket session for QA scripts and test harnesses.

The heart is ``sockline-core`` (Rust). :class:`Session` wraps one core session: feed it inputs
(user commands, transport events, received frames) with the current monotonic time in
milliseconds, then drain its outputs -- dicts in the canonical JSON form of
``docs/session-json.md`` (``{"kind": "open_transport", ...}``, ``{"kind": "transmit", ...}``,
events such as ``{"kind": "status", ...}``) -- until it names the next deadline
(:meth:`Session.poll_timeout`). Every decision (retry, drop, resend, expire) is the core's; this
package only converts types.

* :class:`Session` -- the core session; config keys are keyword arguments.
* :class:`Trace` -- recorded sessions; ``trace.replay()`` prints what ``sockline replay`` prints.
* :mod:`sockline.testing` -- ``VirtualClock``, ``ScriptedServer`` and ``Harness``: deterministic
  scenarios on virtual time, no sleeping.
* :mod:`sockline.aio` -- ``Client``, a thin asyncio driver over a real WebSocket (``websockets``).

Config keywords
    A top-level key (``user_id="ann"``, ``max_frame_bytes=65536``), a section as a dict merged
    onto its defaults (``reconnect={"initial_ms": 100, "jitter": "none"}``), a section key
    flattened with an underscore (``reconnect_initial_ms=100``, ``outbox_overflow="reject"``), or
    a dotted path (``**{"heartbeat.interval_ms": 5000}``). An unknown key or a bad value raises
    :class:`ConfigError` (a ``ValueError``) whose ``key`` names the offending key; a value of the
    wrong Python type raises ``TypeError`` naming it.

Errors
    A refused command raises a :class:`SessionError` subclass (``QueueFullError``,
    ``InvalidTypeError``, ...) with ``code`` set to the core's stable code; the session is
    unchanged. Transport, host and timer inputs never fail. Arguments of the wrong type raise
    ``TypeError``; negative times raise ``OverflowError``.

Threading model
    Every class is safe to share between threads. A ``Session`` (and a ``Harness``) holds its core
    state behind one lock: calls on the same instance are serialized and each call sees and
    leaves a consistent session (there is no "Already borrowed" error). The GIL is released while
    a call waits for that lock, while the core handles a frame of 64 KiB or more (or a
    ``frame_many`` batch that large), and while a trace replays, so other Python threads keep
    running. Outputs are queued inside the session: with several threads feeding one session,
    whichever thread drains gets the outputs, in order. ``Trace`` is immutable.
"""

from ._sockline import (
    AlreadyActiveError,
    ConfigError,
    DuplicateIdError,
    InvalidKeyError,
    InvalidPatternError,
    InvalidSnapshotError,
    InvalidTokenError,
    InvalidTypeError,
    NoUserIdError,
    QueueFullError,
    ReservedTypeError,
    Session,
    SessionError,
    StreamFinishedError,
    TooLargeError,
    TooManyProjectsError,
    Trace,
    TraceError,
    UnknownStreamError,
    UnknownSubscriptionError,
    __version__,
    is_final_stream_state,
    is_terminal_state,
)

__all__ = [
    "AlreadyActiveError",
    "ConfigError",
    "DuplicateIdError",
    "InvalidKeyError",
    "InvalidPatternError",
    "InvalidSnapshotError",
    "InvalidTokenError",
    "InvalidTypeError",
    "NoUserIdError",
    "QueueFullError",
    "ReservedTypeError",
    "Session",
    "SessionError",
    "StreamFinishedError",
    "TooLargeError",
    "TooManyProjectsError",
    "Trace",
    "TraceError",
    "UnknownStreamError",
    "UnknownSubscriptionError",
    "__version__",
    "is_final_stream_state",
    "is_terminal_state",
]

"""Type stubs for the compiled extension ``sockline._sockline`` (see the package docstring)."""

from os import PathLike
from collections.abc import Callable, Sequence
from typing import Any, Literal, Self, final

__all__ = [
    "AlreadyActiveError",
    "ConfigError",
    "DuplicateIdError",
    "Harness",
    "InvalidKeyError",
    "InvalidPatternError",
    "InvalidSnapshotError",
    "InvalidTokenError",
    "InvalidTypeError",
    "Network",
    "NoUserIdError",
    "QueueFullError",
    "ReservedTypeError",
    "ScriptedServer",
    "Session",
    "SessionError",
    "StreamFinishedError",
    "TooLargeError",
    "TooManyProjectsError",
    "Trace",
    "TraceError",
    "UnknownStreamError",
    "UnknownSubscriptionError",
    "VirtualClock",
    "__version__",
    "is_final_stream_state",
    "is_terminal_state",
]
__version__: str

_Delivery = Literal["volatile", "at_most_once", "at_least_once"]
_AcceptMode = Literal["open", "refuse", "hang"]

class SessionError(Exception):
    """A session command was refused; the session is unchanged."""

    code: str
    """The core's stable snake_case code, e.g. ``queue_full``."""

class AlreadyActiveError(SessionError):
    """``connect`` while connecting, open, closing or unauthorized (while reconnecting it opens the waiting attempt now)."""

class InvalidTypeError(SessionError):
    """The message type is empty, too long or has characters outside [A-Za-z0-9_.:-]."""

class ReservedTypeError(SessionError):
    """The message type is a protocol control type."""

class InvalidKeyError(SessionError):
    """A message id or coalescing key is empty or longer than 128 bytes."""

class DuplicateIdError(SessionError):
    """A message with this id is already queued or awaiting its ack."""

class TooLargeError(SessionError):
    """The encoded message exceeds the frame or outbox limit."""

class QueueFullError(SessionError):
    """The outbox is full and its overflow policy is ``reject``."""

class InvalidPatternError(SessionError):
    """The subscription pattern is not ``type``, ``prefix*`` or ``*``."""

class UnknownSubscriptionError(SessionError):
    """No subscription has this id."""

class NoUserIdError(SessionError):
    """Typing indicators need ``user_id`` in the config."""

class UnknownStreamError(SessionError):
    """No agent stream has this id."""

class StreamFinishedError(SessionError):
    """The agent stream already finished."""

class TooManyProjectsError(SessionError):
    """The session already follows the most projects it may."""

class InvalidTokenError(SessionError):
    """The token is empty or too long."""

class InvalidSnapshotError(SessionError):
    """An outbox snapshot is malformed, oversized or conflicts with what is held."""

class ConfigError(ValueError):
    """A configuration key has a bad value."""

    key: str | None
    """The offending key, dotted (``reconnect.factor``)."""

class TraceError(ValueError):
    """A trace is not in the canonical form or its config is invalid."""

@final
class Session:
    """The core session; every input method takes ``now_ms`` (monotonic milliseconds)."""

    def __new__(
        cls,
        url: str | Sequence[str],
        *,
        seed: int = 0,
        now_ms: int = 0,
        record: bool = False,
        **config: Any,
    ) -> Self:
        """Creates an idle session; config keys are keyword arguments."""
    def connect(self, now_ms: int) -> None:
        """Opens the connection (from idle, closed or failed); while reconnecting, opens the waiting attempt now."""
    def disconnect(self, now_ms: int) -> None:
        """Closes for good (code 1000)."""
    def send(
        self,
        now_ms: int,
        type: str,
        data: Any = None,
        *,
        project_id: int | None = None,
        delivery: _Delivery = "at_most_once",
        ttl_ms: int | None = None,
        coalesce: str | None = None,
        id: str | None = None,
        unix_ms: int | None = None,
    ) -> str:
        """Sends (or queues) an application message; returns its id."""
    def subscribe(self, now_ms: int, pattern: str, project_id: int | None = None) -> int:
        """Subscribes to ``type``, ``prefix*`` or ``*``; returns the subscription id."""
    def unsubscribe(self, now_ms: int, id: int) -> None:
        """Removes a subscription."""
    def start_typing(self, now_ms: int, project_id: int) -> None:
        """The local user is typing in ``project_id``."""
    def stop_typing(self, now_ms: int, project_id: int) -> None:
        """The local user stopped typing."""
    def interrupt_stream(self, now_ms: int, stream_id: str) -> None:
        """Stops an agent stream."""
    def join_project(self, now_ms: int, project_id: int) -> None:
        """Joins a project."""
    def leave_project(self, now_ms: int, project_id: int) -> None:
        """Leaves a project."""
    def set_token(self, now_ms: int, token: str, expires_at: int | None = None) -> None:
        """Replaces the token."""
    def online(self, now_ms: int) -> None:
        """The host regained connectivity."""
    def offline(self, now_ms: int) -> None:
        """The host lost connectivity."""
    def visible(self, now_ms: int) -> None:
        """The page became visible."""
    def hidden(self, now_ms: int) -> None:
        """The page was hidden."""
    def suspend(self, now_ms: int, ms: int) -> None:
        """The host slept ``ms``."""
    def transport_opened(self, now_ms: int) -> None:
        """The transport opened."""
    def transport_closed(self, now_ms: int, code: int | None = None, reason: str = "") -> None:
        """A close frame arrived (``code`` None: a frame without one, named 1005)."""
    def transport_lost(self, now_ms: int) -> None:
        """The transport ended without any close frame (EOF or reset), named 1006."""
    def buffered(self, now_ms: int, bytes: int) -> None:
        """The driver holds ``bytes`` of transmitted frames unsent."""
    def should_report_buffered(self, bytes: int) -> bool:
        """Whether the driver should feed ``buffered(bytes)`` now."""
    @property
    def is_blocked(self) -> bool:
        """Whether the current transport is blocked (the peer is not reading)."""
    def transport_error(self, now_ms: int, message: str = "") -> None:
        """The transport failed."""
    def frame(self, now_ms: int, text: str) -> None:
        """A text frame arrived."""
    def frame_many(self, now_ms: int, texts: list[str]) -> None:
        """Several text frames arrived, in order."""
    def binary_frame(self, now_ms: int, data: bytes | bytearray | memoryview | int) -> None:
        """A binary frame arrived (bytes-like or its length)."""
    def handle_timeout(self, now_ms: int) -> None:
        """Fires every timer due at ``now_ms``."""
    def handle_input(self, now_ms: int, input: dict[str, Any] | str) -> str | int | None:
        """Applies an input in its canonical JSON form."""
    def poll_output(self) -> dict[str, Any]:
        """The next output dict (``{"kind": "timeout", ...}`` when idle)."""
    def drain(self) -> list[dict[str, Any]]:
        """Every output up to the next timeout."""
    def drain_json(self) -> list[str]:
        """Like ``drain``, each output as its canonical JSON text."""
    def poll_timeout(self) -> int | None:
        """The next deadline in ms, or None."""
    def next_deadline(self) -> dict[str, Any] | None:
        """The next deadline and its timer, or None."""
    @property
    def state(self) -> str:
        """The connection state."""
    @property
    def stats(self) -> dict[str, Any]:
        """Counters so far."""
    @property
    def config(self) -> dict[str, Any]:
        """The configuration in use (token redacted)."""
    @property
    def subscription_count(self) -> int:
        """Number of live subscriptions."""
    def stream_content(self, stream_id: str) -> str | None:
        """The text of an agent stream so far."""
    def stream_state(self, stream_id: str) -> str | None:
        """The state of an agent stream."""
    def typing_users(self, project_id: int) -> list[str]:
        """Users typing in ``project_id``, sorted."""
    def presence(self, project_id: int) -> list[str]:
        """Members present in a joined project, sorted."""
    def project_version(self, project_id: int) -> int | None:
        """The last version applied for a joined project."""
    def snapshot_outbox(self) -> dict[str, Any]:
        """The queued and unacknowledged messages."""
    def restore_outbox(self, now_ms: int, snapshot: dict[str, Any] | str) -> int:
        """Puts back a snapshot; returns how many messages."""
    def trace(self) -> Trace | None:
        """The recorded trace (``record=True``), or None."""

@final
class Trace:
    """A replayable trace."""

    @staticmethod
    def load(path: str | PathLike[str]) -> Trace:
        """Reads a trace file."""
    @staticmethod
    def from_json(text: str) -> Trace:
        """Parses a trace's JSON text."""
    def save(self, path: str | PathLike[str]) -> None:
        """Writes the canonical JSON to ``path``."""
    def to_json(self) -> str:
        """The canonical JSON text."""
    def replay(self) -> list[str]:
        """The lines ``sockline replay`` prints for this trace."""
    @property
    def config(self) -> dict[str, Any]:
        """The config."""
    @property
    def seed(self) -> int:
        """The PRNG seed."""
    @property
    def inputs(self) -> list[dict[str, Any]]:
        """The timed inputs."""
    def __len__(self) -> int: ...

@final
class VirtualClock:
    """A clock that moves only when told to."""

    def __new__(cls, start_ms: int = 0) -> Self:
        """A standalone clock starting at ``start_ms``."""
    @property
    def now_ms(self) -> int:
        """The current virtual time."""
    def advance(self, ms: int) -> int:
        """Moves forward ``ms``; returns the new time."""

@final
class ScriptedServer:
    """A scripted protocol-v1 server."""

    def __new__(
        cls,
        *,
        auto_welcome: bool = True,
        auto_pong: bool = True,
        auto_ack: bool = True,
        latency_ms: int = 0,
    ) -> Self:
        """A server that opens every transport and answers like the hub."""
    def set_accept(self, mode: _AcceptMode, code: int = 1013, reason: str = "") -> None:
        """How new transports are answered."""
    @property
    def accept(self) -> _AcceptMode:
        """The current accept mode."""
    auto_welcome: bool
    auto_pong: bool
    auto_ack: bool
    latency_ms: int
    @property
    def received(self) -> list[dict[str, Any]]:
        """Every frame the client sent, as envelope dicts."""
    @property
    def received_app(self) -> list[dict[str, Any]]:
        """Application messages the client sent."""
    @property
    def opens(self) -> int:
        """How many transports the client asked for."""
    def forget_sessions(self) -> None:
        """Forgets every session (the next hello cannot resume)."""

@final
class Harness:
    """Drives a Session against a ScriptedServer on a virtual clock."""

    def __new__(
        cls,
        url: str | Sequence[str] = "ws://scripted.test/ws",
        *,
        seed: int = 0,
        server: ScriptedServer | None = None,
        record: bool = False,
        **config: Any,
    ) -> Self:
        """A harness at virtual time 0."""
    @property
    def server(self) -> ScriptedServer:
        """The scripted server."""
    @property
    def clock(self) -> VirtualClock:
        """The harness's virtual clock."""
    @property
    def now_ms(self) -> int:
        """The virtual time."""
    def advance(self, ms: int) -> None:
        """Advances virtual time, delivering frames and firing deadlines."""
    @property
    def state(self) -> str:
        """The session's state."""
    def connect(self) -> None:
        """Calls ``connect``."""
    def disconnect(self) -> None:
        """Calls ``disconnect``."""
    def send(
        self,
        type: str,
        data: Any = None,
        *,
        project_id: int | None = None,
        delivery: _Delivery = "at_most_once",
        ttl_ms: int | None = None,
        coalesce: str | None = None,
        id: str | None = None,
        unix_ms: int | None = None,
    ) -> str:
        """Sends at the current time; returns the id."""
    def subscribe(self, pattern: str, project_id: int | None = None) -> int:
        """Subscribes; returns the id."""
    def unsubscribe(self, id: int) -> None:
        """Removes a subscription."""
    def start_typing(self, project_id: int) -> None:
        """The local user is typing."""
    def stop_typing(self, project_id: int) -> None:
        """The local user stopped typing."""
    def interrupt_stream(self, stream_id: str) -> None:
        """Stops an agent stream."""
    def join_project(self, project_id: int) -> None:
        """Joins a project."""
    def leave_project(self, project_id: int) -> None:
        """Leaves a project."""
    def set_token(self, token: str, expires_at: int | None = None) -> None:
        """Replaces the token."""
    def online(self) -> None:
        """The host regained connectivity."""
    def offline(self) -> None:
        """The host lost connectivity."""
    def visible(self) -> None:
        """The page became visible."""
    def hidden(self) -> None:
        """The page was hidden."""
    def transport_error(self, message: str = "connection reset") -> None:
        """The client's transport fails."""
    def binary_frame(self, data: bytes | bytearray | memoryview | int) -> None:
        """A binary frame reaches the session."""
    def handle_input(self, input: dict[str, Any] | str) -> str | int | None:
        """Applies any input at the current time."""
    def restore_outbox(self, snapshot: dict[str, Any] | str) -> int:
        """Puts back an outbox snapshot."""
    def push(self, type: str, data: Any = None, project_id: int | None = None) -> None:
        """The server pushes a numbered application message."""
    def inject(self, text: str, delay_ms: int = 0) -> None:
        """The server sends a raw frame, now or later."""
    def server_close(self, code: int = 1006, reason: str = "", delay_ms: int = 0) -> None:
        """The server closes the transport, now or later."""
    def suspend(self, ms: int) -> None:
        """The host sleeps ``ms``."""
    @property
    def log(self) -> list[dict[str, Any]]:
        """Every output so far, with ``"at"`` first."""
    def take_log(self) -> list[dict[str, Any]]:
        """Returns the log and empties it."""
    @property
    def events(self) -> list[dict[str, Any]]:
        """Events so far."""
    @property
    def transmitted(self) -> list[str]:
        """Frames the session transmitted."""
    @property
    def stats(self) -> dict[str, Any]:
        """The session's counters."""
    def poll_timeout(self) -> int | None:
        """The next deadline."""
    def next_deadline(self) -> dict[str, Any] | None:
        """The next deadline and its timer."""
    def stream_content(self, stream_id: str) -> str | None:
        """The text of an agent stream."""
    def stream_state(self, stream_id: str) -> str | None:
        """The state of an agent stream."""
    def typing_users(self, project_id: int) -> list[str]:
        """Users typing in ``project_id``."""
    def presence(self, project_id: int) -> list[str]:
        """Members present in ``project_id``."""
    def project_version(self, project_id: int) -> int | None:
        """The last version applied."""
    def snapshot_outbox(self) -> dict[str, Any]:
        """The outbox snapshot."""
    def trace(self) -> Trace | None:
        """The recorded trace, or None."""

@final
class Network:
    """Client sessions and the real hub core on in-memory links, in virtual time."""

    def __new__(
        cls,
        *,
        seed: int = 0,
        latency_ms: int = 5,
        agent_chunks: int | None = ...,
        agent_chunk_ms: int = 50,
        token: str | None = None,
        replay_capacity: int = 1024,
        session_ttl_ms: int = 300_000,
        hello_timeout_ms: int = 10_000,
        idle_timeout_ms: int = 120_000,
        max_frame_bytes: int = 1 << 20,
        rate_limit: str | tuple[int, int] | None = None,
        restart_retry_after_ms: int = 0,
        restart_spread_ms: int = 3_000,
        limits: dict[str, int] | None = None,
        token_warning_ms: int = 60_000,
    ) -> Network:
        """A hub with these settings and no clients; a restart tells each client to reconnect
        ``restart_retry_after_ms`` plus a uniform draw over ``restart_spread_ms`` after it (both 0:
        no hint). ``limits`` takes the hub's limit keys (``max_connections_per_user``,
        ``max_projects_per_connection``, ``user_messages_per_sec``, ``user_burst``,
        ``max_hello_bytes``, ``max_user_id_bytes``, ``max_streams_per_connection``); an unknown
        key raises ``ValueError``."""
    def add_client(self, url: str | Sequence[str] = "ws://hub.test/ws", **config: Any) -> int:
        """Adds an idle client; returns its number."""
    @property
    def now_ms(self) -> int:
        """The virtual time in ms."""
    def advance(self, ms: int) -> None:
        """Runs ``ms`` of virtual time."""
    def until(self, predicate: Callable[[Network], bool], max_ms: int) -> int:
        """Runs until ``predicate(network)``; raises ``TimeoutError`` after ``max_ms``."""
    def handle_input(self, client: int, input: dict[str, Any] | str) -> Any:
        """Applies a session input in canonical JSON form to a client."""
    def connect(self, client: int) -> None:
        """Connects a client."""
    def disconnect(self, client: int) -> None:
        """Closes a client."""
    def send(
        self,
        client: int,
        type: str,
        data: Any = None,
        *,
        project_id: int | None = None,
        delivery: str = "at_most_once",
        ttl_ms: int | None = None,
        coalesce: str | None = None,
        id: str | None = None,
        unix_ms: int | None = None,
    ) -> str:
        """A client sends an application message; returns its id."""
    def subscribe(self, client: int, pattern: str, project_id: int | None = None) -> int:
        """A client subscribes; returns the subscription id."""
    def join_project(self, client: int, project_id: int) -> None:
        """A client joins a project."""
    def state(self, client: int) -> str:
        """A client's connection state."""
    def log(self, client: int) -> list[dict[str, Any]]:
        """A client's outputs so far, with ``"at"`` first."""
    def events(self, client: int) -> list[dict[str, Any]]:
        """A client's events so far."""
    def messages(self, client: int) -> list[dict[str, Any]]:
        """Messages a client's subscriptions received."""
    def stats(self, client: int) -> dict[str, Any]:
        """A client's counters."""
    def typing_users(self, client: int, project_id: int) -> list[str]:
        """Users typing in a project, as a client sees them."""
    def stream_content(self, client: int, stream_id: str) -> str | None:
        """The text of an agent stream a client received."""
    def drop_link(self, client: int) -> None:
        """Cuts a client's link without a close frame."""
    def stall_link(self, client: int) -> None:
        """Makes a client's link half-open."""
    def restart_hub(self, *, keep_state: bool = True, down_ms: int = 0) -> None:
        """Restarts the hub."""
    def set_faults(self, *, drop: float = 0.0, delay_ms: int = 0, corrupt: float = 0.0) -> None:
        """Seeded faults on every frame from now on."""
    @property
    def hub_relayed(self) -> int:
        """Application messages the hub delivered so far."""

def is_terminal_state(name: str) -> bool:
    """Whether the session does nothing more on its own in connection state ``name``."""

def is_final_stream_state(name: str) -> bool:
    """Whether stream state ``name`` ends the stream (done, interrupted, failed)."""

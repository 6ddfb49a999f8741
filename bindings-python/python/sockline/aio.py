"""A thin asyncio driver: one :class:`sockline.Session` over a real WebSocket (``websockets``).

The session decides everything -- when to connect, retry, ping, resend, drop, stop flushing or
give up. This driver only moves bytes and time: it opens a socket on ``open_transport``, writes
``transmit`` frames, closes on ``close_transport``, and reports what it saw: received frames, how
a transport ended (a close frame with or without a code, ``transport_lost`` without any, an error
with its text), the bytes it holds unsent when :meth:`Session.should_report_buffered` asks for
them, and the time, calling :meth:`Session.handle_timeout` only when a deadline is due. For the
same transport history it feeds the same inputs as the tokio client. It offers what the tokio
client offers: ``state`` / :meth:`Client.wait_for_state`, :meth:`Client.subscribe` (async
iterators of messages), :meth:`Client.send`, typing, :meth:`Client.stream` (async iterator of
deltas), projects and presence, :meth:`Client.outputs`, :meth:`Client.trace` and a graceful
:meth:`Client.close`.

Commands (``send``, ``subscribe``, ``join_project``, ...) are plain methods: they apply to the
local session at once (raising :class:`sockline.SessionError` subclasses when refused) and the
network work happens on the driver's task. Call them from the event loop's thread. The session
itself is not handed out: only the driver feeds it, so every input is one it saw or was asked for.

Exceptions raised by user callbacks (``on_event``, ``subscribe(..., callback=...)``) are caught,
logged on the ``sockline.aio`` logger and appended to :attr:`Client.errors`; they never stop the
driver. An unexpected error inside the driver itself is reported the same way and the loop goes on.

Example::

    async with Client("ws://127.0.0.1:8080/ws", user_id="ann") as c:
        await c.wait_for_state("open")
        c.join_project(7)
        updates = c.subscribe("project_updated", project_id=7)
        c.send("project_update", {"title": "v2"}, project_id=7)
        async for msg in updates:
            print(msg["data"])
            break
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from ._sockline import Session, Trace, is_final_stream_state, is_terminal_state

__all__ = ["CallbackError", "Client", "EventStream", "StreamReader", "Subscription"]

#: While the transport is blocked, how often the driver looks at the bytes it holds unsent (the
#: socket layer does not say when its buffer drains).
_BLOCKED_POLL_S = 0.05

log = logging.getLogger("sockline.aio")

Event = dict[str, Any]
Callback = Callable[[dict[str, Any]], "Awaitable[None] | None"]

# The largest frame the socket layer accepts; the session applies its own max_frame_bytes.
_SOCKET_MAX_SIZE = 16 * 1024 * 1024


class CallbackError:
    """An exception a user callback (or the driver) raised: where, and the exception itself."""

    def __init__(self, where: str, error: BaseException) -> None:
        #: Which callback or driver step raised it.
        self.where = where
        #: The exception.
        self.error = error

    def __repr__(self) -> str:
        return f"CallbackError({self.where!r}, {self.error!r})"


class Subscription:
    """Messages matching one subscription, as envelope dicts; an async iterator.

    Iteration ends when the subscription is closed (:meth:`close`) or the client closes.
    """

    def __init__(self, client: Client, sub_id: int, callback: Callback | None) -> None:
        self._client = client
        #: The session's subscription id.
        self.id = sub_id
        self._queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._callback = callback
        self._closed = False

    def _deliver(self, message: dict[str, Any]) -> None:
        if self._callback is not None:
            self._client._call(f"subscription {self.id} callback", self._callback, message)
        self._queue.put_nowait(message)

    def _end(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put_nowait(None)

    async def recv(self, timeout: float | None = None) -> dict[str, Any] | None:
        """The next message, or None once the subscription has ended."""
        item = await asyncio.wait_for(self._queue.get(), timeout)
        if item is None:
            self._queue.put_nowait(None)  # stay ended for later calls
        return item

    def close(self) -> None:
        """Removes the subscription from the session and ends iteration."""
        self._client._unsubscribe(self)

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self

    async def __anext__(self) -> dict[str, Any]:
        item = await self.recv()
        if item is None:
            raise StopAsyncIteration
        return item


class StreamReader:
    """The deltas of one agent stream, as strings; an async iterator.

    Iteration ends when the stream is ``done``, ``interrupted`` or ``failed``; :attr:`state`
    then holds that final state and :attr:`error` the failure text, if any. A ``stalled`` stream
    keeps the iterator waiting (its state reads ``stalled`` until more arrives).
    """

    def __init__(self, stream_id: str) -> None:
        #: The stream id.
        self.stream_id = stream_id
        #: The last state reported: ``started``, ``delta``, ``stalled``, ``done``, ...
        self.state: str | None = None
        #: The failure text of a ``failed`` stream.
        self.error: str | None = None
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._ended = False

    def _on_event(self, event: Event) -> None:
        if self._ended:
            return
        self.state = event["state"]
        if event["state"] == "delta" and event.get("delta"):
            self._queue.put_nowait(event["delta"])
        if event["state"] == "failed":
            self.error = event.get("error")
        if is_final_stream_state(event["state"]):
            self._end()

    def _end(self) -> None:
        if not self._ended:
            self._ended = True
            self._queue.put_nowait(None)

    @property
    def finished(self) -> bool:
        """Whether the stream reached a final state (or the client closed)."""
        return self._ended

    async def read_all(self, timeout: float | None = None) -> str:
        """Every remaining delta joined, once the stream ends."""
        parts: list[str] = []

        async def collect() -> None:
            async for d in self:
                parts.append(d)

        await asyncio.wait_for(collect(), timeout)
        return "".join(parts)

    def __aiter__(self) -> AsyncIterator[str]:
        return self

    async def __anext__(self) -> str:
        item = await self._queue.get()
        if item is None:
            self._queue.put_nowait(None)
            raise StopAsyncIteration
        return item


class EventStream:
    """Every event (or, from :meth:`Client.outputs`, every output but ``timeout``) of a client
    from the moment it was created, as dicts; an async iterator.

    Iteration ends when the client closes.
    """

    def __init__(self, client: Client, outputs: bool = False) -> None:
        self._client = client
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self._queues = client._output_queues if outputs else client._event_queues
        self._queues.append(self._queue)

    async def recv(self, timeout: float | None = None) -> Event | None:
        """The next event, or None once the client has closed."""
        item = await asyncio.wait_for(self._queue.get(), timeout)
        if item is None:
            self._queue.put_nowait(None)
        return item

    async def wait_for(
        self, predicate: Callable[[Event], bool], timeout: float | None = None
    ) -> Event:
        """The first event for which `predicate` is true; ``asyncio.TimeoutError`` after
        `timeout` seconds, ``EOFError`` if the client closes first."""

        async def find() -> Event:
            while True:
                e = await self.recv()
                if e is None:
                    raise EOFError("the client closed")
                if predicate(e):
                    return e

        return await asyncio.wait_for(find(), timeout)

    def close(self) -> None:
        """Stops collecting events."""
        if self._queue in self._queues:
            self._queues.remove(self._queue)
        self._queue.put_nowait(None)

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        item = await self.recv()
        if item is None:
            raise StopAsyncIteration
        return item


class _Transport:
    """One socket attempt: its connect task, its connection, its reader and writer."""

    def __init__(self, gen: int) -> None:
        self.gen = gen
        self.ws: Any = None
        self.task: asyncio.Task[None] | None = None
        self.outbox: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        #: Text bytes waiting in `outbox`.
        self.queued_bytes = 0
        self.writer: asyncio.Task[None] | None = None
        #: The session was told how this transport ended (it hears it once).
        self.ended = False


class Client:
    """An asyncio client: a :class:`sockline.Session` driven over a real WebSocket.

    ``url`` (one URL, or a list of hubs' URLs to fail over between) and the config keywords are
    those of :class:`sockline.Session`; ``seed`` fixes the
    session's jitter and id prefix (random when None). Use ``async with Client(...) as c`` or
    ``await c.start()`` ... ``await c.close()``.
    """

    def __init__(
        self, url: str | Sequence[str], *, seed: int | None = None, **config: Any
    ) -> None:
        self._origin = time.monotonic()
        self._session = Session(
            url, seed=random.getrandbits(63) if seed is None else seed, now_ms=0, **config
        )
        #: Exceptions from user callbacks and the driver, in order (never raised into the loop).
        self.errors: list[CallbackError] = []
        self._subs: dict[int, Subscription] = {}
        self._streams: dict[str, list[StreamReader]] = {}
        self._listeners: list[Callback] = []
        self._event_queues: list[asyncio.Queue[Event | None]] = []
        self._output_queues: list[asyncio.Queue[Event | None]] = []
        self._state_waiters: list[tuple[Callable[[str], bool], asyncio.Future[None]]] = []
        self._transport: _Transport | None = None
        self._gen = 0
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing_tasks: set[asyncio.Task[Any]] = set()
        self._stopped = False

    # ---- lifecycle -------------------------------------------------------------------------

    def now_ms(self) -> int:
        """Milliseconds since the client was created: the session's clock."""
        return int((time.monotonic() - self._origin) * 1000)

    async def start(self) -> Client:
        """Starts the driver task and connects."""
        if self._task is not None:
            return self
        self._wake = asyncio.Event()
        self._session.connect(self.now_ms())
        self._task = asyncio.get_running_loop().create_task(self._run(), name="sockline.aio")
        return self

    async def __aenter__(self) -> Client:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self, timeout: float = 10.0) -> None:
        """Closes gracefully (code 1000): waits for the close handshake (bounded by the session's
        ``close_timeout_ms``), then stops the driver and ends every iterator."""
        if self._task is None:
            self._finish()
            return
        if not self._stopped:
            self._session.disconnect(self.now_ms())
            self._poke()
            try:
                await self._wait_until(is_terminal_state, "a terminal state", timeout)
            except asyncio.TimeoutError:
                log.warning("close did not complete within %.1f s", timeout)
        self._stopped = True
        self._poke()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), 2.0)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            self._task.cancel()
        await self._drop_transport()
        if self._closing_tasks:
            await asyncio.wait(set(self._closing_tasks), timeout=2.0)
        self._finish()

    def _finish(self) -> None:
        for sub in self._subs.values():
            sub._end()
        for readers in self._streams.values():
            for r in readers:
                r._end()
        self._streams.clear()
        for q in self._event_queues + self._output_queues:
            q.put_nowait(None)
        for _, fut in self._state_waiters:
            if not fut.done():
                fut.cancel()
        self._state_waiters.clear()

    def reconnect(self) -> None:
        """Connects again after the session gave up (``failed``) or was closed; raises
        :class:`sockline.AlreadyActiveError` while a connection is in progress or open."""
        self._session.connect(self.now_ms())
        self._poke()

    # ---- state -----------------------------------------------------------------------------

    @property
    def state(self) -> str:
        """The session's state: ``idle``, ``connecting``, ``open``, ``reconnecting``, ..."""
        return self._session.state

    async def wait_for_state(
        self, state: str | tuple[str, ...], timeout: float | None = None
    ) -> str:
        """Waits until the state is `state` (or one of several); returns the state reached.
        Raises ``asyncio.TimeoutError`` after `timeout` seconds."""
        wanted = (state,) if isinstance(state, str) else state
        return await self._wait_until(lambda s: s in wanted, repr(wanted), timeout)

    async def _wait_until(
        self, predicate: Callable[[str], bool], what: str, timeout: float | None
    ) -> str:
        if predicate(self.state):
            return self.state
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._state_waiters.append((predicate, fut))
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout)
        except asyncio.TimeoutError:
            raise asyncio.TimeoutError(f"state {self.state!r}, never reached {what}") from None
        finally:
            self._state_waiters = [(p, f) for p, f in self._state_waiters if f is not fut]
        return self.state

    # ---- commands --------------------------------------------------------------------------

    def send(self, type: str, data: Any = None, **options: Any) -> str:
        """Sends (or queues) an application message; returns its id. Options as for
        :meth:`sockline.Session.send` (``project_id``, ``delivery``, ``ttl_ms``, ...)."""
        mid = self._session.send(self.now_ms(), type, data, **options)
        self._poke()
        return mid

    def subscribe(
        self, pattern: str, project_id: int | None = None, *, callback: Callback | None = None
    ) -> Subscription:
        """Subscribes to `pattern` (``type``, ``prefix*`` or ``*``), optionally for one project;
        the returned :class:`Subscription` yields matching messages. `callback`, if given, is
        called (or awaited) with every message too."""
        sid = self._session.subscribe(self.now_ms(), pattern, project_id)
        sub = Subscription(self, sid, callback)
        self._subs[sid] = sub
        self._poke()
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        if self._subs.pop(sub.id, None) is not None:
            self._session.unsubscribe(self.now_ms(), sub.id)
            self._poke()
        sub._end()

    def on_event(self, callback: Callback) -> None:
        """Calls (or awaits) `callback` with every event dict (status, message, stream, ...)."""
        self._listeners.append(callback)

    def events(self) -> EventStream:
        """Every event from now on (registered at once), as dicts, until the client closes."""
        return EventStream(self)

    def outputs(self) -> EventStream:
        """Every output but ``timeout`` from now on (transmits, opens, closes, events), as the
        canonical dicts, until the client closes."""
        return EventStream(self, outputs=True)

    def trace(self) -> Trace | None:
        """The inputs recorded so far (``Client(..., record=True)``), or None."""
        return self._session.trace()

    def stream(self, stream_id: str) -> StreamReader:
        """A reader of agent stream `stream_id`'s deltas (register it before the prompt)."""
        reader = StreamReader(stream_id)
        self._streams.setdefault(stream_id, []).append(reader)
        return reader

    def stream_content(self, stream_id: str) -> str | None:
        """The text of an agent stream so far."""
        return self._session.stream_content(stream_id)

    def interrupt_stream(self, stream_id: str) -> None:
        """Stops an agent stream."""
        self._session.interrupt_stream(self.now_ms(), stream_id)
        self._poke()

    def start_typing(self, project_id: int) -> None:
        """The local user is typing in `project_id` (throttled by the session)."""
        self._session.start_typing(self.now_ms(), project_id)
        self._poke()

    def stop_typing(self, project_id: int) -> None:
        """The local user stopped typing in `project_id`."""
        self._session.stop_typing(self.now_ms(), project_id)
        self._poke()

    def typing_users(self, project_id: int) -> list[str]:
        """Remote users typing in `project_id` now, sorted."""
        return self._session.typing_users(project_id)

    def join_project(self, project_id: int) -> None:
        """Joins a project (re-joined after every reconnect)."""
        self._session.join_project(self.now_ms(), project_id)
        self._poke()

    def leave_project(self, project_id: int) -> None:
        """Leaves a project."""
        self._session.leave_project(self.now_ms(), project_id)
        self._poke()

    def presence(self, project_id: int) -> list[str]:
        """Members present in a joined project, sorted."""
        return self._session.presence(project_id)

    def project_version(self, project_id: int) -> int | None:
        """The last version applied for a joined project."""
        return self._session.project_version(project_id)

    def set_token(self, token: str, expires_at: int | None = None) -> None:
        """Replaces the token (`expires_at` in :meth:`now_ms` time)."""
        self._session.set_token(self.now_ms(), token, expires_at)
        self._poke()

    def online(self) -> None:
        """Tells the session the network is back (a waiting reconnect starts at once)."""
        self._session.online(self.now_ms())
        self._poke()

    def offline(self) -> None:
        """Tells the session the network is gone (reconnects pause)."""
        self._session.offline(self.now_ms())
        self._poke()

    def visible(self) -> None:
        """The application became visible (an open link is probed)."""
        self._session.visible(self.now_ms())
        self._poke()

    def hidden(self) -> None:
        """The application was hidden (recorded; suspension is detected from late deadlines)."""
        self._session.hidden(self.now_ms())
        self._poke()

    def stats(self) -> dict[str, Any]:
        """The session's counters."""
        return self._session.stats

    def snapshot_outbox(self) -> dict[str, Any]:
        """The queued and unacknowledged messages, for :meth:`restore_outbox`."""
        return self._session.snapshot_outbox()

    def restore_outbox(self, snapshot: dict[str, Any] | str) -> int:
        """Puts back an outbox snapshot; returns how many messages."""
        n = self._session.restore_outbox(self.now_ms(), snapshot)
        self._poke()
        return n

    # ---- the driver ------------------------------------------------------------------------

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _report(self, where: str, error: BaseException) -> None:
        log.error("sockline.aio: %s raised %r", where, error, exc_info=error)
        self.errors.append(CallbackError(where, error))

    def _call(self, where: str, callback: Callback, arg: dict[str, Any]) -> None:
        try:
            result = callback(arg)
        except Exception as e:  # isolated: a callback never stops the driver
            self._report(where, e)
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self._closing_tasks.add(task)

            def done(t: asyncio.Future[Any]) -> None:
                self._closing_tasks.discard(t)
                err = None if t.cancelled() else t.exception()
                if err is not None:
                    self._report(where, err)

            task.add_done_callback(done)

    async def _run(self) -> None:
        assert self._wake is not None
        while not self._stopped:
            self._wake.clear()
            deadline: int | None = None
            try:
                self._pump()
                # Like the tokio client: check the clock first, feed a timeout only when due.
                deadline = self._session.poll_timeout()
                if deadline is not None and deadline <= self.now_ms():
                    self._session.handle_timeout(self.now_ms())
                    continue
                if self._report_buffered():
                    continue
            except Exception as e:
                self._report("driver", e)
            if self._stopped:
                break
            timeout = None if deadline is None else max(0, deadline - self.now_ms()) / 1000
            if self._session.is_blocked:
                timeout = _BLOCKED_POLL_S if timeout is None else min(timeout, _BLOCKED_POLL_S)
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except asyncio.TimeoutError:
                pass
        self._pump_quietly()

    def _pump_quietly(self) -> None:
        try:
            self._pump()
        except Exception as e:
            self._report("driver", e)

    def _report_buffered(self) -> bool:
        """Feeds ``buffered`` if the session wants to hear the bytes held unsent; True if fed."""
        t = self._transport
        if t is None or t.ws is None or t.ended:
            return False
        held = t.queued_bytes
        transport = getattr(t.ws, "transport", None)
        if transport is not None:
            held += transport.get_write_buffer_size()
        if not self._session.should_report_buffered(held):
            return False
        self._session.buffered(self.now_ms(), held)
        return True

    def _pump(self) -> None:
        for out in self._session.drain():
            for q in self._output_queues:
                q.put_nowait(out)
            kind = out["kind"]
            if kind == "open_transport":
                self._open(out["url"])
            elif kind == "transmit":
                t = self._transport
                if t is not None and t.ws is not None:
                    text = out["text"]
                    t.queued_bytes += len(text.encode())
                    t.outbox.put_nowait(("text", text))
            elif kind == "close_transport":
                self._close_current(out["code"], out["reason"])
            else:
                self._dispatch(out)

    def _dispatch(self, event: Event) -> None:
        kind = event["kind"]
        if kind == "status":
            for predicate, fut in self._state_waiters:
                if predicate(event["to"]) and not fut.done():
                    fut.set_result(None)
        elif kind == "message":
            for sid in event["subscriptions"]:
                sub = self._subs.get(sid)
                if sub is not None:
                    sub._deliver(event["message"])
        elif kind == "stream":
            readers = self._streams.get(event["stream_id"], [])
            for r in readers:
                r._on_event(event)
            if is_final_stream_state(event["state"]):
                self._streams.pop(event["stream_id"], None)
        elif kind == "protocol_error":
            log.warning("protocol error: %s", event["reason"])
        for q in self._event_queues:
            q.put_nowait(event)
        for cb in list(self._listeners):
            self._call("on_event callback", cb, event)

    # ---- transports ------------------------------------------------------------------------

    def _open(self, url: str) -> None:
        old = self._transport
        if old is not None:
            self._abandon(old, 1000, "")
        self._gen += 1
        t = _Transport(self._gen)
        self._transport = t
        t.task = asyncio.get_running_loop().create_task(self._connect(t, url))

    def _current(self, t: _Transport) -> bool:
        return self._transport is t and not self._stopped

    async def _connect(self, t: _Transport, url: str) -> None:
        from websockets.asyncio.client import connect

        try:
            ws = await connect(
                url,
                open_timeout=None,  # the session's connect_timeout_ms decides
                ping_interval=None,  # the session's heartbeats decide
                close_timeout=None,  # the session's close_timeout_ms and heartbeats decide
                max_size=_SOCKET_MAX_SIZE,
                max_queue=None,
            )
        except asyncio.CancelledError:
            raise
        except Exception as e:
            if self._current(t):
                self._session.transport_error(self.now_ms(), f"{type(e).__name__}: {e}")
                self._poke()
            return
        t.ws = ws
        if not self._current(t):
            await self._close_ws(ws, 1000, "")
            return
        t.writer = asyncio.get_running_loop().create_task(self._write(t))
        self._session.transport_opened(self.now_ms())
        self._poke()
        await self._read(t)

    async def _read(self, t: _Transport) -> None:
        from websockets.exceptions import ConnectionClosed

        ws = t.ws
        error: str | None = None
        try:
            while True:
                msg = await ws.recv()
                if self._transport is not t:
                    break  # a newer transport replaced this one: report nothing more
                if isinstance(msg, str):
                    self._session.frame(self.now_ms(), msg)
                else:
                    self._session.binary_frame(self.now_ms(), len(msg))
                self._poke()
        except ConnectionClosed:
            pass
        except asyncio.CancelledError:
            raise
        except Exception as e:
            error = f"{type(e).__name__}: {e}"
        if not self._current(t) or t.ended:
            return
        t.ended = True
        if error is not None:
            self._session.transport_error(self.now_ms(), error)
        else:
            # Report what arrived, nothing more: the session names it.
            rcvd = ws.protocol.close_rcvd
            if rcvd is None:
                self._session.transport_lost(self.now_ms())
            elif rcvd.code == 1005:  # websockets' name for a close frame without a code
                self._session.transport_closed(self.now_ms(), None, rcvd.reason)
            else:
                self._session.transport_closed(self.now_ms(), rcvd.code, rcvd.reason)
        self._poke()

    async def _write(self, t: _Transport) -> None:
        from websockets.exceptions import ConnectionClosed

        while True:
            what, payload = await t.outbox.get()
            try:
                if what == "text":
                    t.queued_bytes -= len(payload.encode())
                    await t.ws.send(payload)
                    if self._session.is_blocked:
                        self._poke()  # the run loop looks at what is still held
                else:
                    code, reason = payload
                    await t.ws.close(code, reason)
                    return
            except asyncio.CancelledError:
                raise
            except ConnectionClosed:
                return  # the reader reports how the transport ended
            except Exception as e:
                if self._current(t) and not t.ended:
                    t.ended = True
                    self._session.transport_error(self.now_ms(), f"write failed: {e}")
                    self._poke()
                return

    def _close_current(self, code: int, reason: str) -> None:
        """The session closes (or abandons) the current transport. The reader keeps running so
        the peer's close reply completes a user close; the session ignores news of a transport
        it has abandoned."""
        t = self._transport
        if t is None:
            return
        if t.ws is None:
            # Still connecting: nothing to close politely, stop the attempt.
            if t.task is not None:
                t.task.cancel()
            self._transport = None
            return
        t.outbox.put_nowait(("close", (code, reason)))

    def _abandon(self, t: _Transport, code: int, reason: str) -> None:
        task = asyncio.get_running_loop().create_task(self._shutdown(t, code, reason))
        self._closing_tasks.add(task)
        task.add_done_callback(self._closing_tasks.discard)

    async def _shutdown(self, t: _Transport, code: int, reason: str) -> None:
        if t.writer is not None:
            t.writer.cancel()
        if t.ws is not None:
            await self._close_ws(t.ws, code, reason)
        if t.task is not None and not t.task.done():
            t.task.cancel()

    async def _drop_transport(self) -> None:
        t, self._transport = self._transport, None
        if t is not None:
            await self._shutdown(t, 1000, "client closing")

    @staticmethod
    async def _close_ws(ws: Any, code: int, reason: str) -> None:
        try:
            await asyncio.wait_for(ws.close(code, reason), 2.0)
        except Exception:
            pass
        transport = getattr(ws, "transport", None)
        if transport is not None and not transport.is_closing():
            transport.abort()  # the peer never completed the close: drop the socket

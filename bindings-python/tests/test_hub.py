"""sockline.aio.Client against the real `sockline hub` (a subprocess on a loopback port)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sockline.aio import Client, EventStream

from conftest import Hub

WAIT = 10.0
T = TypeVar("T")


def run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await asyncio.wait_for(coro_fn(), 60)

    return asyncio.run(main())


def client(url: str, user: str, **config: Any) -> Client:
    return Client(
        url,
        seed=7,
        user_id=user,
        reconnect={"jitter": "none", "initial_ms": 100, "max_attempts": None},
        **config,
    )


async def both_present(events: EventStream, project: int) -> None:
    await events.wait_for(
        lambda e: e["kind"] == "presence" and e["project_id"] == project and len(e["members"]) == 2,
        WAIT,
    )


def test_connect_and_receive_a_project_update(hub: Hub) -> None:
    async def scenario() -> None:
        async with client(hub.url, "ann") as ann, client(hub.url, "bob") as bob:
            bob_events = bob.events()
            updates = bob.subscribe("project_updated", project_id=1)
            for c in (ann, bob):
                assert await c.wait_for_state("open", WAIT) == "open"
                c.join_project(1)
            await both_present(bob_events, 1)
            assert bob.presence(1) == ["ann", "bob"]
            ann.send("project_update", {"title": "v1"}, project_id=1)
            msg = await updates.recv(WAIT)
            assert msg is not None
            assert msg["type"] == "project_updated" and msg["projectId"] == 1
            assert msg["data"] == {"version": 1, "title": "v1"}
            assert bob.project_version(1) == 1
            # Typing from ann reaches bob.
            ann.start_typing(1)
            typing = await bob_events.wait_for(lambda e: e["kind"] == "typing" and e["users"] == ["ann"], WAIT)
            assert typing["project_id"] == 1
        assert ann.state == "closed" and bob.state == "closed"
        assert ann.errors == [] and bob.errors == []

    run(scenario)


def test_hub_restart_reconnects_and_delivers_what_was_queued(hub: Hub) -> None:
    async def scenario() -> None:
        async with client(hub.url, "ann") as ann, client(hub.url, "bob") as bob:
            ann_events, bob_events = ann.events(), bob.events()
            for c in (ann, bob):
                await c.wait_for_state("open", WAIT)
                c.join_project(5)
            await both_present(bob_events, 5)
            inbox = bob.subscribe("chat", project_id=5)
            hub.stop()
            # The backoff schedule is observed while the hub is down: 100, 200, 400 ms.
            delays: list[int] = []
            while len(delays) < 3:
                e = await ann_events.wait_for(lambda e: e["kind"] == "reconnect_scheduled", WAIT)
                delays.append(e["delay_ms"])
            assert delays == [100, 200, 400]
            # Hold ann's network down so bob is back in the project before her queue flushes
            # (a restarted hub relays only to members).
            ann.offline()
            for i in range(3):
                ann.send("chat", i, project_id=5)
            assert ann.stats()["queue_depth"] == 3
            hub.start()
            await bob_events.wait_for(lambda e: e["kind"] == "ready", WAIT)
            await bob_events.wait_for(
                lambda e: e["kind"] == "presence" and e["project_id"] == 5 and "bob" in e["members"], WAIT
            )
            ann.online()
            await ann.wait_for_state("open", WAIT)
            got: list[Any] = []
            while len(got) < 3:
                m = await inbox.recv(WAIT)
                assert m is not None
                got.append(m["data"])
            assert got == [0, 1, 2]
            assert ann.stats()["queue_depth"] == 0

    run(scenario)


def test_agent_stream_is_read_to_the_end(hub: Hub) -> None:
    async def scenario() -> None:
        async with client(hub.url, "ann") as ann:
            await ann.wait_for_state("open", WAIT)
            reader = ann.stream("r1")
            ann.send("agent_prompt", {"prompt": "hi", "streamId": "r1"})
            text = await reader.read_all(WAIT)
            assert reader.state == "done" and reader.finished
            assert text.startswith('You asked: "hi".'), text
            assert len(text.split()) == 12
            assert ann.stream_content("r1") == text
            # A second stream interrupted after its first delta ends as interrupted.
            second = ann.stream("r2")
            ann.send("agent_prompt", {"prompt": "stop me", "streamId": "r2"})
            first = await asyncio.wait_for(second.__anext__(), WAIT)
            assert first
            ann.interrupt_stream("r2")
            rest = await second.read_all(WAIT)
            assert second.state == "interrupted"
            content = ann.stream_content("r2")
            assert content is not None and content == first + rest
            await asyncio.sleep(0.2)
            assert ann.stream_content("r2") == content, "no content after the interrupt"

    run(scenario)


def test_callback_exceptions_are_reported_and_never_stop_the_loop(hub: Hub) -> None:
    async def scenario() -> None:
        seen: list[str] = []

        def bad(event: dict[str, Any]) -> None:
            seen.append(event["kind"])
            raise RuntimeError("callback bug")

        async def bad_async(message: dict[str, Any]) -> None:
            raise KeyError("async callback bug")

        async with client(hub.url, "ann") as ann:
            ann.on_event(bad)
            sub = ann.subscribe("project_updated", project_id=2, callback=bad_async)
            await ann.wait_for_state("open", WAIT)
            ann.join_project(2)
            ann.send("project_update", {"n": 1}, project_id=2)
            msg = await sub.recv(WAIT)
            assert msg is not None and msg["data"]["n"] == 1
            await asyncio.sleep(0.05)
            assert ann.state == "open"
            wheres = {e.where for e in ann.errors}
            assert "on_event callback" in wheres
            assert any(w.startswith("subscription") for w in wheres)
            assert all(isinstance(e.error, (RuntimeError, KeyError)) for e in ann.errors)
            assert "status" in seen and "message" in seen

    run(scenario)


def test_refused_connections_back_off_and_recover_when_the_hub_appears() -> None:
    hub = Hub()  # not started: nothing listens on its port yet

    async def scenario() -> None:
        async with client(hub.url, "ann") as ann:
            events = ann.events()
            e = await events.wait_for(lambda e: e["kind"] == "reconnect_scheduled", WAIT)
            assert e["delay_ms"] == 100
            assert ann.state == "reconnecting"
            hub.start()
            await ann.wait_for_state("open", WAIT)

    try:
        run(scenario)
    finally:
        hub.stop()


def test_a_bad_url_is_a_config_error_before_any_socket() -> None:
    import pytest

    import sockline

    with pytest.raises(sockline.ConfigError):
        Client("http://127.0.0.1:1/ws")


def test_heartbeat_abandons_a_stalled_hub_and_reconnects() -> None:
    # The hub stalls every connection 300 ms after it opens (keeps the socket, stops reading and
    # writing): the ping at 400 ms goes unanswered and the session declares the link dead.
    hub = Hub("--chaos-seed", "3", "--chaos-stall-ms", "300..301")

    async def scenario() -> None:
        async with client(hub.url, "ann", heartbeat={"interval_ms": 400, "timeout_ms": 300}) as ann:
            events = ann.events()
            await ann.wait_for_state("open", WAIT)
            opened = ann.now_ms()
            e = await events.wait_for(lambda e: e["kind"] == "status" and e["to"] == "reconnecting", WAIT)
            took = ann.now_ms() - opened
            assert e["reason"] == "heartbeat timeout"
            # Dead by 400 + 300 ms, with 600 ms of tolerance for a loaded 2-core CI machine.
            assert 600 <= took <= 400 + 300 + 600, took
            # The driver drops that socket and the session reconnects on a new one.
            await ann.wait_for_state("open", WAIT)
            assert ann.stats()["reconnects"] >= 1
            assert ann.errors == []

    hub.start()
    try:
        run(scenario)
    finally:
        hub.stop()


def test_reconnect_after_giving_up() -> None:
    hub = Hub()  # nothing listens yet: two refused attempts, then the session gives up

    async def scenario() -> None:
        c = Client(hub.url, seed=1, reconnect={"jitter": "none", "initial_ms": 50, "max_attempts": 2})
        async with c:
            await c.wait_for_state("failed", WAIT)
            hub.start()
            c.reconnect()
            await c.wait_for_state("open", WAIT)
            import pytest

            import sockline

            with pytest.raises(sockline.AlreadyActiveError):
                c.reconnect()

    try:
        run(scenario)
    finally:
        hub.stop()


def test_a_hub_that_stops_reading_blocks_the_transport_until_the_write_timeout() -> None:
    h = Hub("--chaos-seed", "4", "--chaos-stall-ms", "100..101")
    try:
        h.start()

        async def scenario() -> None:
            c = client(
                h.url, "ann",
                max_buffered_bytes=64 * 1024, write_timeout_ms=500,
                heartbeat={"interval_ms": 60_000}, reconnect_initial_ms=5000,
            )
            events = c.events()
            async with c:
                await c.wait_for_state("open", WAIT)
                await asyncio.sleep(0.3)  # the hub has stalled
                blob = "x" * 60_000
                for _ in range(300):
                    c.send("bulk", blob)
                    await asyncio.sleep(0.001)  # let the driver report what it holds
                blocked = await events.wait_for(
                    lambda e: e["kind"] == "backpressure" and e["blocked"], WAIT
                )
                assert blocked["buffered_bytes"] > 64 * 1024
                gone = await events.wait_for(
                    lambda e: e["kind"] == "status" and e["to"] == "reconnecting", WAIT
                )
                assert gone["reason"].startswith("write timeout: "), gone
                assert c.stats()["dropped"] > 0, "the outbox overflowed under its own policy"

        run(scenario)
    finally:
        h.stop()

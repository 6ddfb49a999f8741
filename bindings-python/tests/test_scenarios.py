"""Deterministic scenarios through sockline.testing: virtual time, no sleeping, no sockets."""

from __future__ import annotations

import json
from typing import Any

import pytest

import sockline
from sockline.testing import Harness, ScriptedServer, VirtualClock


def kinds(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["kind"] == kind]


def frames_of_type(h: Harness, msg_type: str) -> list[dict[str, Any]]:
    out = []
    for t in h.transmitted:
        env = json.loads(t)
        if env["type"] == msg_type:
            out.append(env)
    return out


def test_backoff_schedule_doubles_and_gives_up_after_max_attempts() -> None:
    server = ScriptedServer()
    server.set_accept("refuse", 1013, "try again later")
    h = Harness(server=server, reconnect_jitter="none", reconnect_max_attempts=4)
    h.connect()
    h.advance(60_000)
    delays = [e["delay_ms"] for e in kinds(h.events, "reconnect_scheduled")]
    assert delays == [1000, 2000, 4000, 8000]
    assert h.state == "failed"
    # The initial connect plus four reconnects, each refused.
    assert server.opens == 5
    last = kinds(h.events, "status")[-1]
    assert last["to"] == "failed"


def test_after_three_failed_attempts_the_next_delay_is_eight_seconds_then_recovery() -> None:
    h = Harness(reconnect={"jitter": "none", "max_attempts": None})
    h.server.set_accept("refuse", 1011, "down")
    h.connect()
    h.advance(1000 + 2000 + 4000)
    delays = [e["delay_ms"] for e in kinds(h.events, "reconnect_scheduled")]
    assert delays == [1000, 2000, 4000, 8000]
    # The server comes back: the fourth attempt (8 s later) opens.
    h.server.set_accept("open")
    h.advance(7_999)
    assert h.state == "reconnecting"
    h.advance(1)
    assert h.state == "open"


def test_jitter_keeps_delays_within_half_to_full() -> None:
    server = ScriptedServer()
    server.set_accept("refuse")
    h = Harness(server=server, seed=42, reconnect_max_attempts=5)
    h.connect()
    h.advance(120_000)
    delays = [e["delay_ms"] for e in kinds(h.events, "reconnect_scheduled")]
    assert len(delays) == 5
    for i, d in enumerate(delays):
        nominal = 1000 * 2**i
        assert nominal // 2 <= d <= nominal, (i, d)
    # Same seed, same schedule.
    again = Harness(server=ScriptedServer(), seed=42, reconnect_max_attempts=5)
    again.server.set_accept("refuse")
    again.connect()
    again.advance(120_000)
    assert [e["delay_ms"] for e in kinds(again.events, "reconnect_scheduled")] == delays


def test_heartbeat_timeout_abandons_a_silent_link() -> None:
    h = Harness(heartbeat={"interval_ms": 30_000, "timeout_ms": 10_000}, reconnect_jitter="none")
    h.connect()
    assert h.state == "open"
    h.server.auto_pong = False
    h.advance(30_000)
    assert len(frames_of_type(h, "ping")) == 1
    assert h.state == "open"
    h.advance(9_999)
    assert h.state == "open"
    h.advance(1)
    closes = [o for o in h.log if o["kind"] == "close_transport"]
    assert closes and closes[-1]["code"] == 4000 and closes[-1]["reason"] == "heartbeat timeout"
    assert closes[-1]["at"] == 40_000
    assert h.state == "reconnecting"


def test_heartbeat_answered_keeps_the_link_and_measures_rtt() -> None:
    server = ScriptedServer(latency_ms=25)
    h = Harness(server=server, heartbeat_interval_ms=1000)
    h.connect()
    h.advance(10_000)
    assert h.state == "open"
    # The scripted server's latency delays what it sends (the pong); client frames arrive at once.
    assert h.stats["last_rtt_ms"] == 25


def test_connect_timeout_when_the_server_hangs() -> None:
    server = ScriptedServer()
    server.set_accept("hang")
    h = Harness(server=server, connect_timeout_ms=3000, reconnect_jitter="none")
    h.connect()
    h.advance(3000)
    closes = [o for o in h.log if o["kind"] == "close_transport"]
    assert closes and closes[0]["reason"] == "connect timeout" and closes[0]["at"] == 3000


@pytest.mark.parametrize(
    "policy,dropped_index",
    [("drop_oldest", 0), ("drop_newest", 2)],
)
def test_outbox_overflow_drops_with_an_event(policy: str, dropped_index: int) -> None:
    h = Harness(outbox={"max_messages": 2, "overflow": policy})
    ids = [h.send("chat", {"n": i}) for i in range(3)]
    dropped = kinds(h.events, "dropped")
    assert [(d["id"], d["reason"]) for d in dropped] == [(ids[dropped_index], "queue_full")]
    h.connect()
    sent = [m["data"]["n"] for m in h.server.received_app]
    assert sent == [i for i in range(3) if i != dropped_index]


def test_outbox_overflow_reject_raises_and_keeps_the_queue() -> None:
    h = Harness(outbox_max_messages=2, outbox_overflow="reject")
    h.send("chat", 1)
    h.send("chat", 2)
    with pytest.raises(sockline.QueueFullError) as info:
        h.send("chat", 3)
    assert info.value.code == "queue_full"
    assert isinstance(info.value, sockline.SessionError)
    assert h.stats["queue_depth"] == 2
    h.connect()
    assert [m["data"] for m in h.server.received_app] == [1, 2]


def test_routing_by_exact_type_prefix_wildcard_and_project() -> None:
    h = Harness()
    exact = h.subscribe("chat")
    prefix = h.subscribe("project_*")
    every = h.subscribe("*")
    in_seven = h.subscribe("chat", 7)
    h.connect()
    h.push("chat", "hello")
    h.push("chat", "in seven", 7)
    h.push("project_updated", {"version": 1}, 3)
    h.push("note", None)
    routed = [
        (e["message"]["type"], e["message"]["data"], e["subscriptions"])
        for e in kinds(h.events, "message")
    ]
    assert routed == [
        ("chat", "hello", [exact, every]),
        ("chat", "in seven", [exact, every, in_seven]),
        ("project_updated", {"version": 1}, [prefix, every]),
        ("note", None, [every]),
    ]
    h.unsubscribe(every)
    h.push("note", 2)
    assert h.stats["messages_unrouted"] == 1
    with pytest.raises(sockline.UnknownSubscriptionError):
        h.unsubscribe(every)
    with pytest.raises(sockline.InvalidPatternError):
        h.subscribe("a*b")


def test_remote_typing_expires_without_a_stop() -> None:
    h = Harness(user_id="ann", typing={"expire_ms": 6000})
    h.connect()
    h.join_project(1)
    h.push("user_typing_start", {"userId": "bob"}, 1)
    assert h.typing_users(1) == ["bob"]
    h.advance(5_999)
    assert h.typing_users(1) == ["bob"]
    h.advance(1)
    assert h.typing_users(1) == []
    typing = kinds(h.events, "typing")
    assert [e["users"] for e in typing] == [["bob"], []]


def test_local_typing_is_throttled_and_stops_when_idle() -> None:
    h = Harness(user_id="ann", typing={"throttle_ms": 3000, "idle_ms": 5000})
    h.connect()
    for _ in range(5):
        h.start_typing(1)
        h.advance(500)
    assert len(frames_of_type(h, "user_typing_start")) == 1
    h.advance(5000)
    assert len(frames_of_type(h, "user_typing_stop")) == 1
    with pytest.raises(sockline.NoUserIdError):
        Harness().start_typing(1)


def test_agent_stream_resumes_after_a_drop_and_assembles_in_order() -> None:
    h = Harness(reconnect_jitter="none")
    h.connect()
    h.push("agent_stream_start", {"streamId": "r1"})
    h.push("agent_stream_chunk", {"streamId": "r1", "seq": 0, "delta": "Hello"})
    h.push("agent_stream_chunk", {"streamId": "r1", "seq": 1, "delta": ", "})
    h.server_close(1006, "")
    assert h.state == "reconnecting"
    h.advance(1000)
    assert h.state == "open"
    assert kinds(h.events, "ready")[-1]["resumed"] is True
    resumes = frames_of_type(h, "agent_stream_resume")
    assert [r["data"] for r in resumes] == [{"streamId": "r1", "fromSeq": 2}]
    # The hub's answer to the resume: the chunks from seq 2 (made while the client was away).
    h.push("agent_stream_chunk", {"streamId": "r1", "seq": 2, "delta": "world"})
    # A duplicate and an out-of-order chunk, then the end.
    h.push("agent_stream_chunk", {"streamId": "r1", "seq": 1, "delta": ", "})
    h.push("agent_stream_chunk", {"streamId": "r1", "seq": 4, "delta": "."})
    h.push("agent_stream_chunk", {"streamId": "r1", "seq": 3, "delta": "!"})
    h.push("agent_stream_end", {"streamId": "r1", "seq": 5})
    assert h.stream_content("r1") == "Hello, world!."
    assert h.stream_state("r1") == "done"
    states = [e["state"] for e in kinds(h.events, "stream")]
    assert states[0] == "started" and states[-1] == "done" and states.count("done") == 1


def test_stream_stalls_when_chunks_stop() -> None:
    h = Harness(streams={"stall_ms": 2000})
    h.connect()
    h.push("agent_stream_start", {"streamId": "r2"})
    h.advance(2000)
    assert [e["state"] for e in kinds(h.events, "stream")] == ["started", "stalled"]


def test_token_flow_unauthorized_then_new_token_reconnects_at_once() -> None:
    h = Harness(token="old-token", token_refresh_margin_ms=30_000)
    h.connect()
    hello = frames_of_type(h, "hello")[-1]
    assert hello["data"]["token"] == "old-token"
    h.inject('{"type":"error","data":{"code":"unauthorized","message":"expired"}}')
    assert h.state == "unauthorized"
    assert len(kinds(h.events, "token_required")) == 1
    h.advance(60_000)
    assert h.state == "unauthorized", "no reconnect without a token"
    h.set_token("new-token", expires_at=h.now_ms + 100_000)
    assert h.state == "open"
    assert frames_of_type(h, "hello")[-1]["data"]["token"] == "new-token"
    h.advance(69_999)
    assert kinds(h.events, "token_refresh_due") == []
    h.advance(1)
    due = kinds(h.events, "token_refresh_due")
    assert [d["expires_at"] for d in due] == [160_000]
    with pytest.raises(sockline.InvalidTokenError):
        h.set_token("")
    # Recorded traces redact the token.
    rec = Harness(token="secret-1", record=True)
    rec.connect()
    t = rec.trace()
    assert t is not None and "secret-1" not in t.to_json()


def test_delayed_injection_and_delayed_close() -> None:
    h = Harness()
    h.subscribe("note")
    h.connect()
    h.inject('{"type":"note","data":1}', delay_ms=500)
    h.advance(499)
    assert kinds(h.events, "message") == []
    h.advance(1)
    assert len(kinds(h.events, "message")) == 1
    h.server_close(1012, "restart", delay_ms=200)
    h.advance(199)
    assert h.state == "open"
    h.advance(1)
    assert h.state == "reconnecting"


def test_at_least_once_is_resent_after_reconnect_until_acked() -> None:
    h = Harness(reconnect_jitter="none")
    h.connect()
    h.server.auto_ack = False
    mid = h.send("order", {"qty": 1}, delivery="at_least_once")
    h.server_close(1006)
    h.server.auto_ack = True
    h.advance(1000)
    sent = [m for m in h.server.received_app if m.get("id") == mid]
    assert len(sent) == 2, "sent, then resent with the same id"
    assert [e["id"] for e in kinds(h.events, "acked")] == [mid]
    assert h.stats["resent"] == 1


def test_a_message_the_server_refuses_is_dropped_and_not_resent() -> None:
    h = Harness(reconnect_jitter="none")
    h.connect()
    h.server.auto_ack = False
    mid = h.send("order", {"qty": 1}, delivery="at_least_once")
    refusal = {"type": "error", "data": {"code": "too_large", "message": "no", "id": mid}}
    h.inject(json.dumps(refusal))
    assert kinds(h.events, "server_error")[-1]["id"] == mid
    assert kinds(h.events, "dropped") == [
        {"kind": "dropped", "id": mid, "type": "order", "reason": "rejected"}
    ]
    h.server_close(1006)
    h.advance(2000)
    assert len([m for m in h.server.received_app if m.get("id") == mid]) == 1


def test_suspend_probes_instead_of_declaring_the_link_dead() -> None:
    h = Harness(heartbeat={"interval_ms": 30_000, "timeout_ms": 10_000})
    h.connect()
    h.suspend(120_000)
    h.advance(100)
    assert h.state == "open"


def test_virtual_clock_standalone_and_harness_clock() -> None:
    c = VirtualClock(5)
    assert c.advance(10) == 15 and c.now_ms == 15
    h = Harness(heartbeat_interval_ms=1000)
    h.connect()
    assert h.clock.advance(3500) == 3500
    assert h.now_ms == 3500
    assert len(frames_of_type(h, "ping")) == 3


def test_a_server_belongs_to_one_harness() -> None:
    s = ScriptedServer()
    Harness(server=s)
    with pytest.raises(ValueError):
        Harness(server=s)


def test_log_entries_carry_their_time_first() -> None:
    h = Harness()
    h.connect()
    log = h.take_log()
    assert [o["kind"] for o in log][:2] == ["open_transport", "status"]
    assert all(next(iter(o)) == "at" for o in log)
    assert h.log == []

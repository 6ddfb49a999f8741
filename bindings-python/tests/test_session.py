"""sockline.Session: the typed API, canonical dicts, errors and bad inputs, threads."""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

import pytest

import sockline
from sockline import Session

from conftest import replayed_dicts

URL = "ws://127.0.0.1:9/ws"
WELCOME = '{"type":"welcome","data":{"sessionId":"s1"}}'


def open_session(**config: Any) -> Session:
    s = Session(URL, seed=3, **config)
    s.connect(0)
    s.transport_opened(1)
    s.frame(2, WELCOME)
    s.drain()
    return s


def test_connect_outputs_in_canonical_form_and_order() -> None:
    s = Session(URL, seed=1)
    assert s.state == "idle"
    s.connect(0)
    assert s.drain() == [
        {"kind": "open_transport", "url": URL, "attempt": 0},
        {"kind": "status", "from": "idle", "to": "connecting", "reason": "connect requested", "attempt": 0},
    ]
    assert s.poll_timeout() == 10_000
    assert s.next_deadline() == {"at": 10_000, "timer": "connect_timeout"}
    assert s.poll_output() == {"kind": "timeout", "deadline": 10_000}
    s.transport_opened(5)
    (hello,) = s.drain()
    assert hello["kind"] == "transmit"
    assert json.loads(hello["text"]) == {"type": "hello", "data": {"protocol": 2}}
    s.frame(6, WELCOME)
    out = s.drain()
    assert [o["kind"] for o in out] == ["status", "ready"]
    assert out[1] == {"kind": "ready", "session_id": "s1", "resumed": False}
    assert s.state == "open"
    with pytest.raises(sockline.AlreadyActiveError, match="already open"):
        s.connect(7)


def test_dicts_match_the_core_canonical_json_key_for_key_and_in_order() -> None:
    # The replay lines are the core's own serde JSON; drained dicts must equal them exactly
    # (same keys in the same order), whichever conversion path built them.
    s = Session(URL, seed=9, record=True, user_id="ann")
    s.subscribe(0, "*")
    s.connect(0)
    got = s.drain()
    s.transport_opened(1)
    got += s.drain()
    s.frame(2, WELCOME)
    got += s.drain()
    s.join_project(2, 4)
    s.frame(2, '{"type":"project_joined","data":{"epoch":"e","offset":0},"projectId":4}')
    got += s.drain()
    s.frame(3, '{"type":"note","data":{"z":1,"a":[1.5,-2,"x",null,true,{"k":{}}]},"id":"m1","projectId":4,"epoch":"e","offset":1,"timestamp":"2026-01-01T00:00:00.000Z"}')
    got += s.drain()
    s.frame(4, '{"type":"note","data":7,"projectId":4,"epoch":"e","offset":3}')  # a hole: gap, rejoin
    got += s.drain()
    s.frame(5, "not json")
    got += s.drain()
    s.send(6, "chat", {"b": 2, "a": 1})
    got += s.drain()
    trace = s.trace()
    assert trace is not None
    lines = replayed_dicts(trace)
    assert got == lines
    assert [list(d) for d in got] == [list(d) for d in lines]
    assert {d["kind"] for d in got} >= {"message", "transmit", "gap", "protocol_error", "status"}


def test_send_options_and_returned_ids() -> None:
    s = open_session()
    mid = s.send(10, "chat", {"text": "hi"}, project_id=7, delivery="at_least_once", ttl_ms=5000, coalesce="k", id="my-1", unix_ms=0)
    assert mid == "my-1"
    (t,) = s.drain()
    env = json.loads(t["text"])
    assert env == {"type": "chat", "data": {"text": "hi"}, "timestamp": "1970-01-01T00:00:00.000Z", "id": "my-1", "projectId": 7}
    auto = s.send(11, "chat")
    assert auto and auto != mid
    with pytest.raises(sockline.DuplicateIdError):
        s.send(12, "chat", id="my-1")
    with pytest.raises(sockline.InvalidTypeError):
        s.send(12, "has space")
    with pytest.raises(sockline.ReservedTypeError):
        s.send(12, "hello")
    with pytest.raises(sockline.InvalidKeyError):
        s.send(12, "chat", coalesce="")
    with pytest.raises(ValueError, match="delivery"):
        s.send(12, "chat", delivery="twice")  # type: ignore[arg-type]


def test_handle_input_takes_the_canonical_json() -> None:
    s = Session(URL)
    assert s.handle_input(0, {"kind": "subscribe", "pattern": "chat"}) == 1
    assert s.handle_input(0, '{"kind":"send","type":"chat","data":{"a":1},"id":"x"}') == "x"
    assert s.handle_input(0, {"kind": "connect"}) is None
    assert s.state == "connecting"
    with pytest.raises(ValueError, match="invalid input"):
        s.handle_input(0, {"kind": "explode"})
    with pytest.raises(ValueError, match="not JSON"):
        s.handle_input(0, "{nope")
    with pytest.raises(TypeError):
        s.handle_input(0, 42)  # type: ignore[arg-type]
    with pytest.raises(sockline.AlreadyActiveError) as info:
        s.handle_input(0, {"kind": "connect"})
    assert info.value.code == "already_active"


def test_config_keywords_map_onto_the_core_config() -> None:
    dotted: dict[str, Any] = {"typing.expire_ms": 9000}
    s = Session(URL, user_id="ann", reconnect={"initial_ms": 250}, heartbeat_interval_ms=5000,
                outbox_overflow="reject", rate_limit={"per_sec": 5, "burst": 10},
                **dotted)
    c = s.config
    assert c["user_id"] == "ann"
    assert c["reconnect"]["initial_ms"] == 250
    assert c["reconnect"]["max_ms"] == 30_000, "other keys of a section keep their defaults"
    assert c["heartbeat"]["interval_ms"] == 5000
    assert c["outbox"]["overflow"] == "reject"
    assert c["rate_limit"] == {"per_sec": 5, "burst": 10}
    assert c["typing"]["expire_ms"] == 9000
    assert Session(URL, reconnect_max_attempts=None).config["reconnect"]["max_attempts"] is None
    assert Session(URL, token="hunter2").config["token"] == "<redacted>"


@pytest.mark.parametrize(
    "kwargs,key",
    [
        ({"reconnect_factor": 0.5}, "reconnect.factor"),
        ({"reconnect": {"initial_ms": 0}}, "reconnect.initial_ms"),
        ({"max_json_depth": 1000}, "max_json_depth"),
        ({"user_id": ""}, "user_id"),
        ({"bogus": 1}, "bogus"),
        ({"reconnect": {"factr": 2}}, "reconnect.factr"),
        ({"outbox_overflow": "sometimes"}, "outbox.overflow"),
        ({"heartbeat_timeout_ms": -1}, "heartbeat.timeout_ms"),
        ({"max_frame_bytes": 2**70}, "max_frame_bytes"),
        ({"fatal_close_codes": [99]}, "fatal_close_codes"),
    ],
)
def test_bad_config_values_raise_value_error_naming_the_key(kwargs: dict[str, Any], key: str) -> None:
    with pytest.raises(sockline.ConfigError) as info:
        Session(URL, **kwargs)
    assert isinstance(info.value, ValueError)
    assert info.value.key == key or key in str(info.value), str(info.value)
    assert key in str(info.value)


@pytest.mark.parametrize(
    "kwargs,key",
    [
        ({"reconnect_factor": "fast"}, "reconnect.factor"),
        ({"user_id": 5}, "user_id"),
        ({"heartbeat": {"interval_ms": "1s"}}, "heartbeat.interval_ms"),
        ({"require_tls": "yes"}, "require_tls"),
        ({"user_id": object()}, "user_id"),
        ({"connect_timeout_ms": True}, "connect_timeout_ms"),
    ],
)
def test_wrong_config_types_raise_type_error_naming_the_key(kwargs: dict[str, Any], key: str) -> None:
    with pytest.raises(TypeError) as info:
        Session(URL, **kwargs)
    assert key in str(info.value)


def test_bad_urls_are_config_errors() -> None:
    for url in ["http://h/", "ws://u:p@h/", "ws://h/?token=x", ""]:
        with pytest.raises(sockline.ConfigError) as info:
            Session(url)
        assert info.value.key == "url"
    with pytest.raises(sockline.ConfigError):
        Session("ws://h/", require_tls=True)


def test_a_list_of_urls_rotates_reconnect_attempts_and_is_checked_url_by_url() -> None:
    s = Session(["ws://a/ws", "ws://b/ws"], reconnect_jitter="none", reconnect_initial_ms=10)
    s.connect(0)
    s.transport_lost(1)
    s.handle_timeout(20)
    opens = [o["url"] for o in s.drain() if o["kind"] == "open_transport"]
    assert opens == ["ws://a/ws", "ws://b/ws"]
    with pytest.raises(sockline.ConfigError) as info:
        Session(["ws://a/ws", "http://b/"])
    assert info.value.key == "urls[1]"
    with pytest.raises(sockline.ConfigError) as info:
        Session(URL, urls=["ws://b/ws"])
    assert info.value.key == "urls"


def test_wrong_argument_types_raise_type_error() -> None:
    s = Session(URL)
    with pytest.raises(TypeError):
        s.connect("now")  # type: ignore[arg-type]
    with pytest.raises(OverflowError):
        s.connect(-1)
    with pytest.raises(TypeError):
        s.frame(0, b"bytes")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        s.send(0, "chat", {"k": {1, 2}})
    with pytest.raises(TypeError, match="keys must be str"):
        s.send(0, "chat", {1: "x"})
    with pytest.raises(ValueError):
        s.send(0, "chat", float("nan"))
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="deeper"):
        s.send(0, "chat", loop)
    assert s.state == "idle" and s.stats["queue_depth"] == 0, "nothing half-applied"


def test_invalid_json_huge_and_deep_frames_are_reported_not_raised() -> None:
    s = open_session(max_frame_bytes=4096, max_json_depth=8)
    s.subscribe(3, "*")
    s.frame(3, "{not json")
    s.frame(3, '{"type":"x","data":"' + "a" * 5000 + '"}')
    s.frame(3, '{"type":"x","data":' + "[" * 20 + "]" * 20 + "}")
    s.frame(3, '{"data":1}')
    s.binary_frame(3, b"\x00\x01")
    out = s.drain()
    errors = [o["reason"] for o in out if o["kind"] == "protocol_error"]
    assert len(errors) == 5, out
    assert "exceeds max_frame_bytes" in errors[1]
    assert s.state == "open"
    assert s.stats["protocol_errors"] == 5
    s.frame(3, '{"type":"x","data":1}')
    assert [o["kind"] for o in s.drain()] == ["message"]


def test_a_multi_megabyte_frame_is_handled_and_refused() -> None:
    s = open_session()
    big = '{"type":"x","data":"' + "a" * (3 << 20) + '"}'
    s.frame(3, big)
    (err,) = s.drain()
    assert err["kind"] == "protocol_error" and "exceeds max_frame_bytes" in err["reason"]
    with pytest.raises(sockline.TooLargeError):
        s.send(3, "x", "a" * (2 << 20))


def test_frame_many_equals_frame_one_by_one() -> None:
    texts = [json.dumps({"type": "n", "data": i, "id": f"n{i % 40}"}) for i in range(50)]
    a, b = open_session(), open_session()
    a.subscribe(3, "n")
    b.subscribe(3, "n")
    for t in texts:
        a.frame(4, t)
    b.frame_many(4, texts)
    assert a.drain() == b.drain()
    assert a.stats == b.stats


def test_snapshot_and_restore_outbox_between_sessions() -> None:
    s = Session(URL)
    s.send(0, "chat", 1, id="a")
    s.send(0, "chat", 2, id="b", delivery="at_least_once")
    snap = s.snapshot_outbox()
    assert snap["version"] == 1 and [m["id"] for m in snap["messages"]] == ["a", "b"]
    t = Session(URL)
    assert t.restore_outbox(0, snap) == 2
    assert t.snapshot_outbox() == snap
    u = Session(URL)
    assert u.restore_outbox(0, json.dumps(snap)) == 2
    with pytest.raises(sockline.InvalidSnapshotError):
        t.restore_outbox(0, snap)  # the same ids are already held
    with pytest.raises(sockline.InvalidSnapshotError):
        Session(URL).restore_outbox(0, {"version": 9, "messages": []})
    with pytest.raises(TypeError):
        Session(URL).restore_outbox(0, [1, 2])  # type: ignore[arg-type]


def test_stream_typing_presence_and_project_accessors() -> None:
    s = open_session(user_id="ann")
    s.join_project(3, 5)
    s.frame(4, '{"type":"presence_state","data":{"members":["bob","ann"]},"projectId":5}')
    s.frame(4, '{"type":"project_snapshot","data":{"version":4},"projectId":5}')
    s.frame(4, '{"type":"user_typing_start","data":{"userId":"bob"},"projectId":5}')
    s.frame(4, '{"type":"agent_stream_start","data":{"streamId":"r"}}')
    s.frame(4, '{"type":"agent_stream_chunk","data":{"streamId":"r","seq":0,"delta":"hi"}}')
    assert s.presence(5) == ["ann", "bob"]
    assert s.project_version(5) == 4
    assert s.typing_users(5) == ["bob"]
    assert s.stream_content("r") == "hi"
    assert s.stream_state("r") == "delta"
    assert s.stream_content("nope") is None and s.stream_state("nope") is None
    s.interrupt_stream(5, "r")
    assert s.stream_state("r") == "interrupted"
    with pytest.raises(sockline.StreamFinishedError):
        s.interrupt_stream(6, "r")
    with pytest.raises(sockline.UnknownStreamError):
        s.interrupt_stream(6, "zzz")
    s.leave_project(7, 5)
    assert s.presence(5) == []


def test_shared_between_threads_without_borrow_errors() -> None:
    s = open_session()
    s.subscribe(3, "n")
    errors: list[BaseException] = []
    per_thread = 2000

    def feed(k: int) -> None:
        try:
            for i in range(per_thread):
                s.frame(4, json.dumps({"type": "n", "data": [k, i], "id": f"{k}-{i}"}))
                if i % 100 == 0:
                    s.stats  # noqa: B018  (a read while others write)
        except BaseException as e:  # pragma: no cover - the assertion below reports it
            errors.append(e)

    threads = [threading.Thread(target=feed, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    delivered = 0
    while any(t.is_alive() for t in threads):
        delivered += sum(1 for o in s.drain() if o["kind"] == "message")
    for t in threads:
        t.join()
    delivered += sum(1 for o in s.drain() if o["kind"] == "message")
    assert errors == []
    assert delivered == 4 * per_thread
    assert s.stats["frames_in"] == 4 * per_thread + 1


def test_big_frames_release_the_gil() -> None:
    # With a 1 s switch interval, a thread that wakes from a 1 ms sleep only gets the GIL at
    # once if nobody holds it; while the main thread feeds 8 MiB frames, the sleeper keeps
    # ticking only if `receive` releases the GIL around the core's work.
    s = open_session(max_frame_bytes=16 << 20)
    big = '{"type":"x","data":"' + "a" * (8 << 20) + '"}'
    ticks = 0
    stop = threading.Event()

    def tick() -> None:
        nonlocal ticks
        while not stop.is_set():
            time.sleep(0.001)
            ticks += 1

    old = sys.getswitchinterval()
    sys.setswitchinterval(1.0)
    try:
        t = threading.Thread(target=tick)
        t.start()
        time.sleep(0.01)
        before = ticks
        start = time.perf_counter()
        for _ in range(10):
            s.frame(3, big)
        elapsed = time.perf_counter() - start
        during = ticks - before
        stop.set()
        t.join()
    finally:
        sys.setswitchinterval(old)
    assert s.stats["messages_unrouted"] == 10
    assert during >= min(10, int(elapsed * 1000) // 4), (
        f"the sleeper ticked {during} times in {elapsed * 1000:.0f} ms of receive"
    )


def test_record_and_trace_round_trip() -> None:
    s = Session(URL, seed=5, record=True)
    s.connect(0)
    s.transport_opened(10)
    s.transport_closed(20, 1006, "gone")
    s.handle_timeout(2000)
    s.drain()
    trace = s.trace()
    assert trace is not None
    assert len(trace) >= 4
    again = sockline.Trace.from_json(trace.to_json())
    assert again.replay() == trace.replay()
    assert again.seed == 5
    assert Session(URL).trace() is None


def test_drain_json_is_the_canonical_text_of_drain() -> None:
    a, b = open_session(), open_session()
    for s in (a, b):
        s.subscribe(3, "*")
        s.frame(4, '{"type":"n","data":{"z":[1,{"y":null}]},"projectId":2,"epoch":"e","offset":1}')
        s.send(4, "chat", {"b": 1})
    texts = a.drain_json()
    assert [json.loads(t) for t in texts] == b.drain()
    assert len(texts) == 2 and texts[0].startswith('{"kind":"message"')


def test_random_calls_never_panic_or_corrupt_the_session() -> None:
    # Seeded random calls with good and bad arguments: only documented exceptions may escape
    # (a Rust panic would surface as pyo3's PanicException, a BaseException), and the session
    # stays usable and serializable throughout.
    import random

    rng = random.Random(1234)
    s = Session(URL, seed=1, user_id="ann", outbox_max_messages=5, record=True)
    values: list[Any] = [0, 1, 7, 2**63, -1, "", "x", "chat", "a*", "*", None, 1.5, [1], {"k": 1}, b"\x00", True]
    frames = [
        WELCOME, "{", "[]", '{"type":"x"}', '{"type":"agent_stream_chunk","data":{"streamId":"r","seq":0,"delta":"d"}}',
        '{"type":"error","data":{"code":"unauthorized"}}', '{"type":"ack","data":{"id":"m"}}', "\x00" * 300,
    ]
    methods = [
        "connect", "disconnect", "send", "subscribe", "unsubscribe", "start_typing", "stop_typing",
        "interrupt_stream", "join_project", "leave_project", "set_token", "online", "offline",
        "visible", "hidden", "suspend", "transport_opened", "transport_closed", "transport_error",
        "transport_lost", "buffered", "frame", "binary_frame", "handle_timeout", "restore_outbox",
        "handle_input",
    ]
    now = 0
    emitted: list[dict[str, Any]] = []
    refused = 0
    allowed = (TypeError, ValueError, OverflowError)
    for _ in range(3000):
        now += rng.choice([0, 1, 10, 1000, 30_000])
        name = rng.choice(methods)
        args: list[Any] = [now]
        if name == "frame" and rng.random() < 0.7:
            args.append(rng.choice(frames))
        else:
            args += [rng.choice(values) for _ in range(rng.randint(0, 3))]
        try:
            getattr(s, name)(*args)
        except sockline.SessionError:
            refused += 1
        except allowed:
            pass
        emitted += s.drain()
        assert s.state in {"idle", "connecting", "open", "reconnecting", "unauthorized", "closing", "closed", "failed"}
        assert s.stats["queue_depth"] <= 5
    trace = s.trace()
    assert trace is not None
    replayed = replayed_dicts(trace)
    errors = [r for r in replayed if r["kind"] == "input_error"]
    outputs = [r for r in replayed if r["kind"] != "input_error"]
    assert len(errors) == refused > 0
    assert outputs == emitted and len(emitted) > 100


def last_status_reason(outputs: list[dict[str, Any]]) -> str:
    reason: str = [o for o in outputs if o["kind"] == "status"][-1]["reason"]
    return reason


def test_how_a_transport_ended_is_named_by_the_core() -> None:
    s = open_session()
    s.transport_lost(3)
    assert last_status_reason(s.drain()) == "connection lost (1006)"
    s = open_session()
    s.transport_closed(3)  # a close frame without a code
    assert last_status_reason(s.drain()) == "closed by peer (1005)"
    s = open_session()
    s.transport_closed(3, 4500, "bye")
    assert last_status_reason(s.drain()) == "closed by peer (4500: bye)"


def test_backpressure_is_the_sessions_contract() -> None:
    s = open_session(max_buffered_bytes=1000, write_timeout_ms=500)
    assert not s.should_report_buffered(1000) and s.should_report_buffered(1001)
    s.buffered(3, 5000)
    assert s.is_blocked
    assert s.drain() == [{"kind": "backpressure", "blocked": True, "buffered_bytes": 5000}]
    s.send(4, "chat", 1)
    dropped = s.send(4, "cursor", 2, delivery="volatile")
    outs = s.drain()
    assert not any(o["kind"] == "transmit" for o in outs), "held while blocked"
    assert {"kind": "dropped", "id": dropped, "type": "cursor", "reason": "backpressure"} in outs
    assert s.should_report_buffered(0)
    s.buffered(5, 0)
    outs = s.drain()
    assert outs[0] == {"kind": "backpressure", "blocked": False, "buffered_bytes": 0}
    assert '"type":"chat"' in outs[1]["text"]
    s.buffered(6, 5000)
    s.handle_timeout(506)
    outs = s.drain()
    assert {"kind": "close_transport", "code": 4000, "reason": "write timeout"} in outs
    assert last_status_reason(outs).startswith("write timeout: 5000 bytes unsent for 500 ms")
    with pytest.raises(sockline.ConfigError, match="write_timeout_ms"):
        Session(URL, write_timeout_ms=0)


def test_terminal_and_final_states_come_from_the_core() -> None:
    states = ["idle", "connecting", "open", "reconnecting", "unauthorized", "closing", "closed", "failed"]
    assert [st for st in states if sockline.is_terminal_state(st)] == ["idle", "closed", "failed"]
    streams = ["started", "delta", "stalled", "done", "interrupted", "failed"]
    assert [st for st in streams if sockline.is_final_stream_state(st)] == ["done", "interrupted", "failed"]
    with pytest.raises(ValueError, match="unknown connection state"):
        sockline.is_terminal_state("sleeping")
    with pytest.raises(ValueError, match="unknown stream state"):
        sockline.is_final_stream_state("open")

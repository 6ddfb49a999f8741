"""The real hub core and client sessions in one process, in virtual time (``sockline.testing.Network``):
protocol scenarios a QA script can run without sockets or sleeps, the same way every run."""

from __future__ import annotations

from typing import Any

import pytest

from sockline.testing import Network


def joined(net: Network, users: list[str], project: int) -> list[int]:
    ids = [net.add_client(user_id=u) for u in users]
    for c in ids:
        net.subscribe(c, "*")
        net.join_project(c, project)
        net.connect(c)
    net.until(lambda n: all(len(n.events(c)) > 0 and n.state(c) == "open" for c in ids), 1_000)
    net.advance(100)
    return ids


def notes(net: Network, client: int) -> list[Any]:
    return [m["data"] for m in net.messages(client) if m["type"] == "note"]


def test_resume_after_a_dropped_link_replays_what_was_missed_exactly_once() -> None:
    net = Network(seed=4)
    ann, bob = joined(net, ["ann", "bob"], 7)
    net.drop_link(bob)
    for n in range(5):
        net.send(ann, "note", n, project_id=7)
        net.advance(200)
    net.until(lambda n: len(notes(n, bob)) >= 5, 40_000)
    net.advance(1_000)
    assert notes(net, bob) == [0, 1, 2, 3, 4]
    readies = [e["resumed"] for e in net.events(bob) if e["kind"] == "ready"]
    assert readies == [False, True]


def test_at_least_once_survives_a_hub_restart_and_drops() -> None:
    net = Network(seed=9)
    ann, bob = joined(net, ["ann", "bob"], 3)
    net.set_faults(drop=0.05, delay_ms=20)
    ids = [net.send(ann, "note", n, project_id=3, delivery="at_least_once") for n in range(30)]
    net.advance(200)
    net.restart_hub(keep_state=True, down_ms=500)
    net.advance(5_000)
    net.set_faults()

    def all_acked(n: Network) -> bool:
        return set(ids) <= {e["id"] for e in n.events(ann) if e["kind"] == "acked"}

    net.until(all_acked, 120_000)
    net.advance(5_000)
    assert notes(net, bob) == list(range(30))


def test_a_restart_sends_each_client_back_within_the_hubs_window() -> None:
    def first_delay(retry_after_ms: int, spread_ms: int) -> tuple[str, int]:
        net = Network(seed=5, restart_retry_after_ms=retry_after_ms, restart_spread_ms=spread_ms)
        ann = net.add_client(user_id="ann", reconnect={"jitter": "none"})
        net.connect(ann)
        net.until(lambda n: n.state(ann) == "open", 1_000)
        net.restart_hub(keep_state=True, down_ms=0)
        net.advance(10)
        status = [e for e in net.events(ann) if e["kind"] == "status" and e["to"] == "reconnecting"]
        delays = [e["delay_ms"] for e in net.events(ann) if e["kind"] == "reconnect_scheduled"]
        return status[0]["reason"], delays[0]

    reason, delay = first_delay(2_000, 1_000)
    assert reason == 'closed by peer (1012: {"retryAfterMs":2000,"spreadMs":1000})'
    assert 2_000 <= delay <= 3_000
    # Both 0: no window, the client's own schedule (1 s without jitter).
    reason, delay = first_delay(0, 0)
    assert reason == "closed by peer (1012: hub restarting)"
    assert delay == 1_000


def test_an_agent_stream_resumes_across_a_restart_and_fails_on_a_hub_that_lost_it() -> None:
    for keep_state in (True, False):
        net = Network(seed=2, agent_chunks=20, agent_chunk_ms=20)
        ann = net.add_client(user_id="ann")
        net.connect(ann)
        net.until(lambda n: n.state(ann) == "open", 1_000)
        net.send(ann, "agent_prompt", {"prompt": "hi", "streamId": "r1"})
        net.until(lambda n: len(n.stream_content(ann, "r1") or "") > 20, 2_000)
        net.restart_hub(keep_state=keep_state, down_ms=300)
        final = ("done", "failed")
        net.until(
            lambda n: any(
                e["kind"] == "stream" and e["state"] in final for e in n.events(ann)
            ),
            30_000,
        )
        states = [e["state"] for e in net.events(ann) if e["kind"] == "stream"]
        assert states[-1] == ("done" if keep_state else "failed")
        if keep_state:
            text = net.stream_content(ann, "r1") or ""
            assert text.startswith('You asked: "hi".') and text.count("You asked") == 1


def test_bad_arguments_are_clear_errors() -> None:
    net = Network()
    with pytest.raises(IndexError, match="no client 3"):
        net.connect(3)
    with pytest.raises(ValueError, match="drop must be in"):
        net.set_faults(drop=2.0)
    with pytest.raises(ValueError, match="rate_limit"):
        Network(rate_limit=(0, 5))
    c = net.add_client(user_id="ann")
    with pytest.raises(TimeoutError):
        net.until(lambda n: n.state(c) == "open", 1_000)


def test_the_hubs_limits_are_the_cores_and_a_refused_join_is_left() -> None:
    with pytest.raises(ValueError, match="unknown field `maxProjects`"):
        Network(limits={"max_projects": 1})
    net = Network(seed=6, limits={"max_projects_per_connection": 1})
    (ann,) = joined(net, ["ann"], 7)
    net.join_project(ann, 8)
    net.advance(1_000)
    errors = [e for e in net.events(ann) if e["kind"] == "server_error"]
    assert [e["code"] for e in errors] == ["too_many_projects"]
    # Not asked again: the session left the project it was refused.
    net.advance(30_000)
    assert len([e for e in net.events(ann) if e["kind"] == "server_error"]) == 1

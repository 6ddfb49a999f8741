"""A deterministic regression test built from a recorded trace.

The workflow: reproduce a bug report once on virtual time with ``sockline.testing.Harness``
(``record=True``), save the session's trace next to the output it produced, and from then on
replay the trace and compare -- byte for byte, no server, no sleeping. If a change to the core
alters what the session does in that situation, the replay differs and the test says where.

The recorded situation here: a link goes silent (the server stops answering pings) while an
at-least-once message waits for its ack; the heartbeat declares the link dead, the session
reconnects, resumes, resends the message with the same id, and it is acked exactly once.

    python regression_from_trace.py --record   # (re)record traces/silent_link.{json,out}
    python regression_from_trace.py --check    # replay and compare (exit 1 on a difference)
    pytest regression_from_trace.py            # the same check as a test
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path

from sockline import Trace
from sockline.testing import Harness

HERE = Path(__file__).resolve().parent
TRACE = HERE / "traces" / "silent_link.json"
EXPECTED = HERE / "traces" / "silent_link.out"


def reproduce() -> tuple[Trace, list[str]]:
    """Runs the bug report on virtual time; returns its trace and the harness's own log lines."""
    h = Harness(
        seed=5,
        record=True,
        user_id="qa",
        heartbeat={"interval_ms": 10_000, "timeout_ms": 5_000},
        reconnect={"jitter": "none"},
    )
    h.connect()
    h.advance(1_000)
    h.server.auto_pong = False
    h.server.auto_ack = False
    h.send("order", {"sku": "A-1", "qty": 2}, delivery="at_least_once", id="order-1")
    h.advance(14_500)  # ping at 10 s, no pong: dead at 15 s, reconnect due at 16 s
    h.server.auto_pong = True  # the server recovers before the reconnect
    h.server.auto_ack = True
    h.advance(30_000)
    trace = h.trace()
    assert trace is not None
    log = [json.dumps(o, separators=(",", ":")) for o in h.log]
    return trace, log


def check() -> list[str]:
    """Replays the committed trace; returns the unified diff against the committed output."""
    got = Trace.load(TRACE).replay()
    want = EXPECTED.read_text().splitlines()
    return list(difflib.unified_diff(want, got, "expected", "replayed", lineterm=""))


def test_recorded_trace_still_replays_identically() -> None:
    diff = check()
    assert not diff, "\n".join(diff)


def test_the_recording_shows_the_fix() -> None:
    lines = [json.loads(line) for line in EXPECTED.read_text().splitlines()]
    closes = [o for o in lines if o["kind"] == "close_transport"]
    assert [c["reason"] for c in closes] == ["heartbeat timeout"]
    order_frames = [
        json.loads(o["text"]) for o in lines if o["kind"] == "transmit" and '"order"' in o["text"]
    ]
    assert [f["id"] for f in order_frames] == ["order-1", "order-1"], "sent, then resent once"
    assert [o["id"] for o in lines if o["kind"] == "acked"] == ["order-1"]


def test_replay_equals_what_the_live_harness_logged() -> None:
    trace, log = reproduce()
    assert trace.replay() == log


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--record", action="store_true", help="record the trace and its output")
    mode.add_argument("--check", action="store_true", help="replay and compare")
    args = ap.parse_args(argv)
    if args.record:
        trace, log = reproduce()
        TRACE.parent.mkdir(exist_ok=True)
        trace.save(TRACE)
        lines = trace.replay()
        assert lines == log, "replay differs from the live run"
        EXPECTED.write_text("\n".join(lines) + "\n")
        print(f"recorded {len(trace)} inputs, {len(lines)} output lines -> {TRACE.name}, {EXPECTED.name}")
        return 0
    diff = check()
    for line in diff:
        print(line)
    print("regression from trace:", "FAILED" if diff else "passed")
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main())

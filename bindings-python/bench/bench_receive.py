"""Frames per second through ``Session.frame`` + ``drain`` from Python, beside a pure-Python
``json.loads`` + dict dispatch of the same bytes, in the same run.

Every frame is a ~200-byte ``project_updated`` envelope (``type``, ``data`` with 4 fields,
``timestamp``, ``projectId``, ``epoch``, ``offset``), as in the core's Rust bench. The session is open with 10
subscriptions (3 match each message), so every frame yields one ``message`` event as a dict.

The pure-Python baseline is what the binding replaces in a naive QA script: ``json.loads`` of
the frame and a dict lookup of handlers by ``type`` (3 of 10 match, like the subscriptions),
each handler called with the message.

Usage: ``python bench/bench_receive.py [--frames N] [--rounds R] [--quick]``.
Prints one line per path and the ratios (target: session >= 1.0x the pure-Python loop).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import sockline

URL = "ws://127.0.0.1:9/ws"


def frames(n: int) -> list[str]:
    """``n`` envelopes of about 200 bytes with increasing ``offset``."""
    out = []
    for seq in range(1, n + 1):
        data = {"version": seq, "title": "Quarterly plan, v2 draft", "editor": "ann", "cursor": seq % 977}
        env = {
            "type": "project_updated",
            "data": data,
            "timestamp": "2026-11-28T17:43:07.123Z",
            "id": f"9f3a61c2-{seq}",
            "projectId": 7,
            "epoch": "e1",
            "offset": seq,
        }
        out.append(json.dumps(env, separators=(",", ":")))
    return out


def open_session() -> sockline.Session:
    """An open session joined to project 7 with 10 subscriptions, 3 of which match
    ``project_updated`` in project 7."""
    s = sockline.Session(URL, seed=1, heartbeat_interval_ms=10**9, heartbeat_timeout_ms=10**9)
    s.connect(0)
    s.transport_opened(0)
    s.frame(0, '{"type":"welcome","data":{"sessionId":"s1"}}')
    # Joined, so every frame takes the position check a project message takes in real use.
    s.join_project(0, 7)
    s.frame(0, '{"type":"project_joined","data":{"epoch":"e1","offset":0},"projectId":7}')
    for pattern, project in [
        ("project_updated", 7),
        ("project_*", None),
        ("*", None),
        ("chat", None),
        ("chat", 7),
        ("typing_*", None),
        ("agent_*", None),
        ("project_updated", 8),
        ("note", None),
        ("presence_state", None),
    ]:
        s.subscribe(0, pattern, project)
    s.drain()
    return s


def timed_session(texts: list[str], loop: Callable[[sockline.Session, list[str]], int]) -> float:
    """Seconds `loop` takes to feed `texts` to an open session; it returns the messages it saw,
    which must be every frame."""
    s = open_session()
    t0 = time.perf_counter()
    seen = loop(s, texts)
    dt = time.perf_counter() - t0
    assert seen == len(texts), f"session delivered {seen} of {len(texts)}"
    return dt


def each_frame(s: sockline.Session, texts: list[str]) -> int:
    """frame + drain per frame."""
    seen = 0
    for t in texts:
        s.frame(1, t)
        for out in s.drain():
            if out["kind"] == "message":
                seen += 1
    return seen


def batched(s: sockline.Session, texts: list[str], batch: int = 64) -> int:
    """frame_many of `batch` frames + one drain."""
    seen = 0
    for i in range(0, len(texts), batch):
        s.frame_many(1, texts[i : i + batch])
        for out in s.drain():
            if out["kind"] == "message":
                seen += 1
    return seen


def via_json(s: sockline.Session, texts: list[str]) -> int:
    """frame + drain_json + json.loads of each output (the JSON round-trip conversion)."""
    seen = 0
    for t in texts:
        s.frame(1, t)
        for text in s.drain_json():
            if json.loads(text)["kind"] == "message":
                seen += 1
    return seen


def run_python(texts: list[str]) -> float:
    """json.loads + dict dispatch per frame; returns seconds."""
    seen = [0]

    def handler(msg: dict[str, Any]) -> None:
        seen[0] += 1

    def other(msg: dict[str, Any]) -> None:
        pass

    routes: dict[str, list[Callable[[dict[str, Any]], None]]] = {
        "project_updated": [handler, other, other],
        "chat": [other, other],
        "note": [other],
        "presence_state": [other],
    }
    t0 = time.perf_counter()
    for t in texts:
        msg = json.loads(t)
        for h in routes.get(msg["type"], ()):
            h(msg)
    dt = time.perf_counter() - t0
    assert seen[0] == len(texts)
    return dt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="20,000 frames, 2 rounds")
    args = ap.parse_args(argv)
    n, rounds = (20_000, 2) if args.quick else (args.frames, args.rounds)
    texts = frames(n)
    size = sum(map(len, texts)) / len(texts)
    paths: dict[str, Callable[[list[str]], float]] = {
        "python json.loads + dispatch": run_python,
        "Session.frame + drain (each frame)": lambda t: timed_session(t, each_frame),
        "Session.frame_many(64) + drain": lambda t: timed_session(t, batched),
        "Session.frame + drain_json + json.loads": lambda t: timed_session(t, via_json),
    }
    best: dict[str, float] = {}
    for _ in range(rounds):  # interleaved, best of `rounds`: the machine is shared
        for name, fn in paths.items():
            best[name] = min(best.get(name, float("inf")), fn(texts))
    print(f"bench_receive: {n} frames of {size:.0f} bytes, best of {rounds} rounds")
    rates = {name: n / dt for name, dt in best.items()}
    for name, rate in rates.items():
        print(f"  {name:40s} {rate / 1e3:8.1f} k frames/s  {1e9 / rate:7.0f} ns/frame")
    base = rates["python json.loads + dispatch"]
    each = rates["Session.frame + drain (each frame)"] / base
    many = rates["Session.frame_many(64) + drain"] / base
    print(f"  ratio frame+drain / python: {each:.2f}x (target >= 1.0)")
    round_trip = rates["Session.frame + drain_json + json.loads"] / base
    print(f"  ratio frame_many+drain / python: {many:.2f}x")
    print(f"  ratio frame+drain_json+json.loads / python: {round_trip:.2f}x (the JSON round trip)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

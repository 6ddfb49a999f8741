"""QA: does a server keep sessions whole while connections keep dropping?

Two clients join one project on a hub whose connections are cut at random (chaos). One sends a
numbered ``at_least_once`` message every 50 ms; the other subscribes. The script checks what a
QA engineer would:

* connections really dropped, and every reconnect delay stayed inside the backoff envelope
  (equal jitter: between half and all of ``initial_ms * 2**(attempt-1)``, capped at ``max_ms``);
* both clients came back to ``open`` after every drop;
* every message arrived exactly once (resends after a drop are deduplicated);
* no callback or driver error was reported.

Against a hub you started yourself::

    sockline hub --listen 127.0.0.1:9100 --chaos-seed 7 --chaos-drop-ms 400..1200
    python qa_reconnect_chaos.py --url ws://127.0.0.1:9100/ws

or let the script start one (and always stop it)::

    python qa_reconnect_chaos.py --spawn target/debug/sockline --seconds 4

Exit status 0 when every check passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import time
from typing import Any

from sockline.aio import Client

INITIAL_MS = 100
MAX_MS = 2000
PROJECT = 9


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def spawn_hub(binary: str, seed: int, drop: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [binary, "hub", "--listen", f"127.0.0.1:{port}", "--chaos-seed", str(seed), "--chaos-drop-ms", drop],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, f"ws://127.0.0.1:{port}/ws"
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"hub exited with {proc.returncode}") from None
            time.sleep(0.02)
    proc.kill()
    raise RuntimeError("hub did not start")


def make_client(url: str, user: str, seed: int) -> Client:
    return Client(
        url,
        seed=seed,
        user_id=user,
        reconnect={"initial_ms": INITIAL_MS, "max_ms": MAX_MS, "max_attempts": None, "jitter": "equal"},
        heartbeat={"interval_ms": 1000, "timeout_ms": 1000},
    )


async def qa(url: str, seconds: float) -> list[str]:
    """Runs the scenario; returns the failed checks (empty when all pass)."""
    failures: list[str] = []
    sender = make_client(url, "qa-sender", 1)
    receiver = make_client(url, "qa-receiver", 2)
    sender_events = sender.events()
    async with sender, receiver:
        inbox = receiver.subscribe("qa_tick", project_id=PROJECT)
        for c in (sender, receiver):
            await c.wait_for_state("open", 10)
            c.join_project(PROJECT)
        await asyncio.sleep(0.3)  # both joined on the hub before the first tick
        sent = 0
        stop_at = time.monotonic() + seconds
        while time.monotonic() < stop_at:
            sender.send("qa_tick", sent, project_id=PROJECT, delivery="at_least_once")
            sent += 1
            await asyncio.sleep(0.05)
        got: list[int] = []
        deadline = time.monotonic() + 15
        while len(set(got)) < sent and time.monotonic() < deadline:
            try:
                m = await inbox.recv(timeout=max(0.1, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                break
            if m is None:
                break
            got.append(m["data"])
        events: list[dict[str, Any]] = []
        while True:
            try:
                e = await sender_events.recv(timeout=0.01)
            except asyncio.TimeoutError:
                break
            if e is None:
                break
            events.append(e)
        scheduled = [e for e in events if e["kind"] == "reconnect_scheduled"]
        print(f"sent {sent}, received {len(got)} ({len(set(got))} distinct)")
        print(f"sender reconnects: {len(scheduled)}, delays {[e['delay_ms'] for e in scheduled]}")
        if not scheduled:
            failures.append("no connection was dropped: is chaos on?")
        for e in scheduled:
            nominal = min(INITIAL_MS * 2 ** (e["attempt"] - 1), MAX_MS)
            if not nominal // 2 <= e["delay_ms"] <= nominal:
                failures.append(f"attempt {e['attempt']} waited {e['delay_ms']} ms, outside [{nominal // 2}, {nominal}]")
        missing = sorted(set(range(sent)) - set(got))
        if missing:
            failures.append(f"{len(missing)} messages never arrived: {missing[:10]}")
        dups = len(got) - len(set(got))
        if dups:
            failures.append(f"{dups} duplicate deliveries")
        for c, name in ((sender, "sender"), (receiver, "receiver")):
            try:
                await c.wait_for_state("open", 10)
            except asyncio.TimeoutError:
                failures.append(f"{name} never came back to open (stuck in {c.state})")
            if c.errors:
                failures.append(f"{name} reported errors: {c.errors}")
    return failures


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="reconnect QA against a hub with chaos on")
    ap.add_argument("--url", help="a running hub's ws:// URL (started with --chaos-drop-ms)")
    ap.add_argument("--spawn", metavar="SOCKLINE", help="start `SOCKLINE hub` with chaos on a free port")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--chaos-seed", type=int, default=7)
    ap.add_argument("--chaos-drop-ms", default="400..1200")
    args = ap.parse_args(argv)
    proc = None
    if args.spawn:
        proc, url = spawn_hub(args.spawn, args.chaos_seed, args.chaos_drop_ms)
    elif args.url:
        url = args.url
    else:
        ap.error("give --url or --spawn")
    try:
        failures = asyncio.run(qa(url, args.seconds))
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
    for f in failures:
        print(f"FAIL: {f}")
    print("reconnect QA:", "FAILED" if failures else "passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

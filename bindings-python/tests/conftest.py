"""Fixtures: paths into the repository, and the real `sockline hub` as a subprocess."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sockline import Trace

REPO = Path(__file__).resolve().parents[2]
TRACES = REPO / "core" / "tests" / "traces"


def replayed_dicts(trace: Trace) -> list[dict[str, Any]]:
    """What `trace.replay()` prints, as dicts without the `at` each line adds: the outputs the
    recorded session itself drained."""
    lines: list[dict[str, Any]] = [json.loads(line) for line in trace.replay()]
    for line in lines:
        del line["at"]
    return lines


def sockline_binary() -> Path:
    """The `sockline` CLI: $SOCKLINE_BIN, else ${CARGO_TARGET_DIR:-target}/debug/sockline."""
    env = os.environ.get("SOCKLINE_BIN")
    if env:
        return Path(env)
    target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
    if not target.is_absolute():
        target = REPO / target
    return target / "debug" / "sockline"


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Hub:
    """The real reference hub on a loopback port; restartable on the same port."""

    def __init__(self, *extra: str) -> None:
        self.port = free_port()
        self.extra = list(extra)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The hub's WebSocket URL."""
        return f"ws://127.0.0.1:{self.port}/ws"

    def start(self) -> None:
        """Starts the hub and waits until it accepts connections."""
        binary = sockline_binary()
        if not binary.exists():
            raise RuntimeError(
                f"{binary} is missing: build it with `cargo build -p sockline-tokio --features cli --bin sockline`"
            )
        self.proc = subprocess.Popen(
            [str(binary), "hub", "--listen", f"127.0.0.1:{self.port}", *self.extra],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hub exited with {self.proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("hub did not start listening within 10 s")

    def stop(self) -> None:
        """Kills the hub (abruptly, like a crash) and waits for it to exit."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None


@pytest.fixture
def hub() -> Iterator[Hub]:
    """A running hub with fast agent streams; always killed afterwards."""
    h = Hub("--agent-chunk-ms", "10", "--agent-chunks", "12")
    try:
        h.start()
        yield h
    finally:
        h.stop()

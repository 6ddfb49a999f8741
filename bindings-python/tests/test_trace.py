"""sockline.Trace: replay identical to the golden output of `sockline replay`, load/save."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

import sockline
from sockline import Session, Trace

from conftest import TRACES, replayed_dicts, sockline_binary

GOLDEN = sorted(TRACES.glob("*.json"))


def test_there_are_golden_traces() -> None:
    assert len(GOLDEN) >= 3, f"no golden traces under {TRACES}"


@pytest.mark.parametrize("path", GOLDEN, ids=[p.stem for p in GOLDEN])
def test_replay_matches_the_golden_output(path: Path) -> None:
    expected = path.with_suffix(".out").read_text().splitlines()
    assert Trace.load(path).replay() == expected


@pytest.mark.parametrize("path", GOLDEN, ids=[p.stem for p in GOLDEN])
def test_replay_matches_the_cli(path: Path) -> None:
    binary = sockline_binary()
    assert binary.exists(), f"{binary} missing: cargo build -p sockline-tokio --features cli --bin sockline"
    cli = subprocess.run([str(binary), "replay", str(path)], capture_output=True, text=True, check=True)
    assert Trace.load(str(path)).replay() == cli.stdout.splitlines()


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    original = Trace.load(GOLDEN[0])
    out = tmp_path / "copy.json"
    original.save(out)
    copy = Trace.load(out)
    assert copy == original
    assert copy.to_json() == original.to_json()
    assert copy.replay() == original.replay()
    assert copy.seed == original.seed
    assert copy.inputs == json.loads(original.to_json())["inputs"]
    assert copy.config["url"] == original.config["url"]


def test_a_live_recording_replays_to_what_the_session_emitted() -> None:
    s = Session("ws://127.0.0.1:9/ws", seed=11, record=True, reconnect_jitter="full")
    s.connect(0)
    s.transport_error(50, "refused")
    emitted: list[dict[str, object]] = []
    now = 0
    for _ in range(6):
        emitted += [o for o in s.drain()]
        deadline = s.poll_timeout()
        if deadline is None:
            break
        now = deadline
        s.handle_timeout(now)
        s.transport_error(now + 1, "refused")
    emitted += s.drain()
    trace = s.trace()
    assert trace is not None
    assert replayed_dicts(trace) == emitted


def test_bad_traces_raise_trace_error(tmp_path: Path) -> None:
    with pytest.raises(sockline.TraceError):
        Trace.from_json("{}")
    with pytest.raises(sockline.TraceError):
        Trace.from_json('{"config":{"url":"ws://h/"},"inputs":[{"at":0,"input":{"kind":"boom"}}]}')
    with pytest.raises(sockline.TraceError, match="url"):
        Trace.from_json('{"config":{"url":"http://h/"},"seed":0,"inputs":[]}').replay()
    with pytest.raises(FileNotFoundError):
        Trace.load(tmp_path / "missing.json")
    assert isinstance(sockline.TraceError("x"), ValueError)

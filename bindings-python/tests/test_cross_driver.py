"""Drivers decide nothing: the tokio client (through `sockline connect --record`) and the asyncio
client go through the same scripted server history over real loopback WebSockets, and must feed
their sessions the same inputs and get the same outputs, line for line.

The server plays a fixed script per connection and waits for the client's frames rather than
sleeping: (1) welcome, two messages, then an abrupt TCP close without a close frame; (2) a resumed
welcome, a message, then a close frame without a status code; (3) a resumed welcome, a message,
then a stall (no reading, no answers) until the client's heartbeat gives up; (4) a resumed
welcome, a message, then the client's own clean close.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import struct
import tempfile
from pathlib import Path
from typing import Any

from sockline.aio import Client

from conftest import sockline_binary

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
SEED = 7
HEARTBEAT = {"interval_ms": 1000, "timeout_ms": 300}
RECONNECT = {"initial_ms": 100, "stable_ms": 60_000}
WAIT = 20.0


class Peer:
    """The server side of one connection: a minimal RFC 6455 endpoint with full control."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def handshake(self) -> None:
        request = await self.reader.readuntil(b"\r\n\r\n")
        key = next(
            line.split(b":", 1)[1].strip()
            for line in request.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key:")
        )
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        self.writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )

    async def frame(self) -> tuple[int, bytes]:
        b0, b1 = await self.reader.readexactly(2)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
        mask = await self.reader.readexactly(4) if b1 & 0x80 else b"\0\0\0\0"
        data = await self.reader.readexactly(n)
        return b0 & 0x0F, bytes(b ^ mask[i % 4] for i, b in enumerate(data))

    async def expect(self, msg_type: str) -> dict[str, Any]:
        opcode, data = await self.frame()
        msg: dict[str, Any] = json.loads(data) if opcode == 1 else {}
        assert msg.get("type") == msg_type, (opcode, data)
        return msg

    def send_raw(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        size = bytes([n]) if n < 126 else bytes([126]) + struct.pack("!H", n)
        self.writer.write(bytes([0x80 | opcode]) + size + payload)

    def send(self, msg_type: str, data: Any, **extra: Any) -> None:
        msg = {"type": msg_type, "data": data, **extra}
        self.send_raw(1, json.dumps(msg, separators=(",", ":")).encode())

    async def until_close_frame(self) -> bytes | None:
        """Reads until the client's close frame (its payload), or None at EOF."""
        try:
            while True:
                opcode, data = await self.frame()
                if opcode == 8:
                    return data
        except (asyncio.IncompleteReadError, ConnectionError):
            return None

    async def end(self) -> None:
        try:
            await self.writer.drain()
        except ConnectionError:
            pass
        self.writer.close()  # TCP close, no close frame of ours


class ScriptedServer:
    """Plays the script, one step per connection, in order."""

    def __init__(self) -> None:
        self.connections = 0
        self.released = asyncio.Event()
        self.server: asyncio.Server | None = None
        self.errors: list[BaseException] = []

    async def start(self) -> str:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}/ws"

    def reset(self) -> None:
        """Starts the script again; a stalled connection of the last run is let go."""
        self.released.set()
        self.released = asyncio.Event()
        self.connections = 0

    async def stop(self) -> None:
        self.released.set()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        peer = Peer(reader, writer)
        try:
            await self.play(self.connections, peer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except Exception as e:  # reported by the test, never swallowed
            self.errors.append(e)
        finally:
            writer.close()

    async def play(self, n: int, peer: Peer) -> None:
        await peer.handshake()
        await peer.expect("hello")
        welcome: dict[str, Any] = {"sessionId": "s1"}
        if n > 1:
            welcome["resumed"] = True
        peer.send("welcome", welcome)
        # The client re-joins project 1 after each welcome, from its position once it has one:
        # answered as recovered, with nothing to replay (the script sends each note once).
        join = await peer.expect("project_subscribe")
        since = join.get("data", {}).get("offset")
        joined: dict[str, Any] = {"epoch": "e1", "offset": since or 0}
        if since is not None:
            joined.update(recovered=True, replayed=0)
        peer.send("project_joined", joined, projectId=1)
        if n == 1:
            peer.send("note", {"n": 1}, projectId=1, epoch="e1", offset=1)
            peer.send("note", {"n": 2}, projectId=1, epoch="e1", offset=2)
            await peer.end()  # abrupt: no close frame
        elif n == 2:
            peer.send("note", {"n": 3}, projectId=1, epoch="e1", offset=3)
            peer.send_raw(8, b"")  # a close frame without a status code
            await peer.until_close_frame()
            await peer.end()
        elif n == 3:
            peer.send("note", {"n": 4}, projectId=1, epoch="e1", offset=4)
            await peer.writer.drain()
            await self.released.wait()  # stalled: reads nothing, answers nothing
        else:
            peer.send("note", {"n": 5}, projectId=1, epoch="e1", offset=5)
            payload = await peer.until_close_frame()
            if payload is not None:
                peer.send_raw(8, payload[:2])  # echo the code, no reason
            await peer.end()


def is_last(out: dict[str, Any]) -> bool:
    return out.get("kind") == "message" and out["message"].get("offset") == 5


async def run_tokio(url: str, record: Path) -> list[dict[str, Any]]:
    args = ["connect", url, "--json", "--seed", str(SEED), "--user", "u", "--project", "1"]
    args += ["--record", str(record)]
    for k, v in HEARTBEAT.items():
        args += ["--set", f"heartbeat.{k}={v}"]
    for k, v in RECONNECT.items():
        args += ["--set", f"reconnect.{k}={v}"]
    proc = await asyncio.create_subprocess_exec(
        str(sockline_binary()),
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    outputs: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(WAIT):
            while not outputs or not is_last(outputs[-1]):
                line = await proc.stdout.readline()
                assert line, "the CLI ended early"
                outputs.append(json.loads(line))
            proc.stdin.close()  # EOF: a clean close
            rest, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    outputs += [json.loads(line) for line in rest.decode().splitlines()]
    for out in outputs:
        del out["at"]
    return outputs


async def run_aio(url: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    c = Client(url, seed=SEED, user_id="u", record=True, heartbeat=HEARTBEAT, reconnect=RECONNECT)
    outs = c.outputs()
    c.subscribe("*")
    c.join_project(1)
    await c.start()
    outputs: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(WAIT):
            while not outputs or not is_last(outputs[-1]):
                out = await outs.recv()
                assert out is not None, "the client ended early"
                outputs.append(out)
    finally:
        await c.close()
    while (out := await outs.recv(timeout=1)) is not None:
        outputs.append(out)
    trace = c.trace()
    assert trace is not None
    return outputs, json.loads(trace.to_json())


def inputs(trace: dict[str, Any]) -> list[dict[str, Any]]:
    """The inputs without their times; `suspend` steps only record how late a runtime woke."""
    return [step["input"] for step in trace["inputs"] if step["input"]["kind"] != "suspend"]


async def both() -> tuple[Any, ...]:
    results: list[Any] = []
    server = ScriptedServer()
    url = await server.start()  # one URL for both runs: it is in the config and the outputs
    try:
        with tempfile.TemporaryDirectory() as tmp:
            record = Path(tmp) / "tokio.json"
            for runner in ("tokio", "aio"):
                server.reset()
                if runner == "tokio":
                    results.append(await run_tokio(url, record))
                    results.append(json.loads(record.read_text()))
                else:
                    results.extend(await run_aio(url))
                assert not server.errors, server.errors
                assert server.connections == 4, f"{runner}: {server.connections} connections"
    finally:
        await server.stop()
    return tuple(results)


def test_tokio_and_asyncio_drivers_feed_the_same_inputs_and_get_the_same_outputs() -> None:
    tokio_out, tokio_trace, aio_out, aio_trace = asyncio.run(both())
    assert tokio_trace["config"] == aio_trace["config"] and tokio_trace["seed"] == SEED
    tokio_in, aio_in = inputs(tokio_trace), inputs(aio_trace)
    for i, (a, b) in enumerate(zip(tokio_in, aio_in)):
        assert a == b, f"input {i} differs:\ntokio {a}\naio   {b}"
    assert len(tokio_in) == len(aio_in)
    for i, (a, b) in enumerate(zip(tokio_out, aio_out)):
        assert a == b, f"output {i} differs:\ntokio {a}\naio   {b}"
    assert len(tokio_out) == len(aio_out)
    # The history really happened: each way a transport ends, named by the core.
    reasons = [o["reason"] for o in tokio_out if o["kind"] == "status" and o["to"] == "reconnecting"]
    assert reasons == ["connection lost (1006)", "closed by peer (1005)", "heartbeat timeout"]
    kinds = [i["kind"] for i in tokio_in]
    assert kinds[:3] == ["subscribe", "join_project", "connect"]
    assert {"transport_lost", "transport_closed", "timeout"} <= set(kinds)
    assert "transport_error" not in kinds
    assert [o["message"]["offset"] for o in tokio_out if o["kind"] == "message"] == [1, 2, 3, 4, 5]
    assert tokio_out[-1] == {"kind": "status", "from": "closing", "to": "closed", "reason": "closed by client", "attempt": 3}

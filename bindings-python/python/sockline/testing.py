"""Deterministic test doubles from ``sockline-core``'s ``testing`` module.

* :class:`VirtualClock` -- a clock that moves only when told to.
* :class:`ScriptedServer` -- a protocol-v1 peer that welcomes, pongs, acks, numbers what it pushes
  and replays it on resume; it can refuse or hang new transports (``set_accept``), answer with a
  latency, and a test can inject raw frames and closes, now or after a delay.
* :class:`Network` -- client sessions and the real hub core (the same protocol logic the tokio
  hub runs) on in-memory links in virtual time, with seeded faults (``drop_link``,
  ``stall_link``, ``set_faults``) and hub restarts: a QA script runs a whole deployment in-process
  in milliseconds.
* :class:`Harness` -- drives a :class:`sockline.Session` against a ``ScriptedServer`` on virtual
  time: ``harness.advance(30_000)`` delivers frames and fires deadlines as they fall due, so a
  QA script can assert "after 3 failed attempts the next delay is 4 s" without sleeping.

Example::

    from sockline.testing import Harness, ScriptedServer

    server = ScriptedServer()
    server.set_accept("refuse", 1013, "try later")
    h = Harness(server=server, reconnect_jitter="none")
    h.connect()
    h.advance(10_000)
    delays = [e["delay_ms"] for e in h.events if e["kind"] == "reconnect_scheduled"]
    assert delays[:3] == [1000, 2000, 4000]
"""

from ._sockline import Harness, Network, ScriptedServer, VirtualClock

__all__ = ["Harness", "Network", "ScriptedServer", "VirtualClock"]

"""What the WebSocket-signaling test peers (aiortc_client.py, gst_ws.py)
share: their JSON-lines output, the common part of their command line and
how a run ends. Standard library only: each peer imports it before its own
WebRTC stack.
"""

import argparse
import asyncio
import json


def emit(**kw):
    """Prints one event as a JSON line (the Go tests read them)."""
    print(json.dumps(kw), flush=True)


def arg_parser(name):
    """The command line of both: run URL ROOM, the name and the wants."""
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["run"])
    ap.add_argument("url")
    ap.add_argument("room")
    ap.add_argument("--name", default=name)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--want-video", type=int, default=30)
    ap.add_argument("--want-audio", type=int, default=50)
    return ap


def run(make_participant):
    """Makes a participant and runs it (its async run returns whether the
    wants were met): exit status 0 met, 1 not met in time, 2 failed (the
    error printed as a "failed" event)."""
    try:
        met = asyncio.run(make_participant().run())
    except Exception as e:
        emit(event="failed", error="%s: %s" % (type(e).__name__, e))
        return 2
    return 0 if met else 1


class Calls:
    """A peer's JSON-RPC calls in flight on its WebSocket."""

    def __init__(self):
        self.next_id = 0
        self.pending = {}

    async def call(self, ws, method, params):
        """Sends a request and returns its result (raises on an error
        response, or when none comes within 20 s)."""
        self.next_id += 1
        rid = self.next_id
        fut = asyncio.get_running_loop().create_future()
        self.pending[rid] = fut
        await ws.send(json.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": params}))
        msg = await asyncio.wait_for(fut, 20)
        if "error" in msg:
            raise RuntimeError("%s failed: %s" % (method, msg["error"]))
        return msg["result"]

    def answered(self, msg):
        """Hands a response to the call waiting for it; False when none
        waits (the peer reports it as an error response)."""
        fut = self.pending.pop(msg.get("id"), None)
        if fut is None:
            return False
        fut.set_result(msg)
        return True

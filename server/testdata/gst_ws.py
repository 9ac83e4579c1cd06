#!/usr/bin/python3
"""A Starling participant built on GStreamer's webrtcbin, on the WebSocket signaling.

Nothing here comes from Starling: it follows docs/PROTOCOL.md with
GStreamer's WebRTC stack (Debian 12's GStreamer 1.22) and python3-websockets,
for server/gst_ws_test.go and for trying a server by hand. webrtcbin is a
client unlike the others: it trickles candidates with an m-line index and
no sdpMid, puts the msid only in a=ssrc lines, and offers max-bundle with
port 0 and a=bundle-only on every section but the first.

  gst_ws.py check
  gst_ws.py run URL ROOM [--name N] [--seconds S] [--want-video N] [--want-audio N] [--until-eof]

`run` joins ROOM, publishes test video (VP8) and audio (Opus) on a publisher
webrtcbin (trickling, as webrtcbin does), answers the server's subscriber
offers on a second webrtcbin and decodes what arrives. It prints one JSON
line per event; {"event":"met",...} once it has decoded --want-video video
frames and --want-audio audio buffers; then (with --until-eof, once standard
input closes) it sends `leave` and prints {"event":"summary",...}.

Exit status: 0 done, 1 wants not met in time, 2 protocol error, 3 pieces missing.
"""

import asyncio
import json
import re
import sys
import threading
import time

from wsclient import Calls, arg_parser, emit, run

try:
    from gst_nice import ice_transport, missing_elements, publish_pipeline, use_local_ip  # requires the typelibs
    from gi.repository import Gst, GstSdp, GstWebRTC
    import websockets
except (ImportError, ValueError) as e:
    print("missing GStreamer Python bindings or websockets: %s" % e, file=sys.stderr)
    sys.exit(3)

NEEDED = ["webrtcbin", "nicesrc", "dtlssrtpenc", "vp8enc", "vp8dec", "opusenc", "opusdec",
          "rtpvp8pay", "rtpopuspay", "decodebin", "videotestsrc", "audiotestsrc"]


def promise(emit_with):
    p = Gst.Promise.new()
    emit_with(p)
    p.wait()
    return p.get_reply()


class Participant:
    def __init__(self, args):
        self.args = args
        self.loop = None
        self.ws = None
        self.calls = Calls()
        self.counts = {"video": 0, "audio": 0}
        self.pipe = Gst.parse_launch(publish_pipeline("pub"))
        self.pub = self.pipe.get_by_name("pub")
        # The subscriber in a pipeline of its own: its state does not hold
        # the publisher's back.
        self.subpipe = Gst.Pipeline.new("subscriber")
        self.sub = Gst.ElementFactory.make("webrtcbin", "sub")
        self.sub.set_property("bundle-policy", GstWebRTC.WebRTCBundlePolicy.MAX_BUNDLE)
        self.subpipe.add(self.sub)
        self.pub.connect("on-ice-candidate", self.on_candidate, "publisher")
        self.sub.connect("on-ice-candidate", self.on_candidate, "subscriber")
        self.sub.connect("pad-added", self.on_pad)
        use_local_ip(self.pub, args.local_ip)
        use_local_ip(self.sub, args.local_ip)
        self.errors = []

    def send(self, obj):
        asyncio.run_coroutine_threadsafe(self.ws.send(json.dumps(obj)), self.loop)

    def on_candidate(self, _w, mline, candidate, target):
        if self.args.no_trickle:
            return
        # webrtcbin gives the m-line index only: sdpMid stays out, as a
        # browser would leave it out when it does not know it.
        self.send({"jsonrpc": "2.0", "method": "candidate",
                   "params": {"target": target, "candidate": {"candidate": candidate, "sdpMLineIndex": mline}}})

    def on_pad(self, _w, pad):
        if pad.get_direction() != Gst.PadDirection.SRC:
            return
        dec = Gst.ElementFactory.make("decodebin")
        dec.connect("pad-added", self.on_decoded)
        self.subpipe.add(dec)
        dec.sync_state_with_parent()
        pad.link(dec.get_static_pad("sink"))

    def on_decoded(self, _dec, pad):
        caps = pad.get_current_caps() or pad.query_caps(None)
        kind = "video" if caps.to_string().startswith("video") else "audio"
        sink = Gst.ElementFactory.make("fakesink")
        sink.set_property("sync", False)
        self.subpipe.add(sink)
        sink.sync_state_with_parent()
        pad.link(sink.get_static_pad("sink"))

        def count(_pad, _info):
            self.counts[kind] += 1
            return Gst.PadProbeReturn.OK

        sink.get_static_pad("sink").add_probe(Gst.PadProbeType.BUFFER, count)
        emit(event="decoding", kind=kind, caps=caps.to_string()[:60])

    async def call(self, method, params):
        return await self.calls.call(self.ws, method, params)

    async def reader(self):
        async for raw in self.ws:
            msg = json.loads(raw)
            if "method" not in msg:
                if not self.calls.answered(msg):
                    self.errors.append(msg)
                    emit(event="error-response", msg=msg)
                continue
            m, p = msg["method"], msg.get("params") or {}
            if m == "offer":
                await self.loop.run_in_executor(None, self.answer, p["sdp"])
            elif m == "candidate":
                c = p.get("candidate")
                w = self.sub if p.get("target") == "subscriber" else self.pub
                if c and c.get("candidate"):
                    w.emit("add-ice-candidate", c.get("sdpMLineIndex", 0), c["candidate"])
            elif m in ("trackPublished", "participantJoined", "participantLeft", "leave"):
                emit(event=m, params=p)

    def add_receivers(self, sdp):
        """webrtcbin answers only sections it has a transceiver for: add a
        receive-only one, with the offered codec's caps, for each new one."""
        have = 0
        while self.sub.emit("get-transceiver", have) is not None:
            have += 1
        sections = re.split(r"\r?\nm=", sdp)[1:]
        for i, sec in enumerate(sections):
            if i < have or not (sec.startswith("audio") or sec.startswith("video")):
                continue
            pt = sec.split("\n", 1)[0].split()[3]
            m = re.search(r"a=rtpmap:%s ([^/\s]+)/(\d+)" % pt, sec)
            caps = Gst.Caps.from_string("application/x-rtp,media=%s,encoding-name=%s,payload=%s,clock-rate=%s" % (
                sec[:5], m.group(1).upper(), pt, m.group(2)))
            self.sub.emit("add-transceiver", GstWebRTC.WebRTCRTPTransceiverDirection.RECVONLY, caps)

    def answer(self, sdp):
        self.add_receivers(sdp)
        _, msg = GstSdp.SDPMessage.new_from_text(sdp)
        offer = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.OFFER, msg)
        promise(lambda p: self.sub.emit("set-remote-description", offer, p))
        reply = promise(lambda p: self.sub.emit("create-answer", None, p))
        ans = reply.get_value("answer")
        if ans is None:
            emit(event="failed", error="webrtcbin cannot answer: %s" % reply.to_string(), offer=sdp)
            return
        promise(lambda p: self.sub.emit("set-local-description", ans, p))
        self.send({"jsonrpc": "2.0", "method": "answer", "params": {"sdp": ans.sdp.as_text()}})
        if self.args.dump:
            print("OFFER\n%s\nANSWER\n%s" % (sdp, ans.sdp.as_text()), file=sys.stderr, flush=True)
        emit(event="answered")

    def make_offer(self):
        for i in range(2):
            t = self.pub.emit("get-transceiver", i)
            if t is not None:
                t.set_property("direction", GstWebRTC.WebRTCRTPTransceiverDirection.SENDONLY)
        # webrtcbin writes a section's a=ssrc (msid) lines only once its
        # source has caps: on a busy machine the video's come late, and an
        # offer made before announced the audio alone. Offer when both are in.
        deadline = time.time() + 20
        while True:
            reply = promise(lambda p: self.pub.emit("create-offer", None, p))
            offer = reply.get_value("offer")
            if offer is None:
                raise RuntimeError("webrtcbin cannot offer: %s" % reply.to_string())
            text = offer.sdp.as_text()
            sections = text.split("\nm=")[1:]
            if all(re.search(r"^a=ssrc:\d+ msid:", m, re.M) for m in sections) or time.time() > deadline:
                break
            time.sleep(0.05)
        promise(lambda p: self.pub.emit("set-local-description", offer, p))
        if self.args.no_trickle:
            deadline = time.time() + 10
            while time.time() < deadline and self.pub.get_property(
                    "ice-gathering-state") != GstWebRTC.WebRTCICEGatheringState.COMPLETE:
                time.sleep(0.05)
            return self.pub.get_property("local-description").sdp.as_text()
        return offer.sdp.as_text()

    def apply_answer(self, sdp):
        _, msg = GstSdp.SDPMessage.new_from_text(sdp)
        ans = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, msg)
        promise(lambda p: self.pub.emit("set-remote-description", ans, p))

    async def run(self):
        a = self.args
        self.loop = asyncio.get_running_loop()
        async with websockets.connect(a.url, max_size=2 ** 20) as ws:
            self.ws = ws
            self.pipe.set_state(Gst.State.PLAYING)
            self.subpipe.set_state(Gst.State.PLAYING)
            reader = asyncio.ensure_future(self.reader())
            res = await self.call("join", {"room": a.room, "name": a.name})
            emit(event="joined", participantId=res["participant"]["id"])
            sdp = await self.loop.run_in_executor(None, self.make_offer)
            # The msid track ids, from the a=ssrc lines webrtcbin writes.
            tracks, kind = [], None
            for line in sdp.splitlines():
                if line.startswith("m="):
                    kind = line[2:].split()[0]
                m = re.match(r"a=ssrc:\d+ msid:\S+ (\S+)", line)
                if m and kind and all(t["trackId"] != m.group(1) for t in tracks):
                    tracks.append({"trackId": m.group(1), "source": "camera" if kind == "video" else "microphone"})
            pub = await self.call("offer", {"sdp": sdp, "tracks": tracks})
            emit(event="published", tracks=pub["tracks"])
            await self.loop.run_in_executor(None, self.apply_answer, pub["sdp"])
            stdin_closed = asyncio.Event()
            if a.until_eof:
                threading.Thread(target=lambda: (sys.stdin.read(), self.loop.call_soon_threadsafe(stdin_closed.set)),
                                 daemon=True).start()
            deadline, met = time.time() + a.seconds, False
            while time.time() < deadline:
                await asyncio.sleep(0.25)
                if reader.done():
                    reader.result()
                    raise RuntimeError("the server closed the socket")
                if not met and self.counts["video"] >= a.want_video and self.counts["audio"] >= a.want_audio:
                    met = True
                    emit(event="met", video_frames=self.counts["video"], audio_buffers=self.counts["audio"])
                if met and (not a.until_eof or stdin_closed.is_set()):
                    break
            ice = {"publisher": ice_transport(self.pub), "subscriber": ice_transport(self.sub)}  # before leave closes them
            await self.call("leave", {})
            emit(event="summary", met=met, video_frames=self.counts["video"], audio_buffers=self.counts["audio"],
                 errors=self.errors, ice=ice)
            reader.cancel()
        self.pipe.set_state(Gst.State.NULL)
        self.subpipe.set_state(Gst.State.NULL)
        return met


def main():
    if missing_elements(NEEDED):
        return 3
    if len(sys.argv) > 1 and sys.argv[1] == "check":
        return 0
    ap = arg_parser("gstreamer")
    ap.add_argument("--until-eof", action="store_true")
    ap.add_argument("--no-trickle", action="store_true", help="publisher candidates in the offer only")
    ap.add_argument("--dump", action="store_true", help="print the subscriber SDP on stderr")
    ap.add_argument("--local-ip", help="gather host candidates on this address only (e.g. 127.0.0.1)")
    args = ap.parse_args()
    return run(lambda: Participant(args))


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""A Starling participant built on aiortc, speaking the WebSocket signaling.

Nothing here comes from Starling: it follows docs/PROTOCOL.md with Python's
own WebRTC stack (aiortc, Debian's python3-aiortc) and WebSocket library
(python3-websockets, which offers permessage-deflate like a browser), for
server/aiortc_test.go and for trying a server by hand.

  aiortc_client.py check
  aiortc_client.py run URL ROOM [--name N] [--seconds S] [--video-codec vp8|h264]
                   [--want-video N] [--want-audio N] [--want-data N] [--no-publish]

`run` joins ROOM, answers the server's subscriber offers (aiortc does not
trickle: its candidates are in its SDP; the server's trickled candidates are
added), publishes a generated video (moving bars, 320x240, 15 fps) and
audio (a 440 Hz tone) with a `data` channel, sends one data message a second,
and counts the frames it decodes from the other participants. Once it has
decoded --want-video video frames and --want-audio audio frames from someone
else and received --want-data data messages it prints {"event":"met",...}; it
then stops (with --until-eof: once its standard input closes; in any case
after --seconds), sends `leave`, and prints {"event":"summary",...} last. One
JSON line per event.

Exit status: 0 done (wants met), 1 wants not met in time, 2 usage or
protocol error, 3 aiortc or websockets missing.
"""

import asyncio
import fractions
import json
import math
import sys
import threading
import time

from wsclient import Calls, arg_parser, emit, run

try:
    import numpy
    import websockets
    from aiortc import RTCPeerConnection, RTCSessionDescription
    from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
    from aiortc.rtcrtpsender import RTCRtpSender
    from aiortc.sdp import candidate_from_sdp
    from av import AudioFrame, VideoFrame
except ImportError as e:
    print("missing Python packages: %s (install python3-aiortc python3-websockets)" % e, file=sys.stderr)
    sys.exit(3)


def honour_h264_keyframe_requests():
    """aiortc 1.4's H.264 encoder ignores force_keyframe (its VP8 one honours
    it), so a PLI never gets a keyframe and a late subscriber waits for the
    encoder's next IDR (x264's default GOP: 250 frames). Starting a fresh
    encoder context makes the next frame an IDR. This is aiortc's bug, not
    the server's: any SFU asks for keyframes with PLI."""
    from aiortc.codecs import h264

    encode_frame = h264.H264Encoder._encode_frame

    def patched(self, frame, force_keyframe):
        if force_keyframe and self.codec is not None:
            self.codec, self.buffer_data, self.buffer_pts = None, b"", None
        return encode_frame(self, frame, force_keyframe)

    h264.H264Encoder._encode_frame = patched


class Paced(MediaStreamTrack):
    """A track whose recv is paced in real time, one frame a period."""

    period = 0.02

    def __init__(self):
        super().__init__()
        self.n = 0
        self.start = None

    async def next_frame(self):
        """Counts the next frame (self.n) and waits until it is due."""
        if self.start is None:
            self.start = time.time()
        self.n += 1
        wait = self.start + self.n * self.period - time.time()
        if wait > 0:
            await asyncio.sleep(wait)


class Bars(Paced):
    """320x240 video at 15 fps whose bars move, so every frame differs."""

    kind = "video"
    period = 1 / 15

    async def recv(self):
        await self.next_frame()
        img = numpy.zeros((240, 320, 3), numpy.uint8)
        x = (self.n * 8) % 320
        img[:, x:x + 40] = (255, 200, 0)
        img[(self.n * 4) % 240:, :20] = (0, 80, 255)
        f = VideoFrame.from_ndarray(img, format="bgr24")
        f.pts, f.time_base = self.n * 6000, fractions.Fraction(1, 90000)
        return f


class Tone(Paced):
    """A 440 Hz tone, 20 ms frames at 48 kHz."""

    kind = "audio"

    async def recv(self):
        await self.next_frame()
        t = (numpy.arange(960) + self.n * 960) / 48000
        samples = (numpy.sin(2 * math.pi * 440 * t) * 8000).astype(numpy.int16)
        f = AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        f.sample_rate, f.pts, f.time_base = 48000, self.n * 960, fractions.Fraction(1, 48000)
        return f


class Participant:
    def __init__(self, args):
        self.args = args
        self.ws = None
        self.calls = Calls()
        self.me = None
        self.sub = RTCPeerConnection()
        self.pub = None
        self.frames = {"video": 0, "audio": 0}
        self.sizes = set()
        self.tracks = []
        self.data = []
        self.sent_data = 0
        self.events = asyncio.Queue()
        self.sub_lock = asyncio.Lock()
        self.sub.on("track", self.on_track)
        self.sub.on("datachannel", self.on_datachannel)

    async def call(self, method, params):
        return await self.calls.call(self.ws, method, params)

    async def notify(self, method, params):
        await self.ws.send(json.dumps({"jsonrpc": "2.0", "method": method, "params": params}))

    async def reader(self):
        async for raw in self.ws:
            msg = json.loads(raw)
            if "method" not in msg:
                if not self.calls.answered(msg):
                    emit(event="error-response", msg=msg)
                continue
            await self.events.put(msg)

    async def handle(self):
        while True:
            msg = await self.events.get()
            m, p = msg["method"], msg.get("params") or {}
            if m == "offer":
                await self.answer(p["sdp"])
            elif m == "candidate":
                await self.add_candidate(p)
            elif m in ("trackPublished", "participantJoined", "participantLeft", "trackUnpublished", "leave", "subscriptionUpdated"):
                emit(event=m, params=p)

    async def answer(self, sdp):
        async with self.sub_lock:
            await self.sub.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            await self.sub.setLocalDescription(await self.sub.createAnswer())
            await self.notify("answer", {"sdp": self.sub.localDescription.sdp})
        emit(event="answered")

    async def add_candidate(self, p):
        c = p.get("candidate")
        pc = self.sub if p.get("target") == "subscriber" else self.pub
        if c is None or pc is None or not c.get("candidate"):
            return
        cand = candidate_from_sdp(c["candidate"].split(":", 1)[1])
        cand.sdpMid, cand.sdpMLineIndex = c.get("sdpMid"), c.get("sdpMLineIndex")
        try:
            await pc.addIceCandidate(cand)
        except Exception as e:  # a candidate for a section aiortc bundled away
            emit(event="candidate-ignored", error=str(e))

    def on_track(self, track):
        self.tracks.append(track.id)
        emit(event="track", kind=track.kind, id=track.id)
        asyncio.ensure_future(self.consume(track))

    async def consume(self, track):
        while True:
            try:
                f = await track.recv()
            except MediaStreamError:
                return
            self.frames[track.kind] += 1
            if track.kind == "video":
                self.sizes.add("%dx%d" % (f.width, f.height))

    def on_datachannel(self, ch):
        emit(event="datachannel", label=ch.label)

        @ch.on("message")
        def on_message(m):
            self.data.append(json.loads(m))

    async def publish(self):
        self.pub = RTCPeerConnection()
        video, audio = Bars(), Tone()
        vt = self.pub.addTransceiver(video, direction="sendonly")
        self.pub.addTransceiver(audio, direction="sendonly")
        if self.args.video_codec == "h264":
            caps = RTCRtpSender.getCapabilities("video").codecs
            vt.setCodecPreferences([c for c in caps if c.mimeType in ("video/H264", "video/rtx")])
        channel = self.pub.createDataChannel("data")
        await self.pub.setLocalDescription(await self.pub.createOffer())
        res = await self.call("offer", {"sdp": self.pub.localDescription.sdp, "tracks": [
            {"trackId": video.id, "source": "camera", "name": "aiortc camera"},
            {"trackId": audio.id, "source": "microphone", "name": "aiortc mic"}]})
        emit(event="published", tracks=res["tracks"])
        await self.pub.setRemoteDescription(RTCSessionDescription(sdp=res["sdp"], type="answer"))
        return channel

    def counts(self):
        return dict(video_frames=self.frames["video"], audio_frames=self.frames["audio"], sizes=sorted(self.sizes),
                    tracks=self.tracks, data=self.data[:5], data_count=len(self.data), sent_data=self.sent_data)

    def wants_met(self):
        a = self.args
        return (self.frames["video"] >= a.want_video and self.frames["audio"] >= a.want_audio
                and len(self.data) >= a.want_data)

    async def run(self):
        a = self.args
        async with websockets.connect(a.url, max_size=2 ** 20) as ws:
            self.ws = ws
            tasks = [asyncio.ensure_future(self.reader()), asyncio.ensure_future(self.handle())]
            res = await self.call("join", {"room": a.room, "name": a.name})
            self.me = res["participant"]["id"]
            emit(event="joined", participantId=self.me, others=[p["id"] for p in res["participants"]])
            channel = None if a.no_publish else await self.publish()
            deadline, n, met = time.time() + a.seconds, 0, False
            stdin_closed = asyncio.Event()
            if a.until_eof:
                loop = asyncio.get_running_loop()
                # A daemon thread: asyncio.run would wait for an executor's.
                threading.Thread(target=lambda: (sys.stdin.read(), loop.call_soon_threadsafe(stdin_closed.set)),
                                 daemon=True).start()
            while time.time() < deadline:
                await asyncio.sleep(0.25)
                for t in tasks:
                    if t.done():
                        t.result()  # raises what ended the reader or handler
                        raise RuntimeError("the server closed the socket")
                if channel is not None and channel.readyState == "open" and n < int((a.seconds - (deadline - time.time())) * 1):
                    n += 1
                    self.sent_data = n
                    channel.send("aiortc says %d" % n)
                if self.wants_met() and not met:
                    met = True
                    emit(event="met", **self.counts())
                if met and (not a.until_eof or stdin_closed.is_set()):
                    break
            await self.call("leave", {})
            self.sent_data = n
            emit(event="summary", met=met, **self.counts())
            for t in tasks:
                t.cancel()
        await self.sub.close()
        if self.pub is not None:
            await self.pub.close()
        return met


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "check":
        return 0
    ap = arg_parser("aiortc")
    ap.add_argument("--video-codec", choices=["vp8", "h264"], default="vp8")
    ap.add_argument("--want-data", type=int, default=1)
    ap.add_argument("--no-publish", action="store_true")
    ap.add_argument("--until-eof", action="store_true",
                    help="once the wants are met, go on publishing until standard input closes")
    ap.add_argument("--debug", action="store_true", help="aiortc's debug log on stderr")
    args = ap.parse_args()
    honour_h264_keyframe_requests()
    if args.debug:
        import logging
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    return run(lambda: Participant(args))


if __name__ == "__main__":
    sys.exit(main())

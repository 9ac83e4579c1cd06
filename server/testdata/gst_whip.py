#!/usr/bin/python3
"""A WHIP publisher and WHEP viewer built on GStreamer's webrtcbin.

Debian 12's GStreamer 1.22 has webrtcbin but no whipsink/whepsrc (those are
in the Rust plugins), so this is the small HTTP part around it: one POST of
the offer (with every candidate: no trickle), the answer, and a DELETE at
the end. Nothing in it comes from Starling: it is a client Starling did not
write, for server/whip_gst_test.go and for trying a server by hand.

  gst_whip.py check
  gst_whip.py whip URL [--seconds N] [--token T] [--until-eof] [--local-ip IP]
                                                  publish test video (VP8) and audio (Opus)
                                                  (--until-eof: stop once standard input
                                                  ends; N is then a limit)
  gst_whip.py whep URL [--seconds N] [--token T] [--until V,A] [--local-ip IP]
                                                  watch, decode, print what was decoded
                                                  (--until: stop once V video frames and
                                                  A audio buffers are decoded; N is then a limit)

--local-ip IP gathers host candidates on IP only (libnice's own list leaves loopback out: a
server on 127.0.0.1 is then reachable over ICE-TCP only; see docs/whip.md). Both print
the transport of the ICE pair in use at the end ("ice=udp", or "ice=other": TCP).

Exit status: 0 done, 2 usage or HTTP error, 3 GStreamer pieces missing.
"""

import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

try:
    from gst_nice import ice_transport, missing_elements, publish_pipeline, use_local_ip  # requires the typelibs
    from gi.repository import GLib, Gst, GstSdp, GstWebRTC
except (ImportError, ValueError) as e:
    print("missing GStreamer Python bindings: %s" % e, file=sys.stderr)
    sys.exit(3)

NEEDED = ["webrtcbin", "nicesrc", "dtlssrtpenc", "vp8enc", "vp8dec", "opusenc", "opusdec",
          "rtpvp8pay", "rtpvp8depay", "rtpopuspay", "rtpopusdepay", "videotestsrc", "audiotestsrc"]


def check():
    if missing_elements(NEEDED):
        sys.exit(3)


def wait(promise):
    promise.wait()
    return promise.get_reply()


def offer_gathered(w, timeout=10.0):
    """Makes and applies the offer, then waits for ICE gathering."""
    reply = wait_promise(lambda p: w.emit("create-offer", None, p))
    offer = reply.get_value("offer")
    wait_promise(lambda p: w.emit("set-local-description", offer, p))
    deadline = time.time() + timeout
    while time.time() < deadline:
        if w.get_property("ice-gathering-state") == GstWebRTC.WebRTCICEGatheringState.COMPLETE:
            break
        time.sleep(0.05)
    return w.get_property("local-description").sdp.as_text()


def wait_promise(emit):
    p = Gst.Promise.new()
    emit(p)
    return wait(p)


def request(method, url, token, body=None, ctype=None):
    req = urllib.request.Request(url, data=body.encode() if body is not None else None, method=method)
    if ctype:
        req.add_header("Content-Type", ctype)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=20) as res:
            return res.status, res.headers, res.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def post_offer(w, url, token):
    """POSTs the offer, applies the answer, returns the session URL."""
    sdp = offer_gathered(w)
    status, headers, body = request("POST", url, token, sdp, "application/sdp")
    if status != 201:
        print("POST %s: %d %s\noffer was:\n%s" % (url, status, body.strip(), sdp), file=sys.stderr)
        sys.exit(2)
    res, msg = GstSdp.SDPMessage.new_from_text(body)
    if res != GstSdp.SDPResult.OK:
        print("the answer does not parse", file=sys.stderr)
        sys.exit(2)
    answer = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, msg)
    wait_promise(lambda p: w.emit("set-remote-description", answer, p))
    return urllib.parse.urljoin(url, headers.get("Location"))


def run(pipe, seconds, done=None, eof=False):
    """Runs the pipeline for at most seconds; with done, until done() is true;
    with eof, until standard input ends."""
    loop = GLib.MainLoop()
    bus = pipe.get_bus()
    bus.add_signal_watch()

    def on_message(_, m):
        if m.type == Gst.MessageType.ERROR:
            err, dbg = m.parse_error()
            print("gstreamer error: %s (%s)" % (err, dbg), file=sys.stderr)
            loop.quit()

    bus.connect("message", on_message)
    GLib.timeout_add(int(seconds * 1000), loop.quit)
    if done is not None:
        def poll():
            if done():
                loop.quit()
                return False
            return True
        GLib.timeout_add(50, poll)
    if eof:
        def on_stdin(fd, cond):
            if cond & GLib.IOCondition.IN and os.read(fd, 4096):
                return True
            loop.quit()
            return False
        GLib.io_add_watch(sys.stdin.fileno(), GLib.PRIORITY_DEFAULT,
                          GLib.IOCondition.IN | GLib.IOCondition.HUP | GLib.IOCondition.ERR, on_stdin)
    loop.run()


def whip(url, seconds, token, local_ip=None, eof=False):
    pipe = Gst.parse_launch(publish_pipeline("w"))
    w = pipe.get_by_name("w")
    use_local_ip(w, local_ip)
    pipe.set_state(Gst.State.PLAYING)
    for i in range(2):
        t = w.emit("get-transceiver", i)
        if t is not None:
            t.set_property("direction", GstWebRTC.WebRTCRTPTransceiverDirection.SENDONLY)
    session = post_offer(w, url, token)
    print("publishing, session %s" % session, flush=True)
    run(pipe, seconds, eof=eof)
    ice = ice_transport(w)
    status, _, _ = request("DELETE", session, token)
    pipe.set_state(Gst.State.NULL)
    print("ice=%s deleted: %d" % (ice, status), flush=True)


def whep(url, seconds, token, until=None, local_ip=None):
    pipe = Gst.Pipeline.new("whep")
    w = Gst.ElementFactory.make("webrtcbin", "w")
    w.set_property("bundle-policy", GstWebRTC.WebRTCBundlePolicy.MAX_BUNDLE)
    use_local_ip(w, local_ip)
    pipe.add(w)
    counts = {"video": 0, "audio": 0, "width": 0}

    def counter(kind):
        def on_handoff(_, buf, pad):
            counts[kind] += 1
            if kind == "video":
                s = pad.get_current_caps().get_structure(0)
                counts["width"] = s.get_value("width")
        return on_handoff

    def on_decoded(_, pad):
        caps = pad.get_current_caps() or pad.query_caps(None)
        kind = "video" if caps.get_structure(0).get_name().startswith("video") else "audio"
        sink = Gst.ElementFactory.make("fakesink")
        sink.set_property("signal-handoffs", True)
        sink.set_property("sync", False)
        sink.connect("handoff", counter(kind))
        pipe.add(sink)
        sink.sync_state_with_parent()
        pad.link(sink.get_static_pad("sink"))

    def on_pad(_, pad):
        if pad.get_direction() != Gst.PadDirection.SRC:
            return
        dec = Gst.ElementFactory.make("decodebin")
        dec.connect("pad-added", on_decoded)
        pipe.add(dec)
        dec.sync_state_with_parent()
        pad.link(dec.get_static_pad("sink"))

    w.connect("pad-added", on_pad)
    recv = GstWebRTC.WebRTCRTPTransceiverDirection.RECVONLY
    w.emit("add-transceiver", recv, Gst.Caps.from_string(
        "application/x-rtp,media=video,encoding-name=VP8,payload=96,clock-rate=90000"))
    w.emit("add-transceiver", recv, Gst.Caps.from_string(
        "application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000"))
    pipe.set_state(Gst.State.PLAYING)
    session = post_offer(w, url, token)
    print("watching, session %s" % session, flush=True)
    done = None
    if until is not None:
        # an event, not a time: a busy machine decodes slower
        done = lambda: counts["video"] >= until[0] and counts["audio"] >= until[1]
    run(pipe, seconds, done)
    ice = ice_transport(w)
    status, _, _ = request("DELETE", session, token)
    pipe.set_state(Gst.State.NULL)
    print("decoded video_frames=%d audio_buffers=%d width=%d deleted=%d ice=%s"
          % (counts["video"], counts["audio"], counts["width"], status, ice), flush=True)


def main(argv):
    if len(argv) >= 2 and argv[1] == "check":
        check()
        return
    if len(argv) < 3 or argv[1] not in ("whip", "whep"):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    mode, url = argv[1], argv[2]
    seconds, token, until, local_ip, eof = 8.0, "", None, None, False
    rest = argv[3:]
    while rest:
        flag = rest.pop(0)
        if flag == "--seconds" and rest:
            seconds = float(rest.pop(0))
        elif flag == "--token" and rest:
            token = rest.pop(0)
        elif flag == "--until" and rest and mode == "whep":
            until = [int(n) for n in rest.pop(0).split(",")]
        elif flag == "--until-eof" and mode == "whip":
            eof = True
        elif flag == "--local-ip" and rest:
            local_ip = rest.pop(0)
        else:
            print("unknown argument %s" % flag, file=sys.stderr)
            sys.exit(2)
    check()
    try:
        if mode == "whip":
            whip(url, seconds, token, local_ip, eof)
        else:
            whep(url, seconds, token, until, local_ip)
    except ValueError as e:  # a --local-ip libnice cannot parse
        print(e, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main(sys.argv)

"""What gst_whip.py and gst_ws.py share: libnice helpers, the test-media
pipeline and the check for GStreamer's elements.

libnice leaves loopback out of the host candidates it gathers (see
docs/whip.md), so a server on 127.0.0.1 is reachable over UDP only when the
address is given to the agent; and the tests assert which transport the
selected ICE pair uses. Importing it requires the typelibs both scripts
use (GStreamer, its WebRTC and SDP libraries, libnice): it raises
ImportError or ValueError when one is missing.
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("Nice", "0.1")
from gi.repository import Gst, Nice  # noqa: E402 (after require_version)

_PUBLISH = """
webrtcbin name={w} bundle-policy=max-bundle
videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=30/1
  ! videoconvert ! vp8enc deadline=1 keyframe-max-dist=30 target-bitrate=300000
  ! rtpvp8pay pt=96 mtu=1200 ! application/x-rtp,media=video,encoding-name=VP8,payload=96 ! {w}.
audiotestsrc is-live=true wave=sine freq=440 ! audioconvert ! audioresample ! opusenc
  ! rtpopuspay pt=111 ! application/x-rtp,media=audio,encoding-name=OPUS,payload=111 ! {w}.
"""


def publish_pipeline(name):
    """A pipeline description: a webrtcbin called name fed moving test
    video (VP8, 320x240 at 30 fps) and a 440 Hz tone (Opus)."""
    return _PUBLISH.format(w=name)


def missing_elements(needed):
    """Initialises GStreamer and returns 3 (printing what is missing) when
    any of the elements needed is not installed, else 0."""
    Gst.init(None)
    missing = [n for n in needed if Gst.ElementFactory.find(n) is None]
    if missing:
        print("missing GStreamer elements: %s" % ", ".join(missing), file=sys.stderr)
        return 3
    return 0

# webrtcbin's ice-agent reaches Python with a floating reference, which
# PyGObject takes over and drops with its wrapper, freeing the agent under
# webrtcbin: the wrappers are kept here for the life of the process.
_ice_agents = {}

_selected = {}  # webrtcbin -> transport of libnice's latest selected pair


def nice_agent(w):
    if w not in _ice_agents:
        ice = w.get_property("ice-agent")
        agent = ice.get_property("agent")

        def on_selected(_agent, _stream, _component, local, _remote):
            _selected[w] = "udp" if local.transport == Nice.CandidateTransport.UDP else "other"

        agent.connect("new-selected-pair-full", on_selected)
        _ice_agents[w] = (ice, agent)
    return _ice_agents[w][1]


def use_local_ip(w, ip):
    """Makes webrtcbin's libnice gather host candidates on ip as well (none
    when ip is empty), and watches the pair it selects (ice_transport).
    Raises ValueError for an address libnice cannot parse."""
    agent = nice_agent(w)
    if not ip:
        return
    addr = Nice.Address.new()
    if not addr.set_from_string(ip):
        raise ValueError("bad --local-ip %s" % ip)
    agent.add_local_address(addr)


def ice_transport(w):
    """udp if libnice's selected ICE pair is UDP, else other (TCP, or none)."""
    return _selected.get(w, "other")

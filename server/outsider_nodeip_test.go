package server_test

import (
	"net"
	"strings"
	"testing"

	"github.com/pion/webrtc/v4"

	"github.com/starling-rtc/starling/config"
)

// candidateAddr is the component, protocol and address of an a=candidate
// value ("candidate:F 1 tcp P ADDR PORT typ host ...").
func candidateAddr(line string) (component, proto, addr string) {
	f := strings.Fields(strings.TrimPrefix(strings.TrimPrefix(line, "a="), "candidate:"))
	if len(f) < 5 {
		return "", "", line
	}
	return f[1], strings.ToLower(f[2]), f[4]
}

// TestOutsiderNodeIPCandidatesOneFamily: README says `--node-ip` is the
// public IP to advertise behind NAT, instead of the local addresses. With
// the media sockets on every interface and an IPv4 node IP, the UDP
// candidates carried only that IP, but the ICE-TCP ones also the host's
// local IPv6 addresses (pion rewrites the family of the node IP and keeps
// the others): private addresses advertised next to the public one. Every
// candidate the server gives, in the publisher answer, the subscriber
// offer and trickled, UDP and TCP, is the node IP, for component 1. (A host without an
// IPv6 address other than ::1 cannot show the fault: the test then
// passes either way.)
func TestOutsiderNodeIPCandidatesOneFamily(t *testing.T) {
	parallel(t)
	const nodeIP = "203.0.113.7"
	srv := startServer(t, func(c *config.Config) {
		c.RTC.BindIP = "" // every interface, as in production
		c.RTC.NodeIP = []string{nodeIP}
	})
	o := outsiderDial(t, srv.SignalingURL())
	o.send(t, map[string]any{"jsonrpc": "2.0", "id": 1, "method": "join", "params": map[string]any{"room": "node-ip"}})

	pc := plainPC(t, plainAPI(t, nil), webrtc.Configuration{})
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	o.send(t, map[string]any{"jsonrpc": "2.0", "id": 2, "method": "offer", "params": map[string]any{"sdp": offer.SDP, "tracks": []any{}}})

	// Read until both connections ended their candidates (a null
	// candidate) and both descriptions came.
	var lines []string
	ended := map[string]bool{}
	var answer, subOffer string
	for answer == "" || subOffer == "" || !ended["publisher"] || !ended["subscriber"] {
		m := o.next(t)
		params, _ := m["params"].(map[string]any)
		switch {
		case m["id"] == float64(2):
			res, _ := m["result"].(map[string]any)
			if answer, _ = res["sdp"].(string); answer == "" {
				t.Fatalf("offer: %v", m)
			}
		case m["method"] == "offer":
			subOffer, _ = params["sdp"].(string)
		case m["method"] == "candidate":
			target, _ := params["target"].(string)
			// "Candidates follow their description" (docs/PROTOCOL.md).
			if (target == "publisher" && answer == "") || (target == "subscriber" && subOffer == "") {
				t.Errorf("a %s candidate before its description: %v", target, params)
			}
			c, _ := params["candidate"].(map[string]any)
			if c == nil {
				ended[target] = true
				continue
			}
			line, _ := c["candidate"].(string)
			lines = append(lines, target+" trickled: "+line)
		case m["error"] != nil:
			t.Fatalf("error: %v", m)
		}
	}
	for what, sdp := range map[string]string{"publisher answer": answer, "subscriber offer": subOffer} {
		for _, l := range strings.Split(sdp, "\r\n") {
			if strings.HasPrefix(l, "a=candidate:") {
				lines = append(lines, what+": "+l)
			}
		}
	}
	protos := map[string]bool{}
	for _, l := range lines {
		_, cand, _ := strings.Cut(l, ": ")
		component, proto, addr := candidateAddr(cand)
		protos[proto] = true
		if component != "1" {
			// docs/PROTOCOL.md "Candidates in the SDP": rtcp-mux is required.
			t.Errorf("a component-%s candidate: %s", component, l)
		}
		if addr != nodeIP {
			kind := "an IPv4"
			if ip := net.ParseIP(addr); ip != nil && ip.To4() == nil {
				kind = "an IPv6"
			}
			t.Errorf("%s address advertised next to --node-ip %s: %s", kind, nodeIP, l)
		}
	}
	if !protos["udp"] || !protos["tcp"] {
		t.Errorf("candidates of protocols %v, want UDP and TCP ones: %v", protos, lines)
	}
}

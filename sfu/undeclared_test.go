package sfu

import (
	"strings"
	"testing"

	"github.com/pion/rtp"
)

// rtpExtension finds an extension in both header forms (RFC 8285) as
// pion's parser does, and nothing in packets without it.
func TestRTPExtension(t *testing.T) {
	for _, profile := range []uint16{0xBEDE, 0x1000} {
		h := rtp.Header{Version: 2, SSRC: 7, CSRC: []uint32{1, 2}}
		h.Extension, h.ExtensionProfile = true, profile
		_ = h.SetExtension(2, []byte{0xaa, 0xbb})
		_ = h.SetExtension(5, []byte("video-1"))
		b, err := (&rtp.Packet{Header: h, Payload: []byte{1, 2, 3}}).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if got := string(rtpExtension(b, 5)); got != "video-1" {
			t.Errorf("profile %#x: mid %q, want video-1", profile, got)
		}
		if got := rtpExtension(b, 3); got != nil {
			t.Errorf("profile %#x: extension 3 is %q, want none", profile, got)
		}
		for n := range b[:len(b)-3] {
			_ = rtpExtension(b[:n], 5) // truncated: no panic
		}
	}
	b, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, SSRC: 7}}).Marshal()
	if got := rtpExtension(b, 1); got != nil {
		t.Errorf("no extension: got %q", got)
	}
}

// declareSSRCs adds a learned SSRC only to a sending section that declares
// none.
func TestDeclareSSRCs(t *testing.T) {
	offer := "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1 2\r\n" +
		"m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendonly\r\na=rtpmap:96 VP8/90000\r\n" +
		"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=sendonly\r\na=rtpmap:111 opus/48000/2\r\na=ssrc:5 cname:x\r\n" +
		"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:2\r\na=recvonly\r\na=rtpmap:111 opus/48000/2\r\n"
	if got := undeclaredMIDs(offer); len(got) != 1 || !got["0"] {
		t.Fatalf("undeclared mids %v, want [0]", got)
	}
	out := declareSSRCs(offer, map[string]uint32{"0": 42, "1": 43, "2": 44})
	if strings.Count(out, "a=ssrc:") != 2 || !strings.Contains(out, "a=rtpmap:96 VP8/90000\r\na=ssrc:42 cname:") {
		t.Fatalf("declared:\n%s", out)
	}
}

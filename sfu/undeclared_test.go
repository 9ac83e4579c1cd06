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

// A retransmission stream of an undeclared section is not taken for its
// media.
func TestRepairCodec(t *testing.T) {
	offer := "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n" +
		"m=video 9 UDP/TLS/RTP/SAVPF 96 97 98\r\nc=IN IP4 0.0.0.0\r\na=mid:v\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\na=rtpmap:98 ulpfec/90000\r\n"
	for pt, want := range map[uint8]bool{96: false, 97: true, 98: true, 99: false} {
		if got := repairCodec(offer, "v", pt); got != want {
			t.Errorf("payload type %d: repair %v, want %v", pt, got, want)
		}
	}
	if repairCodec(offer, "a", 97) {
		t.Error("a payload type of another section")
	}
}

// FuzzRTPExtension: rtpExtension reads a client's packets; on any input it
// never panics, and on a packet pion parses it finds what pion finds.
func FuzzRTPExtension(f *testing.F) {
	for _, profile := range []uint16{0xBEDE, 0x1000} {
		h := rtp.Header{Version: 2, SSRC: 7}
		h.Extension, h.ExtensionProfile = true, profile
		_ = h.SetExtension(3, []byte("0"))
		b, _ := (&rtp.Packet{Header: h, Payload: []byte{1}}).Marshal()
		f.Add(b, uint8(3))
	}
	f.Add([]byte{0x90, 0, 0, 0}, uint8(1))
	f.Fuzz(func(t *testing.T, b []byte, id uint8) {
		got := rtpExtension(b, id)
		var h rtp.Header
		if _, err := h.Unmarshal(b); err != nil || id == 0 || id > 14 && h.ExtensionProfile == 0xBEDE {
			return
		}
		if h.ExtensionProfile != 0xBEDE && h.ExtensionProfile != 0x1000 {
			return // pion reads 0x1001-0x100f (two-byte, RFC 8285 appbits) as unknown profiles
		}
		if want := h.GetExtension(id); got != nil && string(got) != string(want) {
			t.Fatalf("extension %d: %x, pion reads %x", id, got, want)
		}
	})
}

package sfu

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseOffer(t *testing.T) {
	lines := []string{
		"v=0", "o=- 1 2 IN IP4 127.0.0.1", "s=-", "t=0 0", "a=group:BUNDLE 0 1 2 3 video4 5",
		"m=audio 9 UDP/TLS/RTP/SAVPF 111", "c=IN IP4 0.0.0.0", "a=mid:0", "a=rtcp-mux", "a=sendonly", "a=msid:s1 mic", "a=rtpmap:111 opus/48000/2",
		// Firefox with max-bundle: later sections are port 0 + bundle-only.
		"m=video 0 UDP/TLS/RTP/SAVPF 96", "c=IN IP4 0.0.0.0", "a=bundle-only", "a=mid:1", "a=sendonly", "a=msid:s1 cam",
		"a=rtpmap:96 VP8/90000", "a=rid:q send", "a=rid:h send", "a=rid:f send", "a=simulcast:send q;h;f",
		// A stopped section: port 0 without bundle-only.
		"m=video 0 UDP/TLS/RTP/SAVPF 96", "c=IN IP4 0.0.0.0", "a=mid:2", "a=inactive", "a=msid:s1 old", "a=rtpmap:96 VP8/90000",
		// Receive-only: sends nothing.
		"m=video 9 UDP/TLS/RTP/SAVPF 96", "c=IN IP4 0.0.0.0", "a=mid:3", "a=rtcp-mux", "a=recvonly", "a=rtpmap:96 VP8/90000",
		// GStreamer's webrtcbin: the msid only in a=ssrc lines.
		"m=video 0 UDP/TLS/RTP/SAVPF 96", "c=IN IP4 0.0.0.0", "a=bundle-only", "a=sendrecv", "a=rtpmap:96 VP8/90000",
		"a=ssrc:3697429005 msid:user1@host-a webrtctransceiver4", "a=ssrc:3697429005 cname:user1@host-a", "a=mid:video4",
		// Both forms: a=msid wins, wherever it is.
		"m=audio 9 UDP/TLS/RTP/SAVPF 111", "c=IN IP4 0.0.0.0", "a=mid:5", "a=rtcp-mux", "a=sendonly", "a=ssrc:1 msid:old oldtrack",
		"a=msid:s2 mic2", "a=ssrc:2 msid:other othertrack", "a=rtpmap:111 opus/48000/2",
	}
	got, err := ParseOffer(strings.Join(lines, "\r\n") + "\r\n")
	if err != nil {
		t.Fatal(err)
	}
	want := []OfferedTrack{
		{MID: "0", Kind: "audio", StreamID: "s1", TrackID: "mic"},
		{MID: "1", Kind: "video", StreamID: "s1", TrackID: "cam", RIDs: []string{"q", "h", "f"}},
		{MID: "video4", Kind: "video", StreamID: "user1@host-a", TrackID: "webrtctransceiver4"},
		{MID: "5", Kind: "audio", StreamID: "s2", TrackID: "mic2"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ParseOffer =\n%+v\nwant\n%+v", got, want)
	}
	// rtcp-mux is required on every section that is not stopped or bundle-only.
	noMux := strings.Replace(strings.Join(lines, "\r\n")+"\r\n", "a=mid:3\r\na=rtcp-mux\r\n", "a=mid:3\r\n", 1)
	if _, err := ParseOffer(noMux); !errors.Is(err, ErrNoRTCPMux) || !strings.Contains(err.Error(), `mid "3"`) {
		t.Fatalf("an offer without rtcp-mux: %v, want ErrNoRTCPMux naming mid 3", err)
	}
	// Every section in use is in one bundle group (docs/PROTOCOL.md); a
	// stopped one (mid 2) need not be, nor the only section of an offer.
	all := strings.Join(lines, "\r\n") + "\r\n"
	for _, c := range []struct{ group, mid string }{
		{"", `mid "0"`},
		{"a=group:BUNDLE 0 1 2 3 5\r\n", `mid "video4"`},
		{"a=group:BUNDLE 0 1 3\r\na=group:BUNDLE video4 5\r\n", `mid "video4"`},
		{"a=group:BUNDLE 0 1 3 video4 5\r\n", ""},
	} {
		_, err := ParseOffer(strings.Replace(all, "a=group:BUNDLE 0 1 2 3 video4 5\r\n", c.group, 1))
		if c.mid == "" && err != nil {
			t.Errorf("%q: %v", c.group, err)
		}
		if c.mid != "" && (!errors.Is(err, ErrNoBundle) || !strings.Contains(err.Error(), c.mid)) {
			t.Errorf("%q: %v, want ErrNoBundle naming %s", c.group, err, c.mid)
		}
	}
	one := "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=rtcp-mux\r\na=sendonly\r\na=msid:s t\r\na=rtpmap:111 opus/48000/2\r\n"
	if _, err := ParseOffer(one); err != nil {
		t.Errorf("one section without a bundle group: %v", err)
	}
	if _, err := ParseOffer("not sdp at all"); err == nil {
		t.Fatal("garbage parsed as SDP")
	}
}

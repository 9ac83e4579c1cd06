package sfu

import "testing"

// FuzzParseOffer: arbitrary text as a publisher offer never panics, and
// whatever it accepts describes at most 64 sending sections.
func FuzzParseOffer(f *testing.F) {
	f.Add("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=msid:s t\r\na=rid:q send\r\na=sendonly\r\n")
	f.Add("v=0\r\nm=audio 0 RTP/AVP 0\r\na=bundle-only\r\na=msid:\r\n")
	f.Add("garbage")
	f.Fuzz(func(t *testing.T, raw string) {
		tracks, err := ParseOffer(raw)
		if err == nil && len(tracks) > 64 {
			t.Fatalf("accepted %d sections", len(tracks))
		}
	})
}

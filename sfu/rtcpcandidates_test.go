package sfu

import "testing"

func TestWithoutRTCPCandidates(t *testing.T) {
	in := "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n" +
		"a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\n" +
		"a=candidate:1 2 udp 2130706431 127.0.0.1 5000 typ host\r\n" +
		"a=rtcp-mux\r\n" +
		"a=candidate:2 2 tcp 1671430143 127.0.0.1 6000 typ host tcptype passive"
	want := "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n" +
		"a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\n" +
		"a=rtcp-mux\r\n"
	if got := withoutRTCPCandidates(in); got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if s := "v=0\r\n"; withoutRTCPCandidates(s) != s {
		t.Fatal("an SDP without candidates changed")
	}
}

package sfu

import (
	"strings"
	"testing"
)

func TestMsidForPion(t *testing.T) {
	const head = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=rtcp-mux\r\n"
	const ssrc = "a=ssrc:11 cname:x\r\n"
	for _, c := range []struct{ name, in, want string }{
		{"usual order kept", head + "a=msid:s t\r\n" + ssrc, head + "a=msid:s t\r\n" + ssrc},
		{"after the ssrc lines", head + ssrc + "a=msid:s t\r\n", head + "a=msid:s t\r\n" + ssrc},
		{"one token", head + "a=msid:t\r\n" + ssrc, head + "a=msid:- t\r\n" + ssrc},
		{"one token, no ssrc", head + "a=msid:t\r\n", head + "a=msid:- t\r\n"},
		{"no msid", head + ssrc, head + ssrc},
	} {
		if got := msidForPion(c.in); got != c.want {
			t.Errorf("%s:\n%s\nwant\n%s", c.name, strings.ReplaceAll(got, "\r\n", "|"), strings.ReplaceAll(c.want, "\r\n", "|"))
		}
		offered, err := ParseOffer(c.in)
		if err != nil {
			t.Fatal(err)
		}
		if len(offered) == 1 && offered[0].TrackID != "t" {
			t.Errorf("%s: ParseOffer's track id %q", c.name, offered[0].TrackID)
		}
	}
}

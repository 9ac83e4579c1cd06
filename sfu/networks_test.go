package sfu

import (
	"fmt"
	"io"
	"log/slog"
	"testing"
)

// TestMediaNetworks: UDP and ICE-TCP gather the same address families:
// the media sockets' (IPv4 on every interface), narrowed by node IPs.
func TestMediaNetworks(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, c := range []struct {
		bind  string
		nodes []string
		tcp   bool
		want  string // fmt of the network types; "error" for an error
	}{
		{"", nil, true, "[udp4 tcp4]"},
		{"", nil, false, "[udp4]"},
		{"", []string{"203.0.113.7"}, true, "[udp4 tcp4]"},
		{"", []string{"203.0.113.7", "2001:db8::1"}, true, "[udp4 tcp4]"},
		{"", []string{"2001:db8::1"}, true, "error"},
		{"::1", nil, true, "[udp6 tcp6]"},
		{"::1", []string{"2001:db8::1"}, true, "[udp6 tcp6]"},
		{"::1", []string{"203.0.113.7"}, true, "error"},
		{"127.0.0.1", []string{"203.0.113.7"}, true, "[udp4 tcp4]"},
		{"0.0.0.0", nil, true, "[udp4 tcp4]"},
		{"", []string{"not-an-ip"}, true, "error"},
	} {
		got, err := mediaNetworks(c.bind, c.nodes, c.tcp, log)
		s := fmt.Sprint(got)
		if err != nil {
			s = "error"
		}
		if s != c.want {
			t.Errorf("bind %q, node IPs %v, tcp %v: %s (%v), want %s", c.bind, c.nodes, c.tcp, s, err, c.want)
		}
	}
}

package server_test

import (
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/internal/testutil"
)

// A client whose UDP is blocked gathers no UDP candidates and reaches the
// server over ICE-TCP only (docs/PROTOCOL.md "Candidates with names"):
// both of its connections come up and media flows each way (the
// subscriber's over pion's encryption path, Starling's own being UDP's).
func TestOutsiderICETCPOnly(t *testing.T) {
	parallel(t)
	srv := startServer(t, nil)
	if srv.Engine().TCPPort() == 0 {
		t.Fatal("the test server has no ICE-TCP port")
	}
	tcpOnly := testutil.PlainAPI(t, nil, func(se *webrtc.SettingEngine) {
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeTCP4})
	})
	pub := join(t, srv, "icetcp", "pub", func(o *client.Options) { o.API = tcpOnly })
	sub := join(t, srv, "icetcp", "sub", func(o *client.Options) { o.API = tcpOnly })
	rec := record(sub)
	f := publishFake(t, pub)
	defer f.Stop()
	waitFor(t, 20*time.Second, "audio and video at the TCP-only subscriber", func() bool {
		return len(rec.payloads(f.track("video").ID)) > 30 && len(rec.payloads(f.track("audio").ID)) > 30
	})
}

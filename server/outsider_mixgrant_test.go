package server_test

import (
	"strings"
	"testing"
	"time"

	"github.com/starling-rtc/starling/auth"
)

// TestOutsiderMixWithoutSubscribeSaysWhy: docs/PROTOCOL.md "Audio mix":
// setAudioMix gets 403 without the canSubscribe grant, and the message
// says, in words, what was wrong (docs/auth.md's table: "not allowed to
// subscribe: the token lacks canSubscribe", as subscribe says). It said
// only "not allowed to subscribe", leaving the client to guess why.
func TestOutsiderMixWithoutSubscribeSaysWhy(t *testing.T) {
	parallel(t)
	srv := startServer(t, withKeys)
	no := false
	o := outsiderDial(t, srv.SignalingURL())
	tok := token(t, "listener", auth.Grants{Room: "mix-grant", CanSubscribe: &no}, time.Hour)
	if _, e := o.call(1, "join", map[string]any{"room": "mix-grant", "token": tok}); e != nil {
		t.Fatalf("join: %v", e)
	}
	_, e := o.call(2, "setAudioMix", map[string]any{"enabled": true})
	if e == nil || e["code"] != float64(403) {
		t.Fatalf("setAudioMix without canSubscribe: %v, want 403", e)
	}
	if msg, _ := e["message"].(string); !strings.Contains(msg, "canSubscribe") {
		t.Errorf("the 403's message %q does not say the token lacks canSubscribe", msg)
	}
}

package client

import (
	"testing"

	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/internal/testutil/icecheck"
)

// TestICESurvivesUnansweredFirstChecks: the client's first connectivity
// checks go unanswered for 2.5 s (on a busy machine the server's ICE agent
// starts late, and checks that arrive before it has the client's
// credentials are discarded), then the path works. The client must still
// connect. With pion's default of 7 retries 200 ms apart, the client gave
// the only candidate pair up after 1.6 s and never checked it again: the
// server's own checks reached it, but only the controlling side nominates,
// and the connection stayed "checking" until ICE failed 30 s later
// (server/speakerorder_test.go, a publisher that never started).
func TestICESurvivesUnansweredFirstChecks(t *testing.T) {
	t.Parallel() // 2.5 s of waiting on unanswered checks; was the package's serial head
	api, err := LoopbackAPI()
	if err != nil {
		t.Fatal(err)
	}
	offerer, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer offerer.Close()
	// The answerer stands for the server: plain pion on loopback.
	icecheck.UnansweredFirstChecks(t, offerer, "client")
}

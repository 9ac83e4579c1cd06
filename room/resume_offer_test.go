package room

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/protocol"
)

// An offer that already went out on the socket a client resumed on must
// not be sent again by the resume (issue 17: the soak's client answered
// both copies, the second answer was taken for the ICE restart's, the
// real one was refused, and the subscriber connection was left with
// mismatched ICE credentials). Two resumes in a row make it happen every
// time: the first resume's restart offer goes out on the second socket
// before the second resume's Resumed runs, which is the window in which
// the soak's offer went out. A real pion client answers every offer in
// the order it gets them, as the Go client does.
func TestResumeSendsNoOfferTwiceOnOneSocket(t *testing.T) {
	m := newTestManager(t, func(c *Config) { c.ResumeWindow = time.Minute })
	p, res, first := joinRoom(t, m, "twice", "sub")
	client, err := webrtc.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	answer := func(offer string) error {
		t.Helper()
		if err := client.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
			t.Fatalf("client takes the offer: %v", err)
		}
		ans, err := client.CreateAnswer(nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := client.SetLocalDescription(ans); err != nil {
			t.Fatal(err)
		}
		return p.HandleAnswer(ans.SDP)
	}
	if err := answer(nthOffer(t, first, 0)); err != nil {
		t.Fatalf("first answer refused: %v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !p.sub.ICEStarted() { // a restart needs running ICE (createOffer)
		if time.Now().After(deadline) {
			t.Fatal("server ICE never started after the first answer")
		}
		time.Sleep(10 * time.Millisecond)
	}

	second, third := newFakePeer(), newFakePeer()
	_, r2, err := m.Resume("twice", res.ResumeToken, second)
	if err != nil {
		t.Fatalf("first resume: %v", err)
	}
	if _, _, err := m.Resume("twice", r2.ResumeToken, third); err != nil {
		t.Fatalf("second resume: %v", err)
	}
	p.Resumed() // the first resume's session, after its result
	restart := nthOffer(t, third, 0)
	p.Resumed() // the second's

	// Answer every offer the current socket gets, in order, until the
	// client has answered one with ICE credentials newer than restart's
	// (the second resume's restart). Every answer must be taken.
	for i := 0; ; i++ {
		offer := nthOffer(t, third, i)
		if i == 1 && offer == restart {
			t.Fatal("the resume sent an offer again on the socket that already carried it")
		}
		if err := answer(offer); err != nil {
			t.Fatalf("answer to offer %d refused: %v", i, err)
		}
		if i > 0 && ufrag(offer) != ufrag(restart) {
			break
		}
	}
	if err := p.loop.do(func() error {
		if p.loop.inFlight {
			return protocol.Errorf(protocol.CodeConflict, "an offer is still in flight")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n := len(offersOf(second)); n != 0 {
		t.Fatalf("the replaced socket got %d offers", n)
	}
}

// nthOffer waits (generously: a loaded machine) for f's i-th offer.
func nthOffer(t *testing.T, f *fakePeer, i int) string {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		if offers := offersOf(f); len(offers) > i {
			return offers[i]
		}
		select {
		case <-f.changed:
		case <-timeout:
			t.Fatalf("timed out waiting for offer %d", i)
		}
	}
}

func offersOf(f *fakePeer) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, n := range f.notes {
		var v protocol.SDPParams
		if n.method == protocol.MethodOffer && json.Unmarshal(n.params, &v) == nil {
			out = append(out, v.SDP)
		}
	}
	return out
}

func ufrag(sdp string) string {
	for _, l := range strings.Split(sdp, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "a=ice-ufrag:"); ok {
			return v
		}
	}
	return ""
}

package server_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/starling-rtc/starling/protocol"
)

// TestNoRedundantTrackUpdated: a track is announced once with
// trackPublished; no trackUpdated follows that says the same thing again
// (issue 17, defect 7: one came ~200 ms after each trackPublished).
func TestNoRedundantTrackUpdated(t *testing.T) {
	parallel(t)
	srv := startServer(t, nil)
	viewer := join(t, srv, "updates", "viewer")
	rec := record(viewer)
	pub := join(t, srv, "updates", "camera")
	media := publishFake(t, pub)
	video := media.track("video").ID
	// Two seconds of video at the viewer: well past the ~200 ms at which
	// the redundant update came.
	waitFor(t, 15*time.Second, "video at the viewer", func() bool { return len(rec.payloads(video)) >= 180 })
	last := map[string]protocol.Track{}
	for _, e := range viewer.Events() {
		if e.Method != protocol.NotifyTrackPublished && e.Method != protocol.NotifyTrackUpdated {
			continue
		}
		var p protocol.TrackParams
		if err := json.Unmarshal(e.Params, &p); err != nil {
			t.Fatal(err)
		}
		if prev, ok := last[p.Track.ID]; ok && reflect.DeepEqual(prev, p.Track) {
			t.Errorf("%s repeats the track as already announced: %s", e.Method, e.Params)
		}
		last[p.Track.ID] = p.Track
	}
	if len(last) != 2 {
		t.Fatalf("the viewer heard of %d tracks, want 2", len(last))
	}
}

// TestNoRTCPCandidates: rtcp-mux is required, so the SDP the server sends
// (its answers to publisher offers and its subscriber offers) carries
// candidates for component 1 (RTP) only, never component 2 (RTCP).
func TestNoRTCPCandidates(t *testing.T) {
	parallel(t)
	srv := startServer(t, nil)
	viewer := join(t, srv, "rtcp-mux", "viewer")
	rec := record(viewer)
	pub := join(t, srv, "rtcp-mux", "camera")
	media := publishFake(t, pub)
	waitFor(t, 15*time.Second, "video at the viewer", func() bool { return len(rec.payloads(media.track("video").ID)) >= 30 })
	sdps := map[string]string{"the answer to the publisher's offer": pub.Publisher().RemoteDescription().SDP}
	for i, e := range viewer.Events() {
		if e.Method == protocol.MethodOffer {
			var p protocol.SDPParams
			if err := json.Unmarshal(e.Params, &p); err != nil {
				t.Fatal(err)
			}
			sdps[fmt.Sprintf("subscriber offer (event %d)", i)] = p.SDP
		}
	}
	candidates := 0
	for what, sdp := range sdps {
		if media := strings.Contains(sdp, "m=audio") || strings.Contains(sdp, "m=video"); media && !strings.Contains(sdp, "a=rtcp-mux") {
			t.Errorf("%s does not say a=rtcp-mux", what)
		}
		for _, line := range strings.Split(sdp, "\n") {
			line = strings.TrimSpace(line)
			if !strings.HasPrefix(line, "a=candidate:") {
				continue
			}
			candidates++
			if f := strings.Fields(line); len(f) < 2 || f[1] != "1" {
				t.Errorf("%s carries a candidate for component %s: %q", what, f[1], line)
			}
		}
	}
	if candidates == 0 {
		t.Fatalf("no candidate in any of the %d SDPs the server sent: nothing checked", len(sdps))
	}
	t.Logf("%d SDPs from the server, %d candidate lines, all component 1", len(sdps), candidates)
}

package server_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/server"
)

// TestOutsiderUnpublishedStaysUnpublishedAcrossNodes: a raw client on node 1
// `unpublish`es its video while its SDP goes on sending it (withdrawn,
// TestOutsiderUnpublishedStaysUnpublished), then resumes through node 2
// (node 1, alive, hands it over) and offers there, on its new connection,
// the same two tracks. The mark stayed on node 1: the offer on node 2
// published the video again, against the client's `unpublish`. It is handed
// over with the participant now: node 2 leaves the video out, and an offer
// describing it is 409 there too (docs/cluster-failover.md "Unpublished
// tracks across a handover").
func TestOutsiderUnpublishedStaysUnpublishedAcrossNodes(t *testing.T) {
	parallel(t)
	n1, n2 := startPair(t)
	unpublishedAcrossNodes(t, n1, n2, "withdrawn-moves", nil)
}

// TestOutsiderUnpublishedStaysUnpublishedAfterNodeDied: the same, but node
// 1 is killed (kill -9) once the mark is in the room state store, and the
// client resumes through node 2 (two nodes on an external NATS server,
// which survives node 1). The mark was node 1's alone, gone with it: node
// 2 published the video again. It is stored with the member now.
func TestOutsiderUnpublishedStaysUnpublishedAfterNodeDied(t *testing.T) {
	parallel(t)
	url, nc := startTestNATS(t)
	n1, n2 := startExternalPair(t, url)
	const roomName = "withdrawn-dies"
	unpublishedAcrossNodes(t, n1, n2, roomName, func() {
		// Read as an outsider: the member's key in the bucket.
		waitStoredWithdrawn(t, nc, roomName, "video")
		n1.Abort()
	})
}

// unpublishedAcrossNodes runs the steps of the two tests above; beforeResume
// (nil: none) runs between the unpublish and the resume through n2.
func unpublishedAcrossNodes(t *testing.T, n1, n2 *server.Server, roomName string, beforeResume func()) {
	m := makeTestMedia(t)
	both := `[{"trackId":"video","source":"camera"},{"trackId":"audio","source":"microphone"}]`

	raw := dialRaw(t, n1)
	_, resp := raw.request(protocol.MethodJoin, `{"room":"`+roomName+`","name":"A"}`)
	if resp.Error != nil {
		t.Fatalf("join: %s", resp.Error.Message)
	}
	var joined protocol.JoinResult
	if err := json.Unmarshal(resp.Result, &joined); err != nil || joined.ResumeToken == "" {
		t.Fatalf("join result: %v, resume token %q", err, joined.ResumeToken)
	}
	if o, ok := raw.notification(20*time.Second, protocol.MethodOffer, nil); ok {
		raw.answer(o)
	} else {
		t.Fatal("no subscriber offer after join")
	}
	pc, video, audio := sendingPC(t, plainAPI(t, nil), webrtc.Configuration{}, "stream-a")
	stop := make(chan struct{})
	wg := sendMedia(t, m, video, audio, stop)
	t.Cleanup(func() { close(stop); wg.Wait() })
	first, perr := rawOffer(t, raw, pc, both)
	if perr != nil || first["video"] == "" {
		t.Fatalf("first offer: %v %v", first, perr)
	}
	if _, resp := raw.request(protocol.MethodUnpublish, `{"trackId":"`+first["video"]+`"}`); resp.Error != nil {
		t.Fatalf("unpublish: %s", resp.Error.Message)
	}
	if ids, perr := rawOffer(t, raw, pc, `[]`); perr != nil || ids["video"] != "" {
		t.Fatalf("offer on node 1 after unpublish: %v %v, want the video left out", ids, perr)
	}
	if beforeResume != nil {
		beforeResume()
	}

	// Resume through node 2: new connections there, the same tracks sent.
	raw2 := dialRaw(t, n2)
	_, resp = raw2.request(protocol.MethodJoin, `{"room":"`+roomName+`","resume":"`+joined.ResumeToken+`"}`)
	for i := 0; resp.Error != nil && resp.Error.Code == protocol.CodeUnavailable && i < 20; i++ {
		// 503: node 1 has not let go yet or the store elects a leader;
		// the answer itself is the wait.
		t.Logf("resume through node 2: %s; again", resp.Error.Message)
		_, resp = raw2.request(protocol.MethodJoin, `{"room":"`+roomName+`","resume":"`+joined.ResumeToken+`"}`)
	}
	if resp.Error != nil {
		t.Fatalf("resume through node 2: %s", resp.Error.Message)
	}
	var resumed protocol.JoinResult
	if err := json.Unmarshal(resp.Result, &resumed); err != nil || !resumed.NewConnections {
		t.Fatalf("resume result: %v, newConnections %v (want new connections on node 2)", err, resumed.NewConnections)
	}
	if o, ok := raw2.notification(20*time.Second, protocol.MethodOffer, nil); ok {
		raw2.answer(o)
	}
	pc2, video2, audio2 := sendingPC(t, plainAPI(t, nil), webrtc.Configuration{}, "stream-a")
	stop2 := make(chan struct{})
	wg2 := sendMedia(t, m, video2, audio2, stop2)
	t.Cleanup(func() { close(stop2); wg2.Wait() })

	ids, perr := rawOffer(t, raw2, pc2, `[{"trackId":"audio","source":"microphone"}]`)
	if perr != nil {
		t.Fatalf("offer on node 2: %v", perr)
	}
	if id, ok := ids["video"]; ok {
		t.Errorf("node 2 published the unpublished video again (%s): the mark did not move with the participant", id)
	}
	if ids["audio"] == "" {
		t.Errorf("node 2's offer result %v has no audio", ids)
	}
	// Describing the video is refused on node 2 too (pion's last offer
	// again: it cannot make one it would not apply).
	params, _ := json.Marshal(map[string]any{"sdp": pc2.LocalDescription().SDP, "tracks": json.RawMessage(both)})
	if _, resp := raw2.request(protocol.MethodOffer, string(params)); resp.Error == nil || resp.Error.Code != protocol.CodeConflict {
		t.Errorf("an offer on node 2 describing the unpublished video: %.300s, want 409", msgString(resp))
	}
}

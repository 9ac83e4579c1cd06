package server_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/starling-rtc/starling/admin"
	"github.com/starling-rtc/starling/auth"
	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/protocol"
)

// callCode makes a signaling request and returns its protocol error code (0
// when it succeeded).
func callCode(t *testing.T, c *client.Client, method string, params any) (int, string) {
	t.Helper()
	err := c.Call(ctxT(t, 10*time.Second), method, params, nil)
	if err == nil {
		return 0, ""
	}
	var pe *protocol.Error
	if !errors.As(err, &pe) {
		t.Fatalf("%s: %v, want a protocol error", method, err)
	}
	return pe.Code, pe.Message
}

// TestAuthorizationByID: every request that names a track or a participant
// is checked against the caller's room and grants. Ids from another room
// are unknown (404) whatever the grant; another participant's track in the
// same room is 403 when the caller's grants do not cover the request; and
// nothing is changed by a refused request (issue 17, chaos "Authorization
// by id").
func TestAuthorizationByID(t *testing.T) {
	parallel(t)
	dir := t.TempDir()
	srv := startServer(t, func(c *config.Config) {
		withKeys(c)
		c.Recordings.Dir = dir
	})
	no := false
	alice := join(t, srv, "red", "alice", withToken(token(t, "alice", auth.Grants{Room: "red"}, time.Hour)))
	bob := join(t, srv, "red", "bob", withToken(token(t, "bob", auth.Grants{Room: "red"}, time.Hour)))
	carol := join(t, srv, "red", "carol", withToken(token(t, "carol", auth.Grants{Room: "red", CanSubscribe: &no, CanPublish: &no}, time.Hour)))
	dave := join(t, srv, "blue", "dave", withToken(token(t, "dave", auth.Grants{Room: "blue"}, time.Hour)))
	aliceMedia := publishFake(t, alice)
	daveMedia := publishFake(t, dave)
	aliceVideo, daveVideo := aliceMedia.track("video").ID, daveMedia.track("video").ID
	if _, err := bob.WaitEvent(ctxT(t, 10*time.Second), protocol.NotifyTrackPublished, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "dave's tracks published", func() bool {
		_, n := srv.Rooms().Room("blue").Counts()
		return n == 2
	})

	type req struct {
		who    string
		c      *client.Client
		method string
		params any
		code   int
	}
	for _, r := range []req{
		// Another room's track: unknown, whatever the grants.
		{"bob", bob, protocol.MethodSubscribe, protocol.TrackIDsParams{TrackIDs: []string{daveVideo}}, protocol.CodeNotFound},
		{"bob", bob, protocol.MethodUnsubscribe, protocol.TrackIDsParams{TrackIDs: []string{daveVideo}}, protocol.CodeNotFound},
		{"bob", bob, protocol.MethodSetSubscription, protocol.SetSubscriptionParams{TrackID: daveVideo, Paused: boolp(true)}, protocol.CodeNotFound},
		{"bob", bob, protocol.MethodMute, protocol.MuteParams{TrackID: daveVideo, Muted: true}, protocol.CodeNotFound},
		{"bob", bob, protocol.MethodUnpublish, protocol.UnpublishParams{TrackID: daveVideo}, protocol.CodeNotFound},
		{"carol", carol, protocol.MethodSubscribe, protocol.TrackIDsParams{TrackIDs: []string{daveVideo}}, protocol.CodeNotFound},
		// Another participant's track in the room: only its publisher mutes
		// or unpublishes it; subscribing needs the grant.
		{"bob", bob, protocol.MethodMute, protocol.MuteParams{TrackID: aliceVideo, Muted: true}, protocol.CodeForbidden},
		{"bob", bob, protocol.MethodUnpublish, protocol.UnpublishParams{TrackID: aliceVideo}, protocol.CodeForbidden},
		{"carol", carol, protocol.MethodSubscribe, protocol.TrackIDsParams{TrackIDs: []string{aliceVideo}}, protocol.CodeForbidden},
		{"carol", carol, protocol.MethodSetSubscription, protocol.SetSubscriptionParams{TrackID: aliceVideo, MaxHeight: intp(180)}, protocol.CodeForbidden},
		// One's own track is not subscribed to.
		{"alice", alice, protocol.MethodSubscribe, protocol.TrackIDsParams{TrackIDs: []string{aliceVideo}}, protocol.CodeConflict},
		{"alice", alice, protocol.MethodSetSubscription, protocol.SetSubscriptionParams{TrackID: aliceVideo, Paused: boolp(true)}, protocol.CodeConflict},
		// What the grants allow still works.
		{"bob", bob, protocol.MethodSetSubscription, protocol.SetSubscriptionParams{TrackID: aliceVideo, Quality: ptr(protocol.QualityHigh)}, 0},
	} {
		if code, msg := callCode(t, r.c, r.method, r.params); code != r.code {
			t.Errorf("%s %s %+v: code %d (%q), want %d", r.who, r.method, r.params, code, msg, r.code)
		}
	}
	// Nothing changed: alice's and dave's tracks are published and unmuted.
	for _, p := range []struct{ room, id string }{{"red", alice.ParticipantID()}, {"blue", dave.ParticipantID()}} {
		info := srv.Rooms().Room(p.room).Participant(p.id).Info()
		if len(info.Tracks) != 2 {
			t.Errorf("%s has %d tracks after refused requests, want 2", p.id, len(info.Tracks))
		}
		for _, tr := range info.Tracks {
			if tr.Muted {
				t.Errorf("%s's track %s was muted by a refused request", p.id, tr.ID)
			}
		}
	}

	// The admin API: a token for room red reaches red's participants only.
	redAdmin := token(t, "ops", auth.Grants{Room: "red", Admin: true}, time.Hour)
	red := "/v1/rooms/red/participants/"
	for _, r := range []struct {
		method, path string
		body         any
		code         int
	}{
		{"GET", red + dave.ParticipantID(), nil, http.StatusNotFound},
		{"PATCH", red + dave.ParticipantID(), admin.UpdateRequest{Name: ptr("x")}, http.StatusNotFound},
		{"DELETE", red + dave.ParticipantID(), nil, http.StatusNotFound},
		{"POST", red + alice.ParticipantID() + "/mute", admin.MuteRequest{TrackID: daveVideo, Muted: boolp(true)}, http.StatusNotFound},
		{"POST", red + bob.ParticipantID() + "/mute", admin.MuteRequest{TrackID: aliceVideo, Muted: boolp(true)}, http.StatusNotFound},
		{"POST", "/v1/rooms/red/data", admin.DataRequest{Payload: ptr("hi"), To: []string{dave.ParticipantID()}}, http.StatusNotFound},
		{"GET", "/v1/rooms/blue/participants/" + dave.ParticipantID(), nil, http.StatusForbidden},
		{"DELETE", "/v1/rooms/blue/participants/" + dave.ParticipantID(), nil, http.StatusForbidden},
		{"POST", "/v1/rooms/blue/participants/" + dave.ParticipantID() + "/mute", admin.MuteRequest{TrackID: daveVideo, Muted: boolp(true)}, http.StatusForbidden},
		{"DELETE", "/v1/rooms/blue", nil, http.StatusForbidden},
	} {
		var perr protocol.Error
		if code := adminCall(t, srv, r.method, r.path, redAdmin, r.body, &perr); code != r.code {
			t.Errorf("admin %s %s: HTTP %d (%+v), want %d", r.method, r.path, code, perr, r.code)
		}
	}
	if p := srv.Rooms().Room("blue").Participant(dave.ParticipantID()); p == nil {
		t.Fatal("dave was removed by a refused admin request")
	}

	// Recordings: a red record token cannot record, see or stop blue's.
	redRec := token(t, "rec", auth.Grants{Room: "red", Record: true}, time.Hour)
	blueRec := token(t, "rec", auth.Grants{Room: "blue", Record: true}, time.Hour)
	var started struct{ ID string }
	if code := httpJSON(t, "POST", srv.Addr(), "/v1/rooms/blue/recordings", blueRec, `{}`, &started); code != http.StatusCreated {
		t.Fatalf("start blue's recording: HTTP %d", code)
	}
	for _, r := range []struct {
		method, path, body string
		code               int
	}{
		{"POST", "/v1/rooms/red/recordings", `{"track_id":"` + daveVideo + `"}`, http.StatusNotFound},
		{"GET", "/v1/rooms/red/recordings/" + started.ID, "", http.StatusNotFound},
		{"DELETE", "/v1/rooms/red/recordings/" + started.ID, "", http.StatusNotFound},
		{"DELETE", "/v1/rooms/blue/recordings/" + started.ID, "", http.StatusForbidden},
	} {
		if code := httpJSON(t, r.method, srv.Addr(), r.path, redRec, r.body, nil); code != r.code {
			t.Errorf("recordings %s %s with a red token: HTTP %d, want %d", r.method, r.path, code, r.code)
		}
	}
	var info struct{ Status string }
	if code := httpJSON(t, "GET", srv.Addr(), "/v1/rooms/blue/recordings/"+started.ID, blueRec, "", &info); code != http.StatusOK || info.Status != "recording" {
		t.Errorf("blue's recording after refused requests: HTTP %d, status %q, want 200 recording", code, info.Status)
	}
	if code := httpJSON(t, "DELETE", srv.Addr(), "/v1/rooms/blue/recordings/"+started.ID, blueRec, "", nil); code != http.StatusOK {
		t.Errorf("stop blue's recording: HTTP %d", code)
	}
}

// httpJSON makes a request with a bearer token and decodes a JSON answer
// into out (when given); it returns the status.
func httpJSON(t *testing.T, method, addr, path, tok, body string, out any) int {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+addr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		_ = json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode
}

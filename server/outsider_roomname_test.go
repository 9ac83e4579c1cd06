package server_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/starling-rtc/starling/auth"
	"github.com/starling-rtc/starling/config"
)

// TestOutsiderRoomNameTrimmedEverywhere: docs/PROTOCOL.md "Limits" says
// white space around a room name is dropped (`" standup "` joins
// `standup`). A token minted by a tool that kept the space ("standup ")
// was compared untrimmed with the trimmed join, and refused (403) the
// join of the very room it names; the admin API and the recording routes
// compared their {room} path untrimmed too. One room, one name, in every
// place that takes one.
func TestOutsiderRoomNameTrimmedEverywhere(t *testing.T) {
	parallel(t)
	srv := startServer(t, func(c *config.Config) {
		withKeys(c)
		c.Recordings.Dir = t.TempDir()
	})
	const room = "trimmed"
	base := "http://" + srv.Addr()

	// join: the token's room has a space after it, the join's before it.
	o := outsiderDial(t, srv.SignalingURL())
	res, e := o.call(1, "join", map[string]any{"room": " " + room,
		"token": token(t, "alice", auth.Grants{Room: room + " "}, time.Minute)})
	if e != nil {
		t.Fatalf("join of %q with a token for %q: %v", " "+room, room+" ", e)
	}
	if r, _ := res["room"].(map[string]any); r["name"] != room {
		t.Fatalf("joined room %v, want %q", res["room"], room)
	}

	// The admin API, with a token for " trimmed" and with the path's room
	// written with spaces (%20): the room the join made.
	admin := token(t, "ops", auth.Grants{Room: " " + room, Admin: true}, time.Minute)
	for _, path := range []string{"/v1/rooms/" + room, "/v1/rooms/%20" + room + "%20"} {
		r := httpDo(t, http.MethodGet, base+path, "", admin, "")
		if r.status != http.StatusOK || !strings.Contains(r.body, `"name":"`+room+`"`) {
			t.Errorf("GET %s with an admin token for %q: %d %s, want 200 and the room", path, " "+room, r.status, r.body)
		}
	}
	if r := httpDo(t, http.MethodGet, base+"/v1/rooms", "", admin, ""); r.status != http.StatusOK || !strings.Contains(r.body, `"name":"`+room+`"`) {
		t.Errorf("GET /v1/rooms with an admin token for %q: %d %s, want its room listed", " "+room, r.status, r.body)
	}

	// The recording routes, with a record token for "trimmed\t".
	rec := token(t, "recorder", auth.Grants{Room: room + "\t", Record: true}, time.Minute)
	if r := httpDo(t, http.MethodGet, base+"/v1/rooms/"+room+"/recordings", "", rec, ""); r.status != http.StatusOK {
		t.Errorf("GET the recordings with a record token for %q: %d %s, want 200", room+"\t", r.status, r.body)
	}

	// WHEP: a viewer's token for "trimmed " watches /v1/rooms/trimmed.
	pc := receivingPC(t, plainAPI(t, nil), webrtc.Configuration{})
	postOffer(t, srv, "/v1/rooms/"+room+"/whep", token(t, "viewer", auth.Grants{Room: room + " "}, time.Minute), pc)

	// A room grant of white space only is not "no room" (for an admin
	// token: every room): the token is refused.
	blank := token(t, "ops2", auth.Grants{Room: "  ", Admin: true}, time.Minute)
	if r := httpDo(t, http.MethodGet, base+"/v1/rooms", "", blank, ""); r.status != http.StatusUnauthorized || !strings.Contains(r.body, "grants.room") {
		t.Errorf("GET /v1/rooms with an admin token whose room is blank: %d %s, want 401 naming grants.room", r.status, r.body)
	}
}

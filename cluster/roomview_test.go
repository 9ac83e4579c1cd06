package cluster_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/starling-rtc/starling/admin"
	"github.com/starling-rtc/starling/auth"
	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/server"
)

// adminGet reads an admin API URL with an admin token.
func adminGet(t *testing.T, url string, out any) int {
	t.Helper()
	tok, err := auth.Issue(testAPIKey, testAPISecret, auth.Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "ops"}, Grants: auth.Grants{Admin: true}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode
}

// GET /v1/rooms/{room} answers the same from every node, with or without a
// part of the room: each participant with its permissions and the
// subscriptions its own node serves. GET .../participants/{id} too.
func TestAdminRoomViewClusterWide(t *testing.T) {
	parallel(t)
	srvs := startCluster(t, 3, withKeys)
	pub := join(t, srvs[0], "view", "pub", token(t, "pub", "view"))
	viewer := join(t, srvs[1], "view", "viewer", func(o *client.Options) {
		no := false
		tok, err := auth.Issue(testAPIKey, testAPISecret, auth.Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "viewer"},
			Grants: auth.Grants{Room: "view", CanPublish: &no}}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		o.Token = tok
	})
	rv := countMedia(viewer)
	seeEachOther(t, pub, viewer)
	publishMedia(t, pub, false)
	eventually(t, 30*time.Second, "the viewer on n1 hears pub on n0", func() bool { return rv.count(pub.ParticipantID(), "audio") >= 50 })

	detail := func(s *server.Server) admin.RoomDetail {
		var d admin.RoomDetail
		if code := adminGet(t, s.BaseURL()+"/v1/rooms/view", &d); code != http.StatusOK {
			t.Fatalf("GET /v1/rooms/view on %s: %d", s.Cluster().ID(), code)
		}
		return d
	}
	byID := func(d admin.RoomDetail, id string) admin.Participant {
		for _, p := range d.Participants {
			if p.ID == id {
				return p
			}
		}
		t.Fatalf("%s missing from %+v", id, d)
		return admin.Participant{}
	}
	for _, s := range srvs { // n0 and n1 have a part, n2 none
		d := detail(s)
		if len(d.Participants) != 2 || d.SID != pub.LastJoin().Room.SID {
			t.Fatalf("%s: %d participants, sid %s; want 2 of sid %s", s.Cluster().ID(), len(d.Participants), d.SID, pub.LastJoin().Room.SID)
		}
		p, v := byID(d, pub.ParticipantID()), byID(d, viewer.ParticipantID())
		if p.Identity != "pub" || !p.Permissions.CanPublish || len(p.Tracks) != 1 {
			t.Errorf("%s shows pub as %+v", s.Cluster().ID(), p)
		}
		if v.Identity != "viewer" || v.Permissions.CanPublish || !v.Permissions.CanSubscribe {
			t.Errorf("%s shows the viewer's permissions as %+v, want no publish, subscribe", s.Cluster().ID(), v.Permissions)
		}
		if len(v.Subscriptions) != 1 || v.Subscriptions[0].TrackID != p.Tracks[0].ID || v.Subscriptions[0].PacketsSent == 0 {
			t.Errorf("%s shows the viewer's subscriptions as %+v, want pub's track with packets sent", s.Cluster().ID(), v.Subscriptions)
		}
		var one admin.Participant
		if code := adminGet(t, s.BaseURL()+"/v1/rooms/view/participants/"+viewer.ParticipantID(), &one); code != http.StatusOK ||
			one.ID != viewer.ParticipantID() || len(one.Subscriptions) != 1 {
			t.Errorf("GET the viewer on %s: %d %+v", s.Cluster().ID(), code, one)
		}
	}
	var none admin.RoomDetail
	if code := adminGet(t, srvs[2].BaseURL()+"/v1/rooms/nowhere", &none); code != http.StatusNotFound {
		t.Errorf("GET an unknown room on n2: %d, want 404", code)
	}
}

package cluster_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/starling-rtc/starling/admin"
	"github.com/starling-rtc/starling/server"
)

// listRooms reads GET /v1/rooms from a node.
func listRooms(t *testing.T, base string) ([]admin.RoomSummary, error) {
	t.Helper()
	resp, err := http.Get(base + "/v1/rooms")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /v1/rooms: %s", resp.Status)
	}
	var out admin.RoomList
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, err
	}
	return out.Rooms, nil
}

// TestAdminListsRoomsClusterWide: GET /v1/rooms on any node lists every
// room of the cluster once, with its participants on every node and its
// tracks: rooms with participants only on n1 and n2 appear on n0, and a
// room spanning n0 and n1 appears once with both participants.
func TestAdminListsRoomsClusterWide(t *testing.T) {
	parallel(t)
	srvs := startCluster(t, 3, nil)
	e1 := join(t, srvs[1], "east", "e1")
	join(t, srvs[1], "east", "e2")
	publishMedia(t, e1, false)
	join(t, srvs[2], "west", "w1")
	join(t, srvs[0], "both", "b0")
	join(t, srvs[1], "both", "b1")

	want := []admin.RoomSummary{
		{Name: "both", NumParticipants: 2},
		{Name: "east", NumParticipants: 2, NumTracks: 1},
		{Name: "west", NumParticipants: 1},
	}
	for i, srv := range srvs {
		var got []admin.RoomSummary
		var err error
		eventually(t, 20*time.Second, fmt.Sprintf("n%d lists every room of the cluster", i), func() bool {
			got, err = listRooms(t, srv.BaseURL())
			if err != nil || len(got) != len(want) {
				return false
			}
			for j := range want {
				if got[j].Name != want[j].Name || got[j].NumParticipants != want[j].NumParticipants ||
					got[j].NumTracks != want[j].NumTracks || got[j].SID == "" {
					return false
				}
			}
			return true
		})
		sids := map[string]string{}
		for _, r := range got {
			sids[r.Name] = r.SID
		}
		if i == 0 {
			continue
		}
		first, _ := listRooms(t, srvs[0].BaseURL())
		for _, r := range first {
			if sids[r.Name] != r.SID {
				t.Fatalf("room %s: sid %s on n%d, %s on n0", r.Name, sids[r.Name], i, r.SID)
			}
		}
	}

	// The list is exact (what the store's leader had) at one leader
	// request per room: the rooms' own keys are read through the one
	// request for all of them. Before, two per room (its key, its other
	// keys) and that one.
	asked := leaderGets(t, srvs[0], srvs[1:]...)
	if _, err := listRooms(t, srvs[2].BaseURL()); err != nil {
		t.Fatal(err)
	}
	got := asked()
	for _, r := range want {
		p := "$KV.starling-rooms.r" + base64.RawURLEncoding.EncodeToString([]byte(r.Name))
		if got[p] != 0 || got[p+".>"] != 1 {
			t.Errorf("room %s: the leader was asked %d times for its key and %d times for its other keys, want 0 and 1", r.Name, got[p], got[p+".>"])
		}
	}
	if got["$KV.starling-rooms.*"] != 1 {
		t.Errorf("the leader was asked %d times for every room's key, want once", got["$KV.starling-rooms.*"])
	}
}

// leaderGets counts the requests for the newest message of a subject that
// the room state stream's leader gets from then on (from srv and the
// others), by subject; the returned function gives the counts so far.
// Both wait for a probe from each of the others to reach the counter: a
// new subscription's interest reaches the other servers over the routes
// some time after srv has it (-race beside busy loops: the list's first
// request, for every room's key, was never counted), and a request's copy
// may come after its answer; a node's messages keep their order.
func leaderGets(t *testing.T, srv *server.Server, others ...*server.Server) func() map[string]int {
	t.Helper()
	const subject = "$JS.API.STREAM.MSG.GET.KV_starling-rooms"
	var mu sync.Mutex
	counts := map[string]int{}
	probed := map[string]bool{}
	sub, err := srv.Cluster().Conn().Subscribe(subject, func(m *nats.Msg) {
		var req struct {
			LastFor string `json:"last_by_subj"`
			Probe   string `json:"starling_test_probe"`
		}
		if json.Unmarshal(m.Data, &req) != nil {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if req.Probe != "" {
			probed[req.Probe] = true
		} else if req.LastFor != "" {
			counts[req.LastFor]++
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	rounds := 0
	barrier := func() {
		rounds++
		tag := itoa(rounds) + "-"
		// Without a reply subject: the stream's leader ignores a probe.
		eventually(t, 30*time.Second, "the other nodes' probes reach the counter", func() bool {
			mu.Lock()
			var missing []*server.Server
			for _, o := range others {
				if !probed[tag+o.Cluster().ID()] {
					missing = append(missing, o)
				}
			}
			mu.Unlock()
			for _, o := range missing {
				_ = o.Cluster().Conn().Publish(subject, []byte(`{"starling_test_probe":"`+tag+o.Cluster().ID()+`"}`))
			}
			return len(missing) == 0
		})
	}
	barrier()
	return func() map[string]int {
		barrier()
		mu.Lock()
		defer mu.Unlock()
		return maps.Clone(counts)
	}
}

package cluster_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/starling-rtc/starling/auth"
	"github.com/starling-rtc/starling/config"
)

// Right after a node that led the room state store's stream is killed,
// the admin API of a node with no part of the room answers the room (or
// a clear 503 while the store elects a new leader), never 404: the room
// exists. Before, its read of the room's keys could miss them during the
// election and it answered 404 for a few seconds (docs/cluster.md).
func TestAdminRoomAfterStoreLeaderKilled(t *testing.T) {
	parallelLong(t) // 13-23 s (sched_test.go)
	const roomName = "admin-kill"
	srvs := startCluster(t, 3, func(c *config.Config) {
		withKeys(c)
		c.Room.ResumeWindow = config.Duration(30 * time.Second)
		c.Recordings.Dir = t.TempDir()
	})
	eventually(t, 30*time.Second, "the room state store is on 3 current replicas", func() bool {
		ok, _ := srvs[0].Cluster().StoreReplicated(3)
		return ok
	})
	lead := -1
	for i, s := range srvs {
		if s.Cluster().StoreLeader() == fmt.Sprintf("n%d", i) {
			lead = i
		}
	}
	if lead < 0 {
		t.Fatal("no node leads the room state store")
	}
	other, asked := (lead+1)%3, (lead+2)%3 // bob's node, and the node without a part of the room
	bob := join(t, srvs[other], roomName, "bob", token(t, "bob", roomName))
	alice := join(t, srvs[lead], roomName, "alice", token(t, "alice", roomName))
	seeEachOther(t, bob, alice)
	url := srvs[asked].BaseURL() + "/v1/rooms/" + roomName
	type entry struct {
		ID          string          `json:"id"`
		JoinedAt    int64           `json:"joinedAt"`
		Permissions map[string]bool `json:"permissions"`
	}
	var detail struct {
		Participants []entry `json:"participants"`
	}
	if code := adminGet(t, url, &detail); code != http.StatusOK || len(detail.Participants) != 2 {
		t.Fatalf("before the kill, n%d answers %d with %d participants", asked, code, len(detail.Participants))
	}
	var aliceBefore entry // as her live node showed her
	for _, p := range detail.Participants {
		if p.ID == alice.ParticipantID() {
			aliceBefore = p
		}
	}

	srvs[lead].Abort()
	killed := time.Now()
	answers := map[int]int{}
	for ok := 0; ok < 3; {
		if time.Since(killed) > 60*time.Second {
			t.Fatalf("no answer listing the room within 60 s of the kill: %v", answers)
		}
		detail.Participants = nil
		code := adminGet(t, url, &detail)
		answers[code]++
		switch code {
		case http.StatusOK:
			if len(detail.Participants) != 2 { // alice waits to resume: still listed
				t.Fatalf("%.1f s after the kill: %d participants, want bob and alice", time.Since(killed).Seconds(), len(detail.Participants))
			}
			// As the room state has her: her joinedAt and grants as
			// before (they were 0 and every permission false).
			for _, p := range detail.Participants {
				if p.ID == aliceBefore.ID && (p.JoinedAt != aliceBefore.JoinedAt || fmt.Sprint(p.Permissions) != fmt.Sprint(aliceBefore.Permissions)) {
					t.Fatalf("alice after the kill: %+v, before: %+v", p, aliceBefore)
				}
			}
			ok++
		case http.StatusServiceUnavailable:
			time.Sleep(100 * time.Millisecond)
		default:
			t.Fatalf("%.1f s after the kill, n%d answered %d for a room that exists (answers so far: %v)", time.Since(killed).Seconds(), asked, code, answers)
		}
	}
	t.Logf("answers after the kill: %v", answers)

	// With bob's node killed too, the store has no majority left: the
	// answer is 503 (try again), within the store wait, never 404.
	// The same for an admin data message and a WHEP player through that
	// node (they answered 404 before), and a recording's start there
	// (404 before: its lookup of the room's nodes took the store's silence
	// for no room), asked side by side: each may wait out the store wait.
	offer := whepPlayer(t).LocalDescription().SDP
	srvs[other].Abort()
	killed = time.Now()
	var wg sync.WaitGroup
	codes := make([]int, 5)
	wg.Add(5)
	go func() { defer wg.Done(); codes[0] = adminGet(t, url, &detail) }()
	go func() {
		defer wg.Done()
		codes[1] = adminSend(t, url+"/data", "application/json", `{"payload":"hello"}`, auth.Grants{Admin: true})
	}()
	go func() {
		defer wg.Done()
		codes[2] = adminSend(t, url+"/whep", "application/sdp", offer, auth.Grants{Room: roomName})
	}()
	go func() {
		defer wg.Done()
		codes[3] = adminSend(t, url+"/participants/"+bob.ParticipantID()+"/mix", "application/json", `{"gain":0.5}`, auth.Grants{Admin: true})
	}()
	go func() {
		defer wg.Done()
		codes[4] = adminSend(t, url+"/recordings", "application/json", `{}`, auth.Grants{Admin: true})
	}()
	wg.Wait()
	took := time.Since(killed)
	for i, what := range []string{"GET of the room", "POST of a data message", "a WHEP player's POST", "POST of a mix setting", "a recording's start"} {
		ok := http.StatusOK
		if i == 2 || i == 4 {
			ok = http.StatusCreated
		}
		if codes[i] != http.StatusServiceUnavailable && codes[i] != ok {
			t.Errorf("with no store majority, n%d answered %s with %d (within %.1f s), want 503", asked, what, codes[i], took.Seconds())
		}
	}
	t.Logf("with no store majority: %v within %.1f s", codes, took.Seconds())
}

// adminSend posts body to url with a token of those grants and returns the
// status.
func adminSend(t *testing.T, url, contentType, body string, grants auth.Grants) int {
	tok, err := auth.Issue(testAPIKey, testAPISecret, auth.Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "ops"}, Grants: grants}, time.Hour)
	if err != nil {
		t.Error(err)
		return 0
	}
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", contentType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		return 0
	}
	defer resp.Body.Close()
	return resp.StatusCode
}

package server_test

import (
	"encoding/json"
	"net/http"
	"testing"
)

// TestOutsiderNodeFieldsAlwaysPresent: docs/admin-api.md lists the fields
// of each GET /v1/nodes entry, {id, url, relayAddr, startedAt, ...,
// self}. A single node left relayAddr out (it has no relay), and in a
// cluster every node but the one answering had no self: a client reading
// the documented fields by name (Python's n["self"]) failed on them.
func TestOutsiderNodeFieldsAlwaysPresent(t *testing.T) {
	parallel(t)
	srv := startServer(t, nil)
	resp, err := http.Get("http://" + srv.Addr() + "/v1/nodes")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Nodes []map[string]json.RawMessage `json:"nodes"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || len(body.Nodes) != 1 {
		t.Fatalf("GET /v1/nodes: %v %v", body, err)
	}
	n := body.Nodes[0]
	for _, f := range []string{"id", "url", "relayAddr", "startedAt", "rooms", "participants", "tracks",
		"relayedTracksOut", "relayedTracksIn", "busRttMicros", "lastSeen", "self"} {
		if _, ok := n[f]; !ok {
			t.Errorf("the node has no %q, which docs/admin-api.md lists: %v", f, n)
		}
	}
	if string(n["relayAddr"]) != `""` {
		t.Errorf("a single node's relayAddr is %s, want \"\" (it relays nothing)", n["relayAddr"])
	}
}

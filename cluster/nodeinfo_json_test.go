package cluster_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/starling-rtc/starling/cluster"
)

// TestNodeInfoFieldsAlwaysSent: GET /v1/nodes lists, in a cluster, the
// nodes other than the one answering with self false; docs/admin-api.md
// lists self (and relayAddr, url) as fields of every entry, so they are
// sent even when false or empty (server's TestOutsiderNodeFieldsAlwaysPresent
// checks a single node over HTTP).
func TestNodeInfoFieldsAlwaysSent(t *testing.T) {
	b, err := json.Marshal(cluster.NodeInfo{ID: "n2"})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{`"self":false`, `"relayAddr":""`, `"url":""`} {
		if !strings.Contains(string(b), f) {
			t.Errorf("%s has no %s", b, f)
		}
	}
}

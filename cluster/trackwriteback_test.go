package cluster_test

import (
	"slices"
	"testing"
	"time"
)

// A node cut off from the bus for longer than the heartbeat expiry is
// found gone by the others, which delete its track keys (t.<node>.<track>,
// cluster/trackkeys.go) and send their track_unpublished; its calls go on
// meanwhile. When its link returns it writes the keys of its tracks back,
// as it writes its members back, so that a later kill of that node still
// reports its tracks of a room no live node has a part of. Before, the
// keys stayed deleted.
func TestBusCutTrackKeysWrittenBack(t *testing.T) {
	srvs, proxy := cutTest(t, 1500*time.Millisecond, nil)
	alice := join(t, srvs[2], "cut-tracks", "alice") // alone in the room, on the node to be cut off
	trackID := publishMedia(t, alice, false).published[0].Track.ID
	stored := func() bool { return slices.Contains(srvs[0].Cluster().StoredTracks("n2"), trackID) }
	eventually(t, 20*time.Second, "the room state keeps alice's track", stored)

	cutOff(t, srvs, proxy, "cut-tracks", true, nil)
	eventually(t, 20*time.Second, "the others delete the cut-off node's track keys", func() bool { return !stored() })
	heal(t, srvs, proxy)
	eventually(t, 20*time.Second, "n2 writes alice's track key back", stored)
	if srvs[2].Rooms().Room("cut-tracks") == nil {
		t.Fatal("alice's room is gone from n2")
	}
}

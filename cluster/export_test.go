package cluster

import (
	"context"
	"errors"
	"time"
)

// Crash stops the node as a SIGKILL would, as far as the others can tell:
// no goodbye, heartbeats stop, the embedded NATS server drops its routes,
// the relay socket closes.
func (n *Node) Crash() {
	n.closeOnce.Do(func() {
		close(n.stop)
		n.bus.nc.Close()
		if n.media.t != nil {
			_ = n.media.t.Close()
		}
		if n.bus.ns != nil {
			n.bus.ns.Shutdown()
			n.bus.ns.WaitForShutdown()
		}
		n.wg.Wait()
	})
}

// StoreLeader is the node that leads the room-state bucket's stream (its
// server name is the node id), "" when none answers.
func (n *Node) StoreLeader() string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := n.bus.js.Stream(ctx, "KV_"+roomsBucket)
	if err != nil {
		return ""
	}
	info, err := s.Info(ctx)
	if err != nil || info.Cluster == nil {
		return ""
	}
	return info.Cluster.Leader
}

// LandMove writes what a takeover through n leaves in the room state once
// its write landed: member id on n, holding tokenHash (the takeover's new
// token). The tests use it for a write whose confirmation was lost.
func (n *Node) LandMove(name, id, tokenHash string) error {
	_, err := n.update(name, func(st *roomState, _ bool) error {
		for i := range st.Members {
			if st.Members[i].ID == id {
				st.Members[i].Node, st.Members[i].Token = n.id, tokenHash
				return nil
			}
		}
		return errors.New("no such member")
	})
	return err
}

// StateMembers lists the ids of a room's members as this node reads them
// from the room state (what a node without a part of the room goes by).
func (n *Node) StateMembers(name string) []string {
	st, _, ok := n.get(name)
	if !ok {
		return nil
	}
	ids := make([]string, 0, len(st.Members))
	for _, m := range st.Members {
		ids = append(ids, m.ID)
	}
	return ids
}

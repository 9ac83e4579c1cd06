package recorder

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// The lease of a room's recording claim (claim.go). The node that records
// a room renews its claim every claimRenewEvery (a compare-and-set of the
// same value: a new revision) and stops recording, as failed with
// ErrClaimLost, when no renewal was confirmed for claimLease since the
// renewal was sent, or when the claim was replaced. Another node replaces
// a claim whose node does not answer only after it has seen the claim's
// revision unchanged for takeoverWait: by then that node, if alive but
// cut off, has stopped. So at most one node records a room at any time;
// the node that takes over records a new recording that names the one it
// continues (Info.Continues).

const (
	// claimLease is how long a recording goes on without its claim
	// confirmed. Longer than the store's leader election after its
	// leader died (NATS's raft waits 4-9 s before a new vote), during
	// which nobody can write the claim: a recording must not stop then.
	claimLease = 15 * time.Second
	// claimRenewEvery is how often the claim is renewed.
	claimRenewEvery = 2 * time.Second
	// takeoverWait is how long a claim of a node that does not answer
	// must stay unchanged before another node replaces it: the lease,
	// plus a margin for a stalled process.
	takeoverWait = claimLease + 4*time.Second
	// leasePoll is how often a waiting node reads the claim again and
	// asks whether the claim's node is known dead.
	leasePoll = 500 * time.Millisecond
	// fenceEvery is how often a recording's node checks that it still
	// hears a majority of the cluster (Cluster.HearsMajority).
	fenceEvery = 250 * time.Millisecond
)

// ErrClaimLost stops a recording whose node lost the room's claim.
var ErrClaimLost = errors.New("lost the room's recording claim")

// holdClaim renews recording r's claim until r ends; it stops r when the
// lease could not be renewed, then tries to record the room again.
func (m *Manager) holdClaim(c Cluster, r *recording, won claimWon) {
	defer close(r.holding)
	roomName := r.rr.Room()
	rev, since := won.rev, won.at
	tick := time.NewTicker(claimRenewEvery)
	defer tick.Stop()
	expire := time.NewTimer(time.Until(since.Add(claimLease)))
	defer expire.Stop()
	// The fence runs beside the renewals, which may wait seconds for the
	// store: a node cut off must stop before the others may declare it
	// dead (cluster/presence.go), whatever a renewal is doing.
	fenced, unfence := context.WithCancel(context.Background())
	defer unfence()
	go func() {
		t := time.NewTicker(fenceEvery)
		defer t.Stop()
		for {
			select {
			case <-fenced.Done():
				return
			case <-r.rr.Done():
				return
			case <-t.C:
				if !c.HearsMajority() {
					unfence()
					return
				}
			}
		}
	}()
	var lost error
	for lost == nil {
		select {
		case <-r.rr.Done():
			return
		case <-fenced.Done():
			lost = fmt.Errorf("%w: this node hears fewer than a majority of the cluster's nodes (cut off from the bus?), so the others may take the room over", ErrClaimLost)
		case <-expire.C:
			lost = fmt.Errorf("%w: the cluster's store did not confirm it for %s (this node cut off from the bus?)", ErrClaimLost, claimLease)
		case <-tick.C:
			// Bounded by the lease: the expiry is checked on time.
			ctx, cancel := context.WithDeadline(fenced, since.Add(claimLease))
			sent := time.Now()
			newRev, held, err := c.RenewRecordingClaim(ctx, roomName, won.value, rev)
			cancel()
			switch {
			case err == nil && held:
				rev, since = newRev, sent
				expire.Reset(time.Until(since.Add(claimLease)))
			case err == nil:
				lost = fmt.Errorf("%w: another node replaced it", ErrClaimLost)
			case time.Since(since) >= claimLease:
				lost = fmt.Errorf("%w: the cluster's store did not confirm it for %s (this node cut off from the bus?): %v", ErrClaimLost, claimLease, err)
			default:
				m.log.Warn("recording claim not renewed", "recording", r.rr.ID(), "err", err)
			}
		}
	}
	m.mu.Lock()
	r.lost = true // its claim is left for the recording that continues it
	m.mu.Unlock()
	if !r.rr.StopWithError(lost) {
		return // stopped meanwhile for another reason
	}
	m.log.Error("recording stopped: its room's claim is lost", "recording", r.rr.ID(), "room", roomName, "err", lost)
	go m.recordAgain(c, r)
}

// waitLease waits while a claim at revision rev, of a node that does not
// answer, may still be held: until it changed (changed), its node is
// known dead (dead: a dead node records nothing, and a node that is only
// cut off stopped recording before the others could declare it dead,
// docs/cluster.md "Recording after a node crash") or takeoverWait passed
// with it unchanged (neither: the lease ran out).
func (m *Manager) waitLease(c Cluster, roomName string, rev uint64, node string) (changed, dead bool, err error) {
	end := time.Now().Add(takeoverWait)
	for time.Now().Before(end) {
		if c.NodeDead(m.composeCtx, node) {
			return false, true, nil
		}
		select {
		case <-m.composeCtx.Done():
			return false, false, ErrClosed
		case <-time.After(min(leasePoll, time.Until(end))):
		}
		if _, cur, err := c.RecordingClaim(roomName); err == nil && cur != rev {
			return true, false, nil
		}
	}
	return false, false, nil
}

// recordAgain: after this node lost a room's claim, it records the room
// again when it can claim it (the store was out of reach for every node,
// or this node was cut off and no other took the room over), as a
// recording that continues the lost one. It gives up when another node
// records the room, the room instance is gone here, the recording was
// stopped through the API or the recorder closed.
func (m *Manager) recordAgain(c Cluster, lost *recording) {
	<-lost.released
	roomName := lost.rr.Room()
	for {
		select {
		case <-m.composeCtx.Done():
			return
		case <-time.After(claimRenewEvery):
		}
		rm := m.rooms.Room(roomName)
		m.mu.Lock()
		done := m.closed || lost.stopped
		m.mu.Unlock()
		if done || rm == nil || rm.SID() != lost.rr.RoomSID() {
			return
		}
		in, err := m.start(roomName, "", lost.auto, lost.mix)
		switch {
		case err == nil:
			m.log.Info("recording again after a lost claim", "room", roomName, "recording", in.ID, "continues", in.Continues)
			return
		case errors.Is(err, ErrAlreadyRecording), errors.Is(err, errAutoStopped), errors.Is(err, ErrClosed), errors.Is(err, ErrRoomNotFound):
			return
		}
		m.log.Debug("cannot record the room again yet", "room", roomName, "err", err)
	}
}

// NodeGone is called when another node of the cluster died or left (its
// heartbeats stopped): this node takes over the room recordings that node
// held where this node has a part of the room, an auto-recorded room or a
// room whose claim names that node (a recording started through the API).
// Every such node tries, one wins each room (claimRoom, after the gone
// node's lease).
func (m *Manager) NodeGone(node string) {
	c := m.cluster()
	if m.rooms == nil || c == nil {
		return
	}
	for _, name := range m.rooms.RoomNames() {
		rm := m.rooms.Room(name)
		if rm == nil {
			continue
		}
		m.mu.Lock()
		closed, noAuto := m.closed, m.noAuto[rm.SID()]
		m.mu.Unlock()
		if closed {
			return
		}
		if m.autoMatch(name) && !noAuto && len(rm.ObservedTracks()) > 0 {
			m.autoStart(name, rm.SID())
			continue
		}
		go m.takeOverClaim(c, name, rm.SID(), node)
	}
}

// takeOverClaim records a room whose claim names a gone node (a recording
// started through the API there), trying again with backoff while the
// store does not answer (its leader may have been that node) and the
// claim still names the gone node's unstopped recording of this room
// instance (startRetrying).
func (m *Manager) takeOverClaim(c Cluster, name, sid, node string) {
	wants := func() bool {
		rm := m.rooms.Room(name)
		return rm != nil && rm.SID() == sid
	}
	m.startRetrying(name, sid, wants, func() (Info, error) {
		cur, rev, err := c.RecordingClaim(name)
		if err != nil {
			return Info{}, err
		}
		var cl claim
		if rev == 0 || json.Unmarshal(cur, &cl) != nil || cl.Node != node || cl.Stopped || cl.SID != sid {
			return Info{}, ErrAlreadyRecording // nothing of the gone node's to take over
		}
		return m.start(name, "", cl.Auto, cl.Mix)
	})
}

package cluster

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/room"
)

// The admin's mix settings of a room's participants (POST
// /v1/rooms/{room}/participants/{id}/mix) hold cluster-wide: every node
// mixes for its own listeners, so each node with a part of the room needs
// them, also one that gets its part later. They are kept in the room state
// bucket under the room's own key ("m" + the room's name, beside its "r"
// key; written by compare-and-set, tied to the room instance's sid), sent
// to every node on starling.mixpref when set, and read by a node when the
// room opens there. Any node accepts a setting, with or without a part of
// the room. The key is deleted when the room closes in the cluster.

// MixSetting is a participant's voice in the room's mix.
type MixSetting struct {
	Gain  float64 `json:"gain"`
	Muted bool    `json:"muted"`
}

// mixPrefs is the value of a room's mix settings key.
type mixPrefs struct {
	SID   string                `json:"sid"`
	Prefs map[string]MixSetting `json:"prefs"`
}

// mixMsg announces one setting to every node.
type mixMsg struct {
	Room        string     `json:"room"`
	SID         string     `json:"sid"`
	Participant string     `json:"participant"`
	Setting     MixSetting `json:"setting"`
}

const mixSubject = "starling.mixpref"

// maxMixPrefs bounds a room's settings (one per participant set).
const maxMixPrefs = 10000

func mixKey(name string) string {
	return "m" + base64.RawURLEncoding.EncodeToString([]byte(name))
}

// SetMixPref changes a participant's setting in the room's mix, wherever
// the participant is (a member of the room's state): gain and muted, when
// not nil. It answers the participant's setting now.
func (n *Node) SetMixPref(name, participant string, gain *float64, muted *bool) (MixSetting, error) {
	if gain != nil && (*gain < 0 || *gain > 4 || *gain != *gain) {
		return MixSetting{}, protocol.Errorf(protocol.CodeInvalidParams, "invalid params: gain must be between 0 and 4")
	}
	st, ok, err := n.getOpenErr(name)
	if err != nil { // the store did not answer: the participant may exist
		return MixSetting{}, protocol.Errorf(protocol.CodeUnavailable, "%v", err)
	}
	member := false
	for _, m := range st.Members {
		member = member || m.ID == participant
	}
	if !ok || !member {
		return MixSetting{}, protocol.Errorf(protocol.CodeNotFound, "no participant %q in room %q", participant, name)
	}
	req := &mixReq{sid: st.SID, participant: participant, gain: gain, muted: muted}
	n.storeMix(name, req) // with the settings made here at once (mixbatch.go)
	if req.err != nil {
		return MixSetting{}, req.err
	}
	set := req.set
	msg := mixMsg{Room: name, SID: st.SID, Participant: participant, Setting: set}
	n.applyMix(msg) // here at once: the answer's node mixes by it already
	data, _ := json.Marshal(msg)
	if err := n.bus.nc.Publish(mixSubject, data); err != nil {
		// Stored: the room's nodes read it when they open the room.
		n.log.Warn("mix setting not sent to the other nodes", "room", name, "err", err)
	}
	return set, nil
}

// updateMixPrefs applies f to a room's settings by compare-and-set,
// waiting for a store that elects a leader as the room state does.
func (n *Node) updateMixPrefs(name string, f func(*mixPrefs) error) error {
	key := mixKey(name)
	deadline := time.Now().Add(n.opts.StoreWait)
	refused, based := false, uint64(0) // the last write was refused; the revision it expected
	// Bounded by time, not by a count of tries: every refusal is another
	// setting stored, and a hundred settings made at once through several
	// nodes (the admin's, each a compare-and-set of this one key) outlast
	// a hundred tries of the last of them. Losing for four times the store
	// wait in a row is too much contention.
	for {
		err := func() error {
			ctx, cancel := context.WithTimeout(context.Background(), kvTimeout)
			defer cancel()
			// The leader's value, and after a refused write the one that
			// beat it (conflict.go): a replica's read (kv.Get), or the
			// leader's read at once, could still show what the refused
			// write was based on, and the next write was refused again,
			// up to casRetries times ("keep changing", 503).
			var p mixPrefs
			var rev uint64
			var err error
			if refused {
				rev, err = n.getJSONAfterConflict(ctx, key, based, &p)
			} else {
				rev, err = n.getJSON(ctx, key, &p)
			}
			if err != nil {
				return err
			}
			if err := f(&p); err != nil {
				return err
			}
			data, _ := json.Marshal(p)
			based = rev
			if rev == 0 {
				_, err = n.bus.kv.Create(ctx, key, data)
			} else {
				_, err = n.bus.kv.Update(ctx, key, data, rev)
			}
			return err
		}()
		refused = false
		var perr *protocol.Error
		switch {
		case err == nil:
			return nil
		case errors.As(err, &perr):
			return err
		case isConflict(err) && time.Since(deadline) > 3*n.opts.StoreWait:
			return protocol.Errorf(protocol.CodeUnavailable, "cluster mix settings keep changing")
		case isConflict(err):
			refused = true
			continue // another setting got there first
		case time.Now().After(deadline) || n.bus.nc.IsClosed():
			return protocol.Errorf(protocol.CodeUnavailable, "cluster mix settings unavailable: %v", err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// subscribeMix applies the settings made through other nodes.
func (n *Node) subscribeMix() error {
	_, err := n.bus.nc.Subscribe(mixSubject, func(m *nats.Msg) {
		var msg mixMsg
		if json.Unmarshal(m.Data, &msg) == nil {
			n.applyMix(msg)
		}
	})
	return err
}

// applyMix gives a setting to this node's part of the room, if it has
// one of that room instance.
func (n *Node) applyMix(msg mixMsg) {
	if n.rooms == nil {
		return
	}
	if r := n.rooms.Room(msg.Room); r != nil && r.SID() == msg.SID {
		r.ApplyMixPref(msg.Participant, msg.Setting.Gain, msg.Setting.Muted)
	}
}

// loadMixPrefs applies a room's stored settings to its part here, when
// the room opens on this node.
func (n *Node) loadMixPrefs(r *room.Room) {
	ctx, cancel := context.WithTimeout(context.Background(), kvTimeout)
	defer cancel()
	e, err := n.bus.kv.Get(ctx, mixKey(r.Name()))
	if err != nil {
		if !errors.Is(err, jetstream.ErrKeyNotFound) && !errors.Is(err, jetstream.ErrKeyDeleted) {
			n.log.Warn("room mix settings not read", "room", r.Name(), "err", err)
		}
		return
	}
	var p mixPrefs
	if json.Unmarshal(e.Value(), &p) != nil || p.SID != r.SID() {
		return // a former instance's
	}
	for id, s := range p.Prefs {
		r.ApplyMixPref(id, s.Gain, s.Muted)
	}
}

// dropMixPrefs deletes a room's settings when the room instance sid
// closed in the cluster (not a newer instance's).
func (n *Node) dropMixPrefs(name, sid string) {
	ctx, cancel := context.WithTimeout(context.Background(), kvTimeout)
	defer cancel()
	e, err := n.bus.kv.Get(ctx, mixKey(name))
	if err != nil {
		return // none (most rooms), or the store is out of reach
	}
	var p mixPrefs
	if json.Unmarshal(e.Value(), &p) == nil && p.SID != sid {
		return
	}
	if err := n.bus.kv.Delete(ctx, mixKey(name), jetstream.LastRevision(e.Revision())); err != nil {
		n.log.Debug("room mix settings not deleted", "room", name, "err", err)
	}
}

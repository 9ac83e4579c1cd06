package cluster

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/starling-rtc/starling/room"
)

// A room's cluster-wide facts are several keys of the room state bucket,
// all under the room's key P = "r" + base64url(room name):
//
//	P                  the room itself: its sid, and since when it is empty (roomMeta)
//	P.m.<node>.<id>    one member: identity, node, resume token, ... (memberEntry)
//	P.i.<identity>     which member holds an identity (holder)
//	P.s.<n>            which member holds participant slot n < max participants (holder)
//
// (node, id and identity base64url-encoded). A member's key is created
// with Create, so members joining at once on several nodes never conflict
// with each other; only two joins with the same identity meet on one key,
// and only joins of a room with a participant limit compete for its slots
// (docs/cluster.md "Room state"). Deleted keys leave a marker that expires
// (markerTTL) so the bucket does not grow with every member that left.

func roomKey(name string) string { return "r" + enc(name) }

func enc(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func memberKey(p, node, id string) string   { return p + ".m." + enc(node) + "." + enc(id) }
func identityKey(p, identity string) string { return p + ".i." + enc(identity) }
func slotKey(p string, n int) string        { return p + ".s." + strconv.Itoa(n) }

// roomMeta is the value of a room's own key.
type roomMeta struct {
	SID string `json:"sid"`
	// EmptySince is when the room was seen empty (unix ms); 0 while
	// occupied. A room empty for longer than the empty timeout counts as
	// closed even if the node that was to delete it died.
	EmptySince int64 `json:"emptySince,omitempty"`
	// Closed: the admin API deleted this room (CloseRoom). It no longer
	// exists for the admin API, its nodes close their parts, and a join
	// opens a new room (a new sid) in its place.
	Closed bool `json:"closed,omitempty"`
	// ClosedBy is the mark of the delete that closed it (CloseRoom): a
	// delete whose write landed but whose answer was lost knows its own
	// write when it tries again.
	ClosedBy string `json:"closedBy,omitempty"`
	// PrevClosedBy is the mark of the delete that closed the room
	// instance this one replaced (openRoom): that delete, its answer lost,
	// learns on its retry that its write landed, and finishes the old
	// instance (room_finished).
	PrevClosedBy string `json:"prevClosedBy,omitempty"`
}

// memberEntry is the value of a member's key.
type memberEntry struct {
	room.Member
	Slot int `json:"slot"` // the slot it holds, -1 for none
}

// holder is the value of an identity or slot key.
type holder struct {
	ID   string `json:"id"`
	Node string `json:"node"`
	// Replaced is the member this one took the identity from (identity
	// keys only): a join whose write landed but timed out finds itself
	// the holder on its next try, and still learns whom to end.
	Replaced *holder `json:"replaced,omitempty"`
}

// markerTTL is how long the marker of a deleted key stays in the bucket.
const markerTTL = 5 * time.Minute

// kvDelete deletes a key (only at revision rev when rev is not 0) and
// returns the stream sequence of the deletion, so a caller can wait for
// its watch to have seen it. Written as kv.Delete writes it (a purge: the
// key's history goes with it), with a TTL on the marker when the bucket
// allows one.
func (n *Node) kvDelete(ctx context.Context, key string, rev uint64) (uint64, error) {
	m := nats.NewMsg("$KV." + roomsBucket + "." + key)
	m.Header.Set("KV-Operation", "PURGE")
	m.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
	if rev != 0 {
		m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(rev, 10))
	}
	var opts []jetstream.PublishOpt
	if n.bus.markerTTL {
		opts = append(opts, jetstream.WithMsgTTL(markerTTL))
	}
	ack, err := n.bus.js.PublishMsg(ctx, m, opts...)
	if err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
			return 0, jetstream.ErrKeyExists
		}
		return 0, err
	}
	return ack.Sequence, nil
}

// isConflict: a compare-and-set write lost to another write.
func isConflict(err error) bool {
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)
}

// getJSON reads a key into v; its revision, 0 when absent. The read is the
// stream leader's (leaderGet), never a replica's: each step of a join or a
// leave decides on it (release a slot, remove a member, reuse the room's
// sid), and a replica may not have applied a write made a moment ago.
func (n *Node) getJSON(ctx context.Context, key string, v any) (uint64, error) {
	m, err := n.leaderGet(ctx, "$KV."+roomsBucket+"."+key)
	if err != nil || m == nil {
		return 0, err
	}
	if m.deleted() {
		return 0, nil
	}
	if json.Unmarshal(m.Data, v) != nil {
		return m.Seq, errors.New("room state: unreadable value of " + key)
	}
	return m.Seq, nil
}

// storedMsg is a stream message as the stream's get API returns it.
type storedMsg struct {
	Seq  uint64    `json:"seq"`
	Hdrs []byte    `json:"hdrs"`
	Data []byte    `json:"data"`
	Time time.Time `json:"time"` // when it was stored
}

// deleted: a key-value deletion marker (written by a client, or by the
// server when a key's message expired).
func (m *storedMsg) deleted() bool {
	if len(m.Hdrs) == 0 {
		return false
	}
	h, err := nats.DecodeHeadersMsg(m.Hdrs)
	return err == nil && (h.Get("KV-Operation") != "" || h.Get(jetstream.MarkerReasonHeader) != "")
}

// leaderGet returns the newest message on subject (wildcards allowed) from
// the room state stream's leader; nil when there is none. kv.Get and the
// stream's GetLastMsgForSubject use a direct get when the bucket allows it
// (key-value buckets do), which any replica answers — the local one first —
// and a replica may lag the leader by a few writes.
func (n *Node) leaderGet(ctx context.Context, subject string) (*storedMsg, error) {
	req, _ := json.Marshal(struct {
		LastFor string `json:"last_by_subj"`
	}{subject})
	msg, err := n.bus.nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET.KV_"+roomsBucket, req)
	if err != nil {
		return nil, err
	}
	var resp struct {
		Message *storedMsg          `json:"message"`
		Error   *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return nil, fmt.Errorf("room state: unreadable get answer: %w", err)
	}
	switch {
	case resp.Error != nil && resp.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound:
		return nil, nil
	case resp.Error != nil:
		return nil, resp.Error
	case resp.Message == nil:
		return nil, errors.New("room state: empty get answer")
	}
	return resp.Message, nil
}

// roomView is a room's state as a watch (or a one-shot read) sees it.
type roomView struct {
	meta    *roomMeta // nil: no room
	metaRev uint64
	members map[string]memberEntry // by key
	slots   map[int]string         // slot -> holder's member id
	holders map[string]string      // identity key -> holder's member id
	lastRev uint64                 // the newest revision applied
}

func newRoomView() *roomView {
	return &roomView{members: map[string]memberEntry{}, slots: map[int]string{}, holders: map[string]string{}}
}

// apply applies one watched entry of the room with key prefix p.
func (v *roomView) apply(p string, e jetstream.KeyValueEntry) {
	v.lastRev = max(v.lastRev, e.Revision())
	put := e.Operation() == jetstream.KeyValuePut
	key := e.Key()
	switch {
	case key == p:
		v.meta, v.metaRev = nil, 0
		var m roomMeta
		if put && json.Unmarshal(e.Value(), &m) == nil {
			v.meta, v.metaRev = &m, e.Revision()
		}
	case strings.HasPrefix(key, p+".m."):
		delete(v.members, key)
		var m memberEntry
		if put && json.Unmarshal(e.Value(), &m) == nil {
			v.members[key] = m
		}
	case strings.HasPrefix(key, p+".i."):
		delete(v.holders, key)
		var h holder
		if put && json.Unmarshal(e.Value(), &h) == nil {
			v.holders[key] = h.ID
		}
	case strings.HasPrefix(key, p+".s."):
		s, err := strconv.Atoi(key[len(p)+3:])
		if err != nil {
			return
		}
		delete(v.slots, s)
		var h holder
		if put && json.Unmarshal(e.Value(), &h) == nil {
			v.slots[s] = h.ID
		}
	}
}

// state is the view as a roomState; ok false without a room.
func (v *roomView) state() (roomState, bool) {
	if v.meta == nil {
		return roomState{}, false
	}
	st := roomState{SID: v.meta.SID, EmptySince: v.meta.EmptySince, Closed: v.meta.Closed, Members: make([]room.Member, 0, len(v.members)),
		holders: make(map[string]string, len(v.holders))}
	for _, m := range v.members {
		st.Members = append(st.Members, m.Member)
	}
	for k, id := range v.holders {
		st.holders[k] = id
	}
	return st, true
}

// readView reads a room's whole state once (readKeys); a node closing
// alone (lastout.go) stops waiting for it.
func (n *Node) readView(name string) (*roomView, error) {
	return n.readViewCtx(n.lastOut, name)
}

// readViewCtx is readView within parent.
func (n *Node) readViewCtx(parent context.Context, name string) (*roomView, error) {
	ctx, cancel := context.WithTimeout(parent, kvTimeout)
	defer cancel()
	p := roomKey(name)
	v := newRoomView()
	if err := n.readKeys(ctx, []string{p, p + ".>"}, func(e jetstream.KeyValueEntry) { v.apply(p, e) }); err != nil {
		return nil, err
	}
	return v, nil
}

// readKeys gives apply the current value (or deletion marker) of every key
// matching filters, once: a watch, stopped when they are all in. The
// watch's own "all in" mark is not trusted alone (nats.go sets it as soon
// as the server says nothing more is pending, which it may say after the
// first of the values): the watch must also have delivered the newest
// change of those keys as read before it began.
func (n *Node) readKeys(ctx context.Context, filters []string, apply func(jetstream.KeyValueEntry)) error {
	return n.readKeysThrough(ctx, filters, n.lastChangeOf(ctx, filters), time.Second, apply)
}

// readKeysThrough is readKeys once the watch delivered stream sequence
// newest (0: nothing to wait for), waiting up to grace after the watch's
// own mark for it: the watch's consumer reads one replica of the stream,
// which may be a few writes behind.
func (n *Node) readKeysThrough(ctx context.Context, filters []string, newest uint64, graceFor time.Duration, apply func(jetstream.KeyValueEntry)) error {
	kw, err := n.bus.kv.WatchFiltered(ctx, filters)
	if err != nil {
		return err
	}
	defer func() { _ = kw.Stop() }()
	var last uint64
	var grace <-chan time.Time // after the mark: a newest change that expired meanwhile never comes
	for {
		if grace != nil && last >= newest {
			return nil
		}
		select {
		case e, ok := <-kw.Updates():
			if !ok {
				return errors.New("room state: the read ended early")
			}
			if e == nil {
				grace = time.After(graceFor)
				continue
			}
			last = max(last, e.Revision())
			apply(e)
		case <-grace:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

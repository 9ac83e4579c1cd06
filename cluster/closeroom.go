package cluster

import (
	"context"
	"encoding/json"
	"time"

	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/room"
)

// Deleting a room through the admin API (DELETE /v1/rooms/{room}) from any
// node. On one node the room closes at once: everyone leaves, room_finished
// is sent, and a join after it makes a new room. In the cluster each node
// closes its own part, and the room's key would stay in the state until the
// empty timeout: the room still answered GET, room_finished waited for the
// timeout, and a join meanwhile went back into the deleted room (same sid).
// So the delete marks the room's key closed first (compare-and-set: of two
// deletes at once one does it), which ends the room for the whole cluster
// at that moment: the admin API answers it no longer exists, a join opens
// a new room with a new sid in its place (openRoom), and no takeover
// resumes into it. Then every live node is told to close its part — also a
// node whose part only records the room and so holds no member — and each
// node's watch of the room closes a part the command missed. The node that
// marked it sends room_finished once the members are gone (at most
// closeWait), and deletes the key.

// A delete's compare-and-set may land while its answer is lost (a timeout:
// the store's leader changed, the bus was slow). Its retry then found the
// room closed and answered 404, and nobody sent room_finished or deleted
// the key. So each delete marks the key with its own random mark
// (roomMeta.ClosedBy): a retry that finds its own mark carries on as if
// the write had answered, and one that finds the room it tried to close
// gone, closed by another delete or replaced by a new room, answers that
// the room was deleted (the delete is idempotent) without closing a new
// room in its place. A new room names the mark of the delete that closed
// the one it replaced (PrevClosedBy), so a delete whose write landed
// still finishes the instance it closed (room_finished).

// closeWait bounds how long a deleted room's closer waits for its members
// to leave before it sends room_finished and deletes the room's key.
const closeWait = 5 * time.Second

// CloseRoom closes a room for the whole cluster (admin DELETE); it reports
// whether the room existed (an open room of the cluster's state), and the
// sid of the instance closed (a join may have opened a new one since,
// which the caller must not close).
func (n *Node) CloseRoom(name string) (string, bool) {
	p := roomKey(name)
	mark := newSID()
	// sid: the room instance this delete closed; tried: the instance a
	// write whose answer never came was for (it may have landed); gone:
	// that instance is closed or replaced now, by this delete or another.
	var sid, tried string
	gone := false
	err := n.retry(func(ctx context.Context) error {
		sid = ""
		var meta roomMeta
		rev, err := n.getJSON(ctx, p, &meta)
		switch {
		case err != nil:
			return err
		case rev != 0 && meta.Closed && meta.ClosedBy == mark:
			sid = meta.SID // an earlier try landed
			return nil
		case tried != "" && rev != 0 && meta.SID != tried && meta.PrevClosedBy == mark:
			sid = tried // an earlier try landed, and a join opened a new room since
			return nil
		case tried != "" && (rev == 0 || meta.Closed || meta.SID != tried):
			gone = true
			return nil
		case rev == 0 || meta.Closed || meta.SID == "":
			return nil
		}
		meta.Closed, meta.ClosedBy = true, mark
		data, _ := json.Marshal(meta)
		_, err = n.bus.kv.Update(ctx, p, data, rev)
		if f := n.loseCloseAnswer.Swap(nil); err == nil && f != nil {
			if *f != nil {
				(*f)()
			}
			err = context.DeadlineExceeded // tests: the write landed, its answer is lost
		}
		if err != nil {
			if isConflict(err) {
				return errRetry
			}
			tried = meta.SID
			return err
		}
		sid = meta.SID
		return nil
	})
	if err != nil {
		// The store is out of reach: close the parts of the nodes this
		// node knows of, as the members' own leaves would.
		n.log.Warn("room state: room not marked closed", "room", name, "err", err)
		st, ok := n.getOpen(name)
		if !ok {
			return "", false
		}
		for _, node := range nodesOf(st) {
			if node != n.id {
				n.closePart(node, name, st.SID)
			}
		}
		return st.SID, true
	}
	if gone {
		// Closed by another delete (which finishes it), or emptied and
		// closed (its closer finishes it).
		n.log.Info("room deleted in the cluster (closed or replaced since this delete's unanswered write)", "room", name, "sid", tried)
		return tried, true
	}
	if sid == "" {
		return "", false // no such room, or deleted already
	}
	n.log.Info("room deleted in the cluster", "room", name, "sid", sid)
	for _, node := range n.OtherNodes() {
		n.closePart(node, name, sid)
	}
	n.spawn(func() { n.finishClosed(name, sid) })
	return sid, true
}

// closePart tells a node to close its part of the room instance sid.
func (n *Node) closePart(node, name, sid string) {
	data, _ := json.Marshal(ctlMsg{Room: name, SID: sid, Event: room.Event{Node: n.id, Type: room.CtlCloseRoom, Reason: protocol.ReasonRoomClosed}})
	if err := n.bus.nc.Publish(nodeSubject(node, "ctl"), data); err != nil {
		n.log.Warn("command not sent", "node", node, "type", room.CtlCloseRoom, "err", err)
	}
}

// finishClosed sends room_finished for the deleted room instance sid once
// its members have left (or after closeWait), then deletes its key unless
// a join has opened a new room in its place meanwhile.
func (n *Node) finishClosed(name, sid string) {
	deadline := time.Now().Add(closeWait)
	for {
		st, ok := n.get(name)
		if !ok || st.SID != sid || len(st.Members) == 0 || time.Now().After(deadline) {
			break
		}
		select {
		case <-n.stop:
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
	n.roomFinished(name, sid)
	p := roomKey(name)
	_ = n.retry(func(ctx context.Context) error {
		var meta roomMeta
		rev, err := n.getJSON(ctx, p, &meta)
		if err != nil || rev == 0 || !meta.Closed || meta.SID != sid {
			return err
		}
		_, err = n.kvDelete(ctx, p, rev)
		if isConflict(err) {
			return errRetry
		}
		return err
	})
}

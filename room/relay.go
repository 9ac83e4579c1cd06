package room

import (
	"time"

	"github.com/starling-rtc/starling/sfu"
)

// This file gives a remote track its media: the first local subscriber
// makes the bus import it from its node (once per track and node); the
// import is an sfu.Source like a local publisher's receiver, so down
// tracks, the allocator and the recorder need no change.

// trackImport is the import state of a remote track (under Track.mu).
type trackImport struct {
	src       sfu.Source
	importing bool
	waiting   []*subscriberLoop
}

// source is t's media: its receiver, or the import of a remote track (nil
// until it is ready).
func (t *Track) source() sfu.Source {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.receiver != nil {
		return t.receiver
	}
	return t.imp.src
}

// awaitImport queues l for t's import and starts it once; l's addDownTrack
// runs again when the source is there. A nil l (a recording or the mix
// wants the track, remotemedia.go) only starts the import.
func (t *Track) awaitImport(l *subscriberLoop) {
	bus := t.owner.room.bus
	if bus == nil || t.owner.node == "" {
		return
	}
	t.mu.Lock()
	if l == nil && t.imp.src != nil {
		t.mu.Unlock()
		return // imported already
	}
	if l != nil {
		t.imp.waiting = append(t.imp.waiting, l)
	}
	if t.imp.importing {
		t.mu.Unlock()
		return
	}
	t.imp.importing = true
	info := t.info
	t.mu.Unlock()
	go func() {
		var src sfu.Source
		var err error
		// A bus or node hiccup should not leave subscribers without media:
		// retry a few times while the track is still published.
		for try := 0; try < 5; try++ {
			if try > 0 {
				time.Sleep(time.Duration(try) * 500 * time.Millisecond)
				if t.owner.room.track(t.id) != t {
					break
				}
			}
			if src, err = bus.Import(t.owner.room, t.owner.node, info); err == nil {
				break
			}
		}
		// Unpublished meanwhile, or the room closed here: closeImport(s)
		// found nothing to close.
		gone := t.owner.room.track(t.id) != t || t.owner.room.isClosed()
		// The owner's closed flag is under its own lock, not t.mu.
		ownerClosed := t.owner.isClosed()
		t.mu.Lock()
		t.imp.importing = false
		waiting := t.imp.waiting
		t.imp.waiting = nil
		closed := ownerClosed || gone
		if err == nil && src != nil && !closed {
			t.imp.src = src
		}
		if (err != nil || src == nil) && !closed {
			// They still want it: a moved track's successor takes them
			// (spliceTrackLocked), as would the next import.
			t.imp.waiting = append(waiting, t.imp.waiting...)
		}
		t.mu.Unlock()
		if err != nil || src == nil {
			t.owner.log.Warn("cannot relay remote track", "track", t.id, "err", err)
			return
		}
		if closed {
			closeSource(src)
			bus.Unimport(t.owner.node, t.id) // the origin's export and the node's books
			return
		}
		if t.owner.isClosed() || t.owner.room.track(t.id) != t || t.owner.room.isClosed() {
			// Closed between the check and the store: closeImport may
			// have found nothing yet, so end the import here.
			t.closeImport()
			return
		}
		if lc, ok := src.(interface{ OnLayersChanged(func(uint8)) }); ok {
			lc.OnLayersChanged(func(uint8) { t.owner.room.layersChanged(t) })
		}
		for _, w := range waiting {
			w.post(func() { w.addDownTrack(t) })
		}
		t.owner.room.importReady(t) // the mixer and recordings (remotemedia.go)
	}()
}

// closeImports ends the imports of the other nodes' tracks when the room's
// part here closes (its last participant left, or it was closed): nothing
// here needs them any more. Left open, the origin node went on sending the
// track to this node until its publisher left, and the import stayed in
// the relay's books for good (starling_cluster_relayed_tracks{direction=
// "in"} counted it after the room was gone).
//
// Not on a draining node: the participants it released linger there,
// their old connections still fed by these imports until their new node
// has them (make-before-break, handover.go); the node's shutdown ends the
// imports soon after.
func (r *Room) closeImports() {
	if r.m.Draining() {
		return
	}
	r.mu.Lock()
	var ts []*Track
	for _, t := range r.tracks {
		if t.owner.node != "" {
			ts = append(ts, t)
		}
	}
	for _, t := range r.moved {
		ts = append(ts, t)
	}
	r.mu.Unlock()
	for _, t := range ts {
		t.closeImport()
	}
}

// closeImport ends a remote track's import, if any.
func (t *Track) closeImport() {
	t.mu.Lock()
	src := t.imp.src
	t.imp.src = nil
	t.mu.Unlock()
	if src != nil {
		closeSource(src)
		if bus := t.owner.room.bus; bus != nil {
			bus.Unimport(t.owner.node, t.id)
		}
	}
}

// LocalSource is the media of a track published on this node, for the
// relay to export; nil for an unknown or remote track.
func (r *Room) LocalSource(trackID string) sfu.Source {
	t := r.track(trackID)
	if t == nil || t.owner.node != "" {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.receiver == nil {
		return nil
	}
	return t.receiver
}

func closeSource(src sfu.Source) {
	if c, ok := src.(interface{ Close() }); ok {
		c.Close()
	} else if c, ok := src.(interface{ Close() error }); ok {
		_ = c.Close()
	}
}

// isClosed reports whether this instance of the room is over.
func (r *Room) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

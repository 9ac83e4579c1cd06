package sfu

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// A down track's send queue separates forwarding from writing. The
// receiver's goroutine munges a packet into a pooled buffer and queues it;
// the down track's own writer goroutine encrypts and sends it. So:
//   - a subscriber whose transport blocks (ICE-TCP to a peer that stopped
//     reading) fills its own queue and loses its own packets, counted, while
//     the receiver goes on serving everyone else;
//   - one published track's fan-out to many subscribers spreads over every
//     core instead of running on the receiver's single goroutine.
//
// When a queue is full the newest packet is dropped (tail drop): its
// sequence number is already assigned, so the subscriber sees the gap and
// asks for a retransmission or a keyframe, as it would for network loss.
//
// The writer is woken once per video frame, not once per packet: a
// frame's packets are queued "held" and the one carrying the marker bit
// (the frame's last) wakes the writer, which then writes them back to back.
// A woken goroutine per packet per subscriber was the largest cost after
// the system calls themselves (~12% of the server's CPU at 100
// subscribers), and a frame written in one go reaches the batched socket
// as one run, which it sends as one segmented message (batchwrite.go).
// Holding costs a frame nothing: it cannot be decoded before its last
// packet anyway. A frame whose last packet was lost, or one the publisher
// spreads out (a pacer), is released holdTime after its first held packet,
// and a keyframe every holdMax packets. Audio, retransmissions and probes
// wake the writer at once.
const (
	holdTime = 5 * time.Millisecond
	holdMax  = 16
)

// Queue lengths: video holds about one second at 2.5 Mbit/s (a 720p
// keyframe is ~100 packets), audio about a second of 20 ms packets. Entries
// are small; payloads live in pooled buffers only while queued.
const (
	videoQueueLen = 256
	audioQueueLen = 64
)

// packetBuf holds one munged payload; a VP8 descriptor may grow by a few bytes.
type packetBuf [maxPacket + 16]byte

var packetPool = sync.Pool{New: func() any { return new(packetBuf) }}

// queuedPacket is one packet ready to write. buf nil = padding only.
type queuedPacket struct {
	w       webrtc.TrackLocalWriter
	buf     *packetBuf
	n       uint16
	seq     uint16
	ts      uint32
	ssrc    uint32
	pt      uint8
	marker  bool
	padding bool
	repair  bool // a retransmission: not counted as forwarded
}

type sendQueue struct {
	ch      chan queuedPacket
	wake    chan struct{}   // the writer parks here, not on ch: see holdTime
	free    chan *packetBuf // a few buffers of this track's own, reused first
	started bool
	held    int           // packets queued since the writer was last woken; under d.mu
	timer   *time.Timer   // releases held packets after holdTime
	armed   bool          // timer is running; under d.mu
	queued  atomic.Uint64 // packets accepted into the queue
	handled atomic.Uint64 // packets taken out and written (or failed)
}

// enqueue hands a packet to the writer goroutine and wakes it; false = the
// queue is full and the packet was dropped. Call with d.mu held and
// d.closed false: packets leave in the order they were queued.
func (d *DownTrack) enqueue(p queuedPacket) bool {
	ok := d.push(p)
	if ok {
		d.queue.held++
	}
	d.wakeWriter()
	return ok
}

// wakeWriter wakes the writer for every packet queued so far. Call with
// d.mu held.
func (d *DownTrack) wakeWriter() {
	q := &d.queue
	if q.held == 0 {
		return
	}
	q.held = 0
	if q.armed {
		q.armed = false
		q.timer.Stop() // cheaper than a timer firing for nothing (a goroutine each)
	}
	select {
	case q.wake <- struct{}{}:
	default: // already due to wake
	}
}

// releaseHeld is the hold timer: it wakes the writer for packets whose
// frame has not ended in time.
func (d *DownTrack) releaseHeld() {
	d.mu.Lock()
	d.queue.armed = false
	d.wakeWriter()
	d.mu.Unlock()
}

// enqueueHeld queues a packet without waking the writer, unless holdMax
// packets are held already; the holdTime timer wakes it at the latest.
// Call with d.mu held.
func (d *DownTrack) enqueueHeld(p queuedPacket) bool {
	ok := d.push(p)
	q := &d.queue
	if !ok {
		return false
	}
	q.held++
	if q.held >= holdMax {
		d.wakeWriter()
		return true
	}
	if !q.armed {
		q.armed = true
		if q.timer == nil {
			q.timer = time.AfterFunc(holdTime, d.releaseHeld)
		} else {
			q.timer.Reset(holdTime)
		}
	}
	return true
}

// push puts a packet in the queue, starting the writer on first use.
func (d *DownTrack) push(p queuedPacket) bool {
	q := &d.queue
	if !q.started {
		q.started = true
		n := videoQueueLen
		if !d.video {
			n = audioQueueLen
		}
		q.ch = make(chan queuedPacket, n)
		q.wake = make(chan struct{}, 1)
		if q.free == nil {
			q.free = make(chan *packetBuf, ownBuffers)
		}
		go d.writeLoop(q.ch, q.wake, q.free)
	}
	select {
	case q.ch <- p:
		q.queued.Add(1)
		return true
	default:
		if p.buf != nil {
			q.putBuf(p.buf)
		}
		d.dropped.Add(1)
		counters.queueDrops.Add(1)
		return false
	}
}

// ownBuffers is how many buffers a down track keeps for itself: enough for
// steady forwarding, where the writer is at most a few packets behind. Bursts
// (keyframes) borrow from the shared pool. Own buffers matter because
// sync.Pool empties at every GC (and drops puts at random under -race).
const ownBuffers = 8

// getBuf returns a buffer for a payload. Call with d.mu held.
func (q *sendQueue) getBuf() *packetBuf {
	if q.free == nil {
		q.free = make(chan *packetBuf, ownBuffers)
	}
	select {
	case b := <-q.free:
		return b
	default:
		return packetPool.Get().(*packetBuf)
	}
}

// putBuf gives a buffer back once written or dropped.
func (q *sendQueue) putBuf(b *packetBuf) { recycle(q.free, b) }

// recycle keeps b among free's buffers, or returns it to the shared pool.
func recycle(free chan *packetBuf, b *packetBuf) {
	select {
	case free <- b:
	default:
		packetPool.Put(b)
	}
}

// closeQueue ends the writer goroutine once it has drained the queue. Call
// with d.mu held, once.
func (d *DownTrack) closeQueue() {
	if d.queue.timer != nil {
		d.queue.timer.Stop()
	}
	if d.queue.started {
		close(d.queue.ch)
		d.queue.held = 1 // so that the wake below is sent
		d.wakeWriter()
	}
}

// writeLoop writes queued packets each time it is woken, until the queue
// closes.
func (d *DownTrack) writeLoop(ch chan queuedPacket, wake chan struct{}, free chan *packetBuf) {
	var h rtp.Header // reused: interceptors append header extensions to it
	for range wake {
		if !d.drain(ch, free, &h) {
			return
		}
	}
}

// drain writes every queued packet; false once the queue is closed.
func (d *DownTrack) drain(ch chan queuedPacket, free chan *packetBuf, h *rtp.Header) bool {
	for {
		var p queuedPacket
		select {
		case q, ok := <-ch:
			if !ok {
				return false
			}
			p = q
		default:
			return true
		}
		h.Version = 2
		h.Padding = p.padding
		h.Marker = p.marker
		h.PayloadType = p.pt
		h.SequenceNumber = p.seq
		h.Timestamp = p.ts
		h.SSRC = p.ssrc
		h.Extension = false
		h.Extensions = h.Extensions[:0]
		h.CSRC = h.CSRC[:0]
		payload := paddingPayload
		if p.buf != nil {
			payload = p.buf[:p.n]
		}
		_, err := p.w.WriteRTP(h, payload)
		if p.buf != nil {
			recycle(free, p.buf)
		}
		switch {
		case err != nil:
			d.dropped.Add(1)
		case p.padding:
			counters.paddingSent.Add(1)
		case !p.repair:
			d.packets.Add(1)
			d.bytes.Add(uint64(len(payload) + 12))
		}
		d.queue.handled.Add(1)
	}
}

// flush waits until every packet queued so far has been written (or its
// write failed), or until timeout; it reports whether the queue drained.
func (d *DownTrack) flush(timeout time.Duration) bool {
	want := d.queue.queued.Load()
	deadline := time.Now().Add(timeout)
	for spins := 0; d.queue.handled.Load() < want; spins++ {
		if spins < 1000 {
			runtime.Gosched() // the writer is usually just behind
			continue
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Microsecond)
	}
	return true
}

// queued is how many packets wait in the send queue now.
func (d *DownTrack) queued() int {
	return int(d.queue.queued.Load() - d.queue.handled.Load())
}

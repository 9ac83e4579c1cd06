package sfu

import (
	"errors"
	"sync"

	"github.com/pion/webrtc/v4"
)

// Data messages to a subscriber wait for its `data` channel: a participant
// gets every message sent after its join result, although its subscriber
// connection (and the channel in it) opens only later, after the first
// offer, answer, ICE, DTLS and SCTP. The same holds for a participant that
// resumes before its channel ever opened. The wait is bounded: past
// MaxHeldDataMessages or MaxHeldDataBytes, newer messages are dropped (and
// counted), so a client that never completes its connection costs at most
// that much memory; what it does receive is the earliest messages, in order.
const (
	MaxHeldDataMessages = 256
	MaxHeldDataBytes    = 1 << 20
)

// Errors from Subscriber.SendData; the message is dropped and counted.
var (
	ErrDataQueueFull  = errors.New("data message dropped: too many held while the data channel opens")
	ErrDataChannelEnd = errors.New("data message dropped: the data channel is closed")
)

// dataOut is a subscriber data channel's sending side.
type dataOut struct {
	mu      sync.Mutex
	open    bool
	ended   bool
	pending [][]byte
	bytes   int
}

// send sends msg on dc, or holds it while dc is not open yet. Sending under
// the lock keeps order with the flush on open; pion's SendText only queues
// in the SCTP association, it does not wait for the network.
func (q *dataOut) send(dc *webrtc.DataChannel, msg []byte) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	switch {
	case q.ended:
		counters.dataDropped.Add(1)
		return ErrDataChannelEnd
	case q.open:
		return dc.SendText(string(msg))
	case len(q.pending) >= MaxHeldDataMessages || q.bytes+len(msg) > MaxHeldDataBytes:
		counters.dataDropped.Add(1)
		return ErrDataQueueFull
	}
	q.pending = append(q.pending, msg)
	q.bytes += len(msg)
	counters.dataHeld.Add(1)
	return nil
}

// opened returns dc's OnOpen handler: it sends what was held, in order.
func (q *dataOut) opened(dc *webrtc.DataChannel) func() {
	return func() {
		q.mu.Lock()
		defer q.mu.Unlock()
		if q.open || q.ended {
			return
		}
		for i, msg := range q.pending {
			if err := dc.SendText(string(msg)); err != nil {
				counters.dataDropped.Add(uint64(len(q.pending) - i))
				break
			}
		}
		q.pending, q.bytes, q.open = nil, 0, true
	}
}

// closed is dc's OnClose handler: nothing more can be sent.
func (q *dataOut) closed() {
	q.mu.Lock()
	defer q.mu.Unlock()
	counters.dataDropped.Add(uint64(len(q.pending)))
	q.pending, q.bytes, q.ended = nil, 0, true
}

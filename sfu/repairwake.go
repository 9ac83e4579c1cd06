package sfu

import (
	"encoding/binary"
	"errors"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"
)

// Repairs that arrive while a track is idle.
//
// pion hands a publisher's retransmissions (its RTX stream) to the
// application through TrackRemote.Read of the media stream: a reader of its
// own unwraps each RTX packet and queues it, and Read returns a queued one
// first, else blocks on the media stream. A repair queued while Read is
// blocked waits there for the next media packet: up to a frame interval
// (a second or more for a screen share or a static camera), and for ever
// after the publisher's last packet. TestLossRecoveryUpstream lost exactly
// those packets: a packet lost near the end of the stream whose repair
// (the third, after two lost resends) came after the publisher's last
// packet never left the server.
//
// The repairWaker interceptor sees every RTX packet of a connection; once
// pion has queued it, it wakes the read loop (Receiver.readRTP) of each of
// the connection's video layers by setting their read deadline in the past.
// The interrupted Read returns a timeout; the loop clears the deadline and
// reads again, and Read returns the queued repair first. A wake costs a
// spurious Read per layer, per RTX packet: retransmissions are rare, and
// wakes coalesce while one is pending.

// repairWakerFactory makes one repairWaker per peer connection.
type repairWakerFactory struct{}

func (repairWakerFactory) NewInterceptor(string) (interceptor.Interceptor, error) {
	return &repairWaker{}, nil
}

type repairWaker struct {
	interceptor.NoOp
	mu    sync.Mutex
	video []uint32 // the SSRCs of the connection's incoming video streams
}

func (w *repairWaker) BindRemoteStream(info *interceptor.StreamInfo, reader interceptor.RTPReader) interceptor.RTPReader {
	if strings.EqualFold(info.MimeType, webrtc.MimeTypeRTX) {
		queued := false
		return interceptor.RTPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
			// pion's repair reader calls Read again only after it has
			// queued (or dropped) the previous packet: wake the media
			// readers now, when Read can return it.
			if queued {
				queued = false
				w.wake()
			}
			n, attr, err := reader.Read(b, a)
			if err == nil && rtxCarriesMedia(b[:n]) {
				queued = true
			}
			return n, attr, err
		})
	}
	if strings.HasPrefix(strings.ToLower(info.MimeType), "video/") {
		w.mu.Lock()
		w.video = append(w.video, info.SSRC)
		w.mu.Unlock()
	}
	return reader
}

func (w *repairWaker) UnbindRemoteStream(info *interceptor.StreamInfo) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, s := range w.video {
		if s == info.SSRC {
			w.video = append(w.video[:i], w.video[i+1:]...)
			return
		}
	}
}

// wake interrupts the read of each video layer of the connection. The RTX
// stream does not say which media stream it repairs (simulcast RTX streams
// name their layer in a header extension): waking them all is cheap.
func (w *repairWaker) wake() {
	w.mu.Lock()
	defer w.mu.Unlock()
	readers.mu.RLock()
	defer readers.mu.RUnlock()
	for _, ssrc := range w.video {
		for _, l := range readers.bySSRC[ssrc] {
			l.wake()
		}
	}
}

// rtxCarriesMedia reports whether an RTX packet carries a payload beyond
// its 2-byte original sequence number: pion queues only those, not the
// padding-only packets of bandwidth probes.
func rtxCarriesMedia(b []byte) bool {
	if len(b) < 12 {
		return false
	}
	hl := 12 + 4*int(b[0]&0x0f)
	if b[0]&0x10 != 0 {
		if len(b) < hl+4 {
			return false
		}
		hl += 4 * (1 + int(binary.BigEndian.Uint16(b[hl+2:hl+4])))
	}
	pad := 0
	if b[0]&0x20 != 0 {
		pad = int(b[len(b)-1])
	}
	return len(b)-hl-pad >= 2
}

// readers are the video layers being read, by media SSRC, for
// repairWaker. SSRCs are chosen at random by each publisher: two layers of
// different connections sharing one both get woken, which is harmless.
var readers = struct {
	mu     sync.RWMutex
	bySSRC map[uint32][]*layer
}{bySSRC: map[uint32][]*layer{}}

func registerReader(l *layer) {
	readers.mu.Lock()
	defer readers.mu.Unlock()
	readers.bySSRC[l.ssrc] = append(readers.bySSRC[l.ssrc], l)
}

func unregisterReader(l *layer) {
	readers.mu.Lock()
	defer readers.mu.Unlock()
	ls := readers.bySSRC[l.ssrc]
	for i, x := range ls {
		if x == l {
			ls = append(ls[:i:i], ls[i+1:]...)
			break
		}
	}
	if len(ls) == 0 {
		delete(readers.bySSRC, l.ssrc)
	} else {
		readers.bySSRC[l.ssrc] = ls
	}
}

// pastDeadline is any time in the past: a read deadline there fails the
// blocked Read at once.
var pastDeadline = time.Unix(1, 0)

// wake interrupts the layer's blocked Read, unless a wake is pending.
func (l *layer) wake() {
	if l.wakePending.CompareAndSwap(false, true) {
		_ = l.track.SetReadDeadline(pastDeadline)
	}
}

// woken handles a Read error: true if it was a wake (the deadline is
// cleared and the loop reads on), false if the track ended.
func (l *layer) woken(err error) bool {
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		return false
	}
	// Clear the deadline before accepting the next wake: a wake that
	// lands in between then sets a fresh one; a wake refused while this
	// one is pending had its repair queued before, and the next Read
	// returns it.
	if l.track.SetReadDeadline(time.Time{}) != nil {
		return false
	}
	l.wakePending.Store(false)
	return true
}

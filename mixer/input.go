package mixer

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/starling-rtc/starling/internal/clock"
	"github.com/starling-rtc/starling/sfu"
	"github.com/thesyncim/gopus"
)

const (
	sampleRate    = 48000
	frameSamples  = 960 // 20 ms at 48 kHz
	frameDuration = 20 * time.Millisecond
	// maxOpus is the largest Opus packet kept (RFC 6716: 1275 bytes a frame,
	// a packet of up to 3 such frames fits the MTU anyway).
	maxOpus = 1500
	// jbSlots is the jitter buffer's capacity: 320 ms of 20 ms packets.
	jbSlots = 16
	// concealFrames is how many frames an input that stopped sending is
	// concealed before it counts as silent (DTX, mute, a pause) and stops
	// costing anything.
	concealFrames = 3
	// maxStale: a buffered packet older than this is dropped as a leftover.
	maxStale = int64(time.Second)
)

// slot is one buffered packet.
type slot struct {
	ok   bool
	seq  uint16
	n    int
	at   int64 // arrival, unix nanos
	data [maxOpus]byte
}

// input is one mixed audio track: an sfu.Sink on its receiver, a jitter
// buffer filled by the receiver's goroutine and drained by the mixer's.
type input struct {
	trackID, owner string
	src            sfu.Source
	red            bool // the publisher sends RED: the primary block is decoded

	muted  atomic.Bool // the publisher muted it: packets are ignored
	closed atomic.Bool

	mu     sync.Mutex
	slots  [jbSlots]slot
	newest uint16 // highest sequence number buffered
	have   bool   // newest is valid
	late   uint64 // packets that came after their turn
	// The buffer's lowest level over the current window (adapt).
	minLevel, window int

	// Owned by the mixer goroutine.
	dec      *gopus.Decoder
	started  bool   // playing: next is the packet due
	next     uint16 // sequence number due at the next frame
	missing  int    // consecutive frames concealed
	decoded  bool   // a packet was decoded since the last reset
	pkt      [maxOpus]byte
	fec      [maxOpus]byte
	pcm      [frameSamples * 6]float32 // a 120 ms packet fits
	pend     [frameSamples * 5]float32 // the rest of a packet longer than 20 ms, played next
	pendN    int                       // samples in pend
	pendOff  int                       // of which played
	arrival  int64                     // arrival of the packet played in this frame
	measure  bool                      // no RFC 6464 levels: ranked by its decoded audio (rank.go)
	dbSum    float64                   // measure: -dBov summed over the current ranking tick
	dbN      int
	stopped  bool    // frame: the stream ran dry and stopped playing this frame (Stats.Dropouts)
	selected bool    // among the loudest (since the last frame)
	marked   bool    // selected again this frame
	gain     float32 // the admin's gain this frame (0 = left out of the mix)
}

func newInput(trackID, owner string, src sfu.Source) (*input, error) {
	dec, err := gopus.NewDecoder(gopus.DefaultDecoderConfig(sampleRate, 1))
	if err != nil {
		return nil, err
	}
	in := &input{trackID: trackID, owner: owner, src: src, dec: dec}
	in.red = strings.EqualFold(src.Codec().MimeType, sfu.MimeTypeRED)
	return in, nil
}

// WriteRTP buffers one packet; runs on the receiver's read goroutine, never
// blocks for long and does not allocate.
func (in *input) WriteRTP(hdr *rtp.Header, payload []byte, _ int8) error {
	if in.muted.Load() || in.closed.Load() {
		return nil
	}
	if in.red {
		var ok bool
		if payload, ok = sfu.REDPrimary(payload); !ok {
			return nil
		}
	}
	if len(payload) == 0 || len(payload) > maxOpus {
		return nil
	}
	now := in.src.PacketTime()
	if now == 0 {
		now = clock.Nanos()
	}
	seq := hdr.SequenceNumber
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.started && int16(seq-in.next) < 0 {
		in.late++ // its frame was already concealed
		return nil
	}
	s := &in.slots[seq%jbSlots]
	s.ok, s.seq, s.n, s.at = true, seq, copy(s.data[:], payload), now
	if !in.have || int16(seq-in.newest) > 0 {
		in.newest, in.have = seq, true
	}
	return nil
}

// OnSenderReport is unused: inputs are not synchronised with each other.
func (in *input) OnSenderReport(int8, uint64, uint32) {}

// Close stops buffering: the track is gone.
func (in *input) Close() { in.closed.Store(true) }

// packet finds a buffered packet by sequence number; in.mu held.
func (in *input) packet(seq uint16, now int64) *slot {
	s := &in.slots[seq%jbSlots]
	if !s.ok || s.seq != seq || now-s.at > maxStale {
		return nil
	}
	return s
}

// buffered counts the packets from in.next on; in.mu held.
func (in *input) buffered(now int64) int {
	n := 0
	for i := range in.slots {
		s := &in.slots[i]
		if s.ok && now-s.at <= maxStale && (!in.started || int16(s.seq-in.next) >= 0) {
			n++
		}
	}
	return n
}

// oldest is the lowest buffered sequence number; in.mu held, in.have true.
func (in *input) oldest(now int64) uint16 {
	low := in.newest
	for i := range in.slots {
		s := &in.slots[i]
		if s.ok && now-s.at <= maxStale && int16(s.seq-low) < 0 {
			low = s.seq
		}
	}
	return low
}

// skip drops the buffered packets before seq; in.mu held.
func (in *input) skip(seq uint16) {
	for i := range in.slots {
		if s := &in.slots[i]; s.ok && int16(s.seq-seq) < 0 {
			s.ok = false
		}
	}
}

// frame produces this input's next 20 ms of PCM into in.pcm[:frameSamples]:
// the packet due, or in-band FEC from the packet after it, or concealment.
// It returns false when the input has nothing to play (not started, or
// silent for more than concealFrames).
func (in *input) frame(now int64, depth int) bool {
	if in.pendN-in.pendOff >= frameSamples { // a 40 or 60 ms packet's next 20 ms
		copy(in.pcm[:frameSamples], in.pend[in.pendOff:in.pendOff+frameSamples])
		in.pendOff += frameSamples
		return true
	}
	in.pendN, in.pendOff = 0, 0
	in.mu.Lock()
	if !in.started {
		if !in.have || in.buffered(now) < depth {
			in.mu.Unlock()
			return false
		}
		// Start depth-1 frames behind the newest: older packets (left
		// from before this input was mixed) would only add delay.
		in.next = in.newest - uint16(depth-1)
		if o := in.oldest(now); int16(o-in.next) > 0 {
			in.next = o // fewer, but reordered: start at the first
		}
		in.skip(in.next)
		in.started, in.missing = true, 0
	}
	// A burst (or a sender restarting its sequence): far more waiting than
	// the buffer's depth; skip to depth frames behind the newest.
	if ahead := int(int16(in.newest - in.next)); ahead >= depth+4 || ahead < -jbSlots {
		in.next = in.newest - uint16(depth-1)
		in.skip(in.next)
	}
	if s := in.packet(in.next, now); s != nil {
		n := copy(in.pkt[:], s.data[:s.n])
		in.arrival = s.at
		s.ok = false
		in.next++
		in.missing = 0
		in.adapt(depth)
		in.mu.Unlock()
		return in.decode(in.pkt[:n], false)
	}
	// The packet due is missing. If a later one arrived, it is lost (or
	// late beyond the buffer): conceal it, with the next packet's FEC when
	// it carries some, and move on.
	if in.have && int16(in.newest-in.next) > 0 {
		n := 0
		if s := in.packet(in.next+1, now); s != nil {
			n = copy(in.fec[:], s.data[:s.n])
		}
		in.next++
		in.missing++
		in.mu.Unlock()
		counters.concealed.Add(1)
		if n > 0 && gopus.PacketHasLBRR(in.fec[:n]) {
			counters.fec.Add(1)
			return in.decode(in.fec[:n], true)
		}
		return in.decode(nil, false)
	}
	// Nothing newer: the publisher paused (DTX, mute) or the packet is
	// late. Conceal a few frames without moving on, so a late packet still
	// plays, then go quiet and wait for a new talkspurt to fill the buffer.
	in.missing++
	if in.missing > concealFrames {
		in.started = false
		in.stopped = true
		in.mu.Unlock()
		return false
	}
	in.mu.Unlock()
	if !in.decoded {
		return false
	}
	counters.concealed.Add(1)
	return in.decode(nil, false)
}

// adaptWindow is how many frames the buffer's lowest level is watched
// before it is trusted: one second.
const adaptWindow = 50

// adapt shrinks a buffer that grew: after a late packet the input waits
// (conceals) instead of skipping, which costs a frame of delay; if for a
// whole second at least depth frames were always waiting after the one
// played, that frame of delay is no longer needed and one packet is
// dropped. in.mu held.
func (in *input) adapt(depth int) {
	level := int(int16(in.newest-in.next)) + 1 // frames waiting
	if in.window == 0 || level < in.minLevel {
		in.minLevel = level
	}
	in.window++
	if in.window < adaptWindow {
		return
	}
	in.window = 0
	if in.minLevel >= depth {
		if s := in.packet(in.next, clock.Nanos()); s != nil {
			s.ok = false
		}
		in.next++
		counters.shrinks.Add(1)
	}
}

// decode decodes one packet (nil = conceal) into in.pcm; a packet longer
// than 20 ms leaves the rest in pend for the next frames.
func (in *input) decode(pkt []byte, fec bool) bool {
	var n int
	var err error
	switch {
	case fec:
		n, err = in.dec.DecodeWithFEC(pkt, in.pcm[:frameSamples], true)
	case pkt == nil:
		n, err = in.dec.Decode(nil, in.pcm[:frameSamples])
	default:
		n, err = in.dec.Decode(pkt, in.pcm[:])
	}
	if err != nil || n <= 0 {
		counters.decodeErrors.Add(1)
		return false
	}
	if n < frameSamples {
		clear(in.pcm[n:frameSamples])
	}
	if n > frameSamples {
		in.pendN, in.pendOff = copy(in.pend[:], in.pcm[frameSamples:n]), 0
	}
	if pkt != nil && !fec {
		in.decoded = true
	}
	return true
}

// reset forgets the playout state: the input was not mixed for a while, and
// resumes from a fresh buffer when it is again.
func (in *input) reset() {
	in.mu.Lock()
	in.started, in.missing = false, 0
	in.mu.Unlock()
	in.dec.Reset()
	in.decoded = false
	in.pendN, in.pendOff = 0, 0
}

// drain discards what an input not mixed this frame buffered, keeping its
// buffer from holding old audio when it enters the mix.
func (in *input) drain(depth int) {
	in.mu.Lock()
	if in.have {
		keep := in.newest - uint16(depth-1)
		in.skip(keep)
	}
	in.started = false
	in.mu.Unlock()
}

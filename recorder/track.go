package recorder

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media/samplebuilder"
	"github.com/starling-rtc/starling/sfu"
)

// TrackOptions configure a TrackRecorder.
type TrackOptions struct {
	Dir    string // folder for the file; created if missing
	Name   string // file name without extension
	Title  string // track name stored in the container
	Logger *slog.Logger
	// QueuePackets bounds the packets waiting for the writer goroutine;
	// packets beyond it are dropped and counted. 0 = 512 (video), 128 (audio).
	QueuePackets int
	// OnDone runs once on the writer goroutine when the file is final
	// (after Close, or after a write error stopped the recording).
	OnDone func(TrackResult)
	// OnFileCreated runs on the writer goroutine when the file is created.
	OnFileCreated func(path string)
}

// SenderReport is one RTCP sender report: the publisher's NTP wall clock
// at a point on the track's RTP clock, and when it arrived here.
type SenderReport struct {
	NTP     uint64    `json:"ntp"`
	RTP     uint32    `json:"rtp"`
	Arrived time.Time `json:"arrived"`
}

// Time is the NTP timestamp as a time.
func (s SenderReport) Time() time.Time { return ntpTime(s.NTP) }

func ntpTime(ntp uint64) time.Time {
	const ntpEpochOffset = 2208988800 // 1900-01-01 to 1970-01-01 in seconds
	sec := int64(ntp>>32) - ntpEpochOffset
	frac := int64((ntp & 0xffffffff) * 1e9 >> 32)
	return time.Unix(sec, frac)
}

// TrackResult describes a finished (or running) track recording.
type TrackResult struct {
	TrackID string
	Kind    string // audio or video
	Codec   string // MIME type
	File    string // full path; "" if nothing was written
	Frames  int
	// Duration is the media time in the file.
	Duration time.Duration
	// FirstArrival is when the first written frame's first packet arrived.
	FirstArrival time.Time
	// FirstRTP is the RTP timestamp of the first written frame, on the
	// clock of StartLayer.
	FirstRTP   uint32
	ClockRate  uint32
	StartLayer int8
	// SR is the first sender report of StartLayer received after the
	// first frame (srSettle after it; nil if none came): maps FirstRTP to the sender's clock.
	SR *SenderReport
	// SRs lists, per layer, the latest sender report (for clock offsets).
	SRs []SenderReport
	// SenderOffset is the smallest (arrival here − sender NTP time) over
	// all sender reports: the publisher's clock offset plus the shortest
	// transit. HaveSenderOffset is false before the first report.
	SenderOffset     time.Duration
	HaveSenderOffset bool
	Width, Height    int // from the first keyframe (video)
	Drops            uint64
	DroppedFrames    uint64 // incomplete or undecodable frames not written
	LayerSwitches    int
	Err              error
}

// pkt is one queued RTP packet: a copy, owned by the recorder.
type pkt struct {
	rtp.Packet
	buf     [1500]byte
	layer   int8
	arrival int64 // monotonic nanoseconds since epoch0
	switchL bool  // first packet of a new layer (a keyframe)
}

var epoch0 = time.Now()

// layerTimeout: a simulcast layer silent this long is gone; the recorder
// moves to the highest layer still sending (at its next keyframe, asked
// for at once). It is short because the recording freezes meanwhile
// (issue 17: a 700 ms timeout plus a 1 s keyframe throttle left 768 ms
// holes when the top layer paused), and long enough for a low layer's
// frame interval (7.5 fps = 133 ms) and some jitter.
const layerTimeout = 250 * time.Millisecond

// tickEvery is how often the writer checks layers (video); it bounds how
// late a silent layer is noticed.
const tickEvery = 50 * time.Millisecond

// switchKeyEvery throttles the recorder's keyframe requests for a layer
// switch (the receiver has its own per-layer throttle too).
const switchKeyEvery = 300 * time.Millisecond

func monoNow() int64 { return int64(time.Since(epoch0)) }

func monoTime(n int64) time.Time { return epoch0.Add(time.Duration(n)) }

// TrackRecorder records one published track into one file. It is an
// sfu.Sink: WriteRTP copies the packet into a preallocated buffer and
// queues it without ever blocking (drops are counted); a writer goroutine
// reorders packets in a jitter buffer (pion's samplebuilder), reassembles
// frames, starts on a keyframe (asking the publisher for one) and writes
// them to WebM (Opus, VP8, VP9, AV1) or Matroska (H.264). For simulcast it
// records the highest live layer and switches layers at a keyframe.
type TrackRecorder struct {
	src   sfu.Source
	ci    codecInfo
	opts  TrackOptions
	log   *slog.Logger
	codec webrtc.RTPCodecParameters

	free  chan *pkt
	queue chan *pkt
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once

	closed   atomic.Bool
	drops    atomic.Uint64
	cur      atomic.Int32 // layer whose packets are queued
	target   atomic.Int32 // layer to switch to at its next keyframe
	begun    atomic.Bool  // a keyframe was queued: until then any layer's keyframe starts the file
	lastSeen [sfu.MaxLayers]atomic.Int64
	clocks   [sfu.MaxLayers]layerClock // video: each layer's RTP clock on ours (layerclock.go)

	srMu     sync.Mutex
	srLatest [sfu.MaxLayers]*SenderReport
	srFirst  *SenderReport // first SR of the start layer after the first frame
	minOff   time.Duration // smallest arrival − NTP time over all SRs
	haveOff  bool

	resMu sync.Mutex
	res   TrackResult

	// writer goroutine state
	sb         *samplebuilder.SampleBuilder
	pushed     bool   // a packet went into sb; maxSeq/maxTS are the newest
	maxSeq     uint16 // (for the sentinel that releases the last frame)
	maxTS      uint32
	held       map[uint16]*pkt
	wLayer     int8
	haveLast   bool
	lastSeq    uint16
	needKey    bool
	lastKeyReq time.Time
	switchReq  [sfu.MaxLayers]time.Time // last keyframe request per layer for a switch
	pend       pendingFrame             // video frame held back by one (see emit)
	w          *mkvWriter
	path       string
	tsLast     uint32
	tsExt      int64 // ticks since the layer's base
	offsetMs   int64 // timeline ms at the layer's base
	lastOutMs  int64
	lastArr    int64
	arrivals   [64]struct {
		ts  uint32
		arr int64
	}
	arrN       int
	started    bool
	startTS    uint32
	loggedDrop uint64
}

// NewTrackRecorder attaches a recorder to src and asks for a keyframe. The
// file is created when the first frame that can start a file arrives.
func NewTrackRecorder(src sfu.Source, opts TrackOptions) (*TrackRecorder, error) {
	codec := src.Codec()
	ci, err := lookupCodec(sfu.CodecKindFromMime(codec.MimeType))
	if err != nil {
		return nil, fmt.Errorf("track %s: %s: %w", src.ID(), codec.MimeType, err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Name == "" {
		opts.Name = src.ID()
	}
	n := opts.QueuePackets
	if n <= 0 {
		n = 128
		if ci.video {
			n = 512
		}
	}
	t := &TrackRecorder{
		src: src, ci: ci, opts: opts, codec: codec, log: opts.Logger.With("track", src.ID()),
		free: make(chan *pkt, n), queue: make(chan *pkt, n),
		stop: make(chan struct{}), done: make(chan struct{}),
		held: map[uint16]*pkt{}, needKey: ci.video, wLayer: -1,
	}
	slab := make([]pkt, n)
	for i := range slab {
		t.free <- &slab[i]
	}
	kind := "audio"
	if ci.video {
		kind = "video"
	}
	t.res = TrackResult{TrackID: src.ID(), Kind: kind, Codec: codec.MimeType, ClockRate: ci.clock, StartLayer: -1}
	top := highestLayer(src.Layers())
	t.cur.Store(int32(top))
	t.target.Store(int32(top))
	if ci.video {
		t.lastKeyReq = time.Now() // before run starts: run owns it from then on
	}
	go t.run()
	src.AddSink(t)
	if ci.video {
		src.RequestKeyframe(top)
	}
	return t, nil
}

// DesiredLayer implements sfu.LayerWanter: a recording wants the best layer
// the publisher can send, so dynacast keeps every layer on while it runs,
// whatever size the viewers watch.
func (t *TrackRecorder) DesiredLayer() int8 { return sfu.MaxLayers - 1 }

// WriteRTP implements sfu.Sink. It runs on the receiver's goroutine: it
// copies the packet into a free buffer and queues it, or drops it.
func (t *TrackRecorder) WriteRTP(h *rtp.Header, payload []byte, layer int8) error {
	if t.closed.Load() || layer < 0 || layer >= sfu.MaxLayers {
		return nil
	}
	now := monoNow()
	t.lastSeen[layer].Store(now)
	if t.ci.video {
		t.clocks[layer].observe(h.Timestamp, now, t.ci.clock)
	}
	sw := false
	if cur := int8(t.cur.Load()); layer != cur {
		// Switch at a keyframe of: any layer before the file has begun
		// (start on the first layer that can start it, never wait for one
		// that may be silent), the target the writer chose, or a higher
		// layer (one resuming sends a keyframe: take it at once). Once the
		// file has begun, not on a layer's first packets (layerSettle):
		// they can be a burst of old ones.
		begun := t.begun.Load()
		if !(t.ci.video && (!begun || layer == int8(t.target.Load()) || layer > cur)) ||
			(begun && !t.clocks[layer].settled(now)) ||
			!sfu.IsKeyframeStart(t.ci.kind, payload) || !t.cur.CompareAndSwap(int32(cur), int32(layer)) {
			return nil
		}
		sw = true
	}
	if t.ci.video && !t.begun.Load() && sfu.IsKeyframeStart(t.ci.kind, payload) {
		t.begun.Store(true)
	}
	if len(payload) > len(pkt{}.buf) {
		t.drops.Add(1)
		return nil
	}
	var p *pkt
	select {
	case p = <-t.free:
	default:
		t.drops.Add(1)
		return nil
	}
	n := copy(p.buf[:], payload)
	p.Header = rtp.Header{Version: 2, Marker: h.Marker, PayloadType: h.PayloadType,
		SequenceNumber: h.SequenceNumber, Timestamp: h.Timestamp, SSRC: h.SSRC}
	p.Payload = p.buf[:n]
	p.layer, p.arrival, p.switchL = layer, now, sw
	select {
	case t.queue <- p:
	default: // cannot happen: the queue holds every buffer
		t.free <- p
		t.drops.Add(1)
	}
	return nil
}

// OnSenderReport implements sfu.Sink.
func (t *TrackRecorder) OnSenderReport(layer int8, ntp uint64, rtpTime uint32) {
	if layer < 0 || layer >= sfu.MaxLayers {
		return
	}
	sr := &SenderReport{NTP: ntp, RTP: rtpTime, Arrived: time.Now()}
	d := sr.Arrived.Sub(sr.Time())
	t.srMu.Lock()
	t.srLatest[layer] = sr
	if !t.haveOff || d < t.minOff {
		t.minOff, t.haveOff = d, true
	}
	t.srMu.Unlock()
}

// Close implements sfu.Sink: it stops taking packets and lets the writer
// finish the file; it does not wait (see Wait, Stop).
func (t *TrackRecorder) Close() {
	t.once.Do(func() {
		t.closed.Store(true)
		close(t.stop)
	})
}

// Stop detaches from the source, finalises the file and waits for it.
func (t *TrackRecorder) Stop() TrackResult {
	t.src.RemoveSink(t)
	t.Close()
	<-t.done
	return t.Result()
}

// Wait blocks until the file is final.
func (t *TrackRecorder) Wait() { <-t.done }

// Done is closed when the file is final.
func (t *TrackRecorder) Done() <-chan struct{} { return t.done }

// Result describes the recording so far (final after Done).
func (t *TrackRecorder) Result() TrackResult {
	t.resMu.Lock()
	r := t.res
	t.resMu.Unlock()
	r.Drops = t.drops.Load()
	t.srMu.Lock()
	if t.srFirst != nil {
		sr := *t.srFirst
		r.SR = &sr
	}
	r.SenderOffset, r.HaveSenderOffset = t.minOff, t.haveOff
	r.SRs = nil
	for _, s := range t.srLatest {
		if s != nil {
			r.SRs = append(r.SRs, *s)
		}
	}
	t.srMu.Unlock()
	return r
}

// Source is the recorded track.
func (t *TrackRecorder) Source() sfu.Source { return t.src }

// ErrStopped reports that a recording was stopped by a fault.
var ErrStopped = errors.New("recording stopped")

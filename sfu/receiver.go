package sfu

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/internal/clock"
)

// Sink consumes one published track's packets. Down tracks, recorders and
// mixers are sinks. WriteRTP is called on the receiver's read goroutine: it
// must not block and must not keep hdr or payload after returning.
type Sink interface {
	WriteRTP(hdr *rtp.Header, payload []byte, layer int8) error
	OnSenderReport(layer int8, ntp uint64, rtpTime uint32)
	Close()
}

// WithSink returns a new sink list: sinks and s. Sink lists are
// copy-on-write (the read goroutine walks a snapshot without locking), so
// a change makes a new slice and never touches the old one.
func WithSink(sinks []Sink, s Sink) []Sink {
	next := make([]Sink, len(sinks), len(sinks)+1)
	copy(next, sinks)
	return append(next, s)
}

// WithoutSink returns a new sink list: sinks without s (see WithSink).
func WithoutSink(sinks []Sink, s Sink) []Sink {
	next := make([]Sink, 0, len(sinks))
	for _, x := range sinks {
		if x != s {
			next = append(next, x)
		}
	}
	return next
}

// Source is a published track as its sinks see it.
type Source interface {
	ID() string
	Kind() webrtc.RTPCodecType
	Codec() webrtc.RTPCodecParameters
	AddSink(s Sink)
	RemoveSink(s Sink)
	RequestKeyframe(layer int8)
	// Layers reports which simulcast layers are present (bit i = layer i).
	Layers() uint8
	// LiveLayers reports the layers received within the last second.
	LiveLayers() uint8
	// PacketTime is when the packet being fanned out was read (unix nanos):
	// one clock read per packet, shared by every sink.
	PacketTime() int64
}

// MaxLayers is the number of simulcast layers: low, medium, high.
const MaxLayers = 3

// keyframeInterval throttles keyframe requests per layer: many subscribers
// asking at once become one PLI to the publisher.
const keyframeInterval = 300 * time.Millisecond

// maxPacket is the largest RTP packet read; bigger datagrams are truncated by
// the transport and dropped as malformed.
const maxPacket = 1500

// Receiver is one published track: one layer per simulcast encoding, each
// read by its own goroutine, fanned out to the current sinks.
type Receiver struct {
	id        string
	kind      webrtc.RTPCodecType
	codec     webrtc.RTPCodecParameters
	codecKind CodecKind
	writeRTCP func([]rtcp.Packet) error
	log       *slog.Logger

	sinks atomic.Pointer[[]Sink] // copy-on-write: readers never lock
	mu    sync.Mutex             // guards writers of sinks and layers
	layer [MaxLayers]*layer
	wg    sync.WaitGroup
	done  chan struct{}
	once  sync.Once

	packets atomic.Uint64
	bytes   atomic.Uint64
	muted   atomic.Bool // see SetMuted
	level   audioLevels // RFC 6464 levels since the last TakeAudioLevel (speakers.go)
	clock   *pubClock   // the publisher's clock, shared by its tracks (rtcp.go)
	clockOf any
	onFirst func() // called once when the first packet of any layer arrives
	first   atomic.Bool

	now       atomic.Int64  // read time of the latest packet, unix nanos
	live      atomic.Uint32 // bit i: layer i received a packet within layerTimeout
	bitrate   [MaxLayers]atomic.Uint64
	rates     rateMemory       // each layer's last steady rate (layerrate.go)
	onLayers  func(live uint8) // liveness or a layer's size changed; runs on the monitor goroutine
	resized   atomic.Bool      // a layer's keyframes changed size since the monitor last looked (layersize.go)
	onSinks   func()           // a sink came or went
	monitorOn bool
	// nackKick wakes the monitor to ask for packets a video layer found
	// missing just now (nack.go); nil for audio.
	nackKick chan struct{}
	keySent  atomic.Pointer[func(layer int8, at int64)] // OnKeyframeRequestSent
}

// layerTimeout is how long a layer may be silent before it counts as gone
// (the publisher stopped sending it, or its bandwidth collapsed).
const layerTimeout = time.Second

// monitorInterval is how often layer liveness and bitrates are refreshed.
const monitorInterval = 200 * time.Millisecond

// OnLayersChanged sets a callback run when the set of live layers changes,
// or the picture size of a layer (LayerSize).
// Set it before the first AddLayer.
func (r *Receiver) OnLayersChanged(f func(live uint8)) { r.onLayers = f }

// OnSinksChanged sets a callback run after a sink is added or removed
// (outside the receiver's lock): what the sinks want (LayerWanter) may have
// changed. Set it before the first AddSink.
func (r *Receiver) OnSinksChanged(f func()) { r.onSinks = f }

// LiveLayers reports the layers that sent within the last second (bit i = layer i).
func (r *Receiver) LiveLayers() uint8 { return uint8(r.live.Load()) }

// Bitrate is a layer's receive rate in bits per second, averaged over about a second.
func (r *Receiver) Bitrate(layer int8) uint64 {
	if layer < 0 || layer >= MaxLayers {
		return 0
	}
	return r.bitrate[layer].Load()
}

// monitor refreshes liveness and bitrates, and asks for missing video
// packets (on its tick, and at once when a layer finds a new gap), until
// the receiver closes.
func (r *Receiver) monitor() {
	defer r.wg.Done()
	t := time.NewTicker(monitorInterval)
	defer t.Stop()
	var nackTick <-chan time.Time
	if r.kind == webrtc.RTPCodecTypeVideo {
		nt := time.NewTicker(nackInterval)
		defer nt.Stop()
		nackTick = nt.C
	}
	var lastBytes [MaxLayers]uint64
	for {
		select {
		case <-r.done:
			return
		case <-nackTick:
		case <-r.nackKick:
		case <-t.C:
			r.refresh(&lastBytes)
			continue
		}
		r.mu.Lock()
		layers := r.layer
		r.mu.Unlock()
		r.sendNACKs(layers) // nack.go
	}
}

// refresh updates layer liveness and bitrates (every monitorInterval).
func (r *Receiver) refresh(lastBytes *[MaxLayers]uint64) {
	now := clock.Nanos()
	r.mu.Lock()
	layers := r.layer
	r.mu.Unlock()
	var live uint8
	for i, l := range layers {
		if l == nil {
			continue
		}
		if seen := l.lastSeen.Load(); seen != 0 && now-seen < int64(layerTimeout) {
			live |= 1 << i
		}
		b := l.bytes.Load()
		rate := (b - lastBytes[i]) * 8 * uint64(time.Second/monitorInterval)
		lastBytes[i] = b
		// Smooth over ~1 s so one big keyframe does not look like a jump.
		old := r.bitrate[i].Load()
		r.bitrate[i].Store((old*4 + rate) / 5)
		r.rates.note(i, rate > 0, (old*4+rate)/5, now)
	}
	resized := r.resized.Swap(false)
	if prev := uint8(r.live.Swap(uint32(live))); (prev != live || resized) && r.onLayers != nil {
		r.onLayers(live)
	}
}

type layer struct {
	idx      int8
	track    *webrtc.TrackRemote
	recv     *webrtc.RTPReceiver
	ssrc     uint32
	lastPLI  atomic.Int64 // unix nanos of the last keyframe request sent
	lastSeen atomic.Int64 // unix nanos of the last packet read
	bytes    atomic.Uint64
	levelID  uint8        // negotiated id of the RFC 6464 audio level extension; 0 = none
	size     layerSize    // video: the size its keyframes carry
	cache    *packetCache // video: recent payloads, for subscribers' NACKs
	nack     *nackState   // video: packets to ask the publisher for (nack.go)
	// wakePending: a repair interrupted Read and the loop has not yet
	// cleared the deadline (repairwake.go).
	wakePending atomic.Bool
}

// NewReceiver makes a receiver for a track; writeRTCP sends RTCP to its publisher.
func NewReceiver(id string, codec webrtc.RTPCodecParameters, kind webrtc.RTPCodecType,
	writeRTCP func([]rtcp.Packet) error, log *slog.Logger,
) *Receiver {
	r := &Receiver{
		id: id, kind: kind, codec: codec, codecKind: CodecKindFromMime(codec.MimeType),
		writeRTCP: writeRTCP, log: log, done: make(chan struct{}),
	}
	if kind == webrtc.RTPCodecTypeVideo {
		r.nackKick = make(chan struct{}, 1)
	}
	empty := []Sink{}
	r.sinks.Store(&empty)
	return r
}

// OnFirstPacket sets a callback run once, on the first packet received.
func (r *Receiver) OnFirstPacket(f func()) { r.onFirst = f }

// ID is the server's track id.
func (r *Receiver) ID() string { return r.id }

// Kind is audio or video.
func (r *Receiver) Kind() webrtc.RTPCodecType { return r.kind }

// Codec is the codec the publisher sends.
func (r *Receiver) Codec() webrtc.RTPCodecParameters { return r.codec }

// Stats returns packets and bytes received over all layers.
func (r *Receiver) Stats() (packets, bytes uint64) { return r.packets.Load(), r.bytes.Load() }

// Layers reports which layers have a remote track (bit i = layer i).
func (r *Receiver) Layers() uint8 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var m uint8
	for i, l := range r.layer {
		if l != nil {
			m |= 1 << i
		}
	}
	return m
}

// AddLayer starts reading one encoding of the track.
func (r *Receiver) AddLayer(idx int8, track *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
	if idx < 0 || idx >= MaxLayers {
		idx = 0
	}
	l := &layer{idx: idx, track: track, recv: recv, ssrc: uint32(track.SSRC())}
	if r.kind == webrtc.RTPCodecTypeVideo {
		l.cache = newPacketCache()
		l.nack = newNackState()
		l.nack.kick = r.nackKick
	}
	if r.kind == webrtc.RTPCodecTypeAudio && recv != nil {
		l.levelID = audioLevelID(recv.GetParameters().HeaderExtensions)
	}
	r.mu.Lock()
	select {
	case <-r.done:
		r.mu.Unlock()
		return
	default:
	}
	if r.layer[idx] != nil {
		r.log.Warn("duplicate simulcast layer ignored", "track", r.id, "layer", idx, "rid", track.RID())
		r.mu.Unlock()
		return
	}
	r.layer[idx] = l
	r.attachClock(recv) // rtcp.go
	r.wg.Add(2)
	if !r.monitorOn {
		r.monitorOn = true
		r.wg.Add(1)
		go r.monitor()
	}
	r.mu.Unlock()
	if l.cache != nil {
		registerReader(l) // retransmissions wake its Read (repairwake.go)
	}
	go r.readRTP(l)
	go r.readRTCP(l)
}

// AddSink starts forwarding to s.
func (r *Receiver) AddSink(s Sink) {
	r.mu.Lock()
	next := WithSink(*r.sinks.Load(), s)
	r.sinks.Store(&next)
	r.mu.Unlock()
	if r.onSinks != nil {
		r.onSinks()
	}
}

// WantsChanged tells the receiver that what a sink wants (LayerWanter)
// changed while it stayed (a relay export whose edge wants other layers):
// the OnSinksChanged callback runs, as when a sink comes or goes.
func (r *Receiver) WantsChanged() {
	if r.onSinks != nil {
		r.onSinks()
	}
}

// PacketTime is when the latest packet was read (unix nanos).
func (r *Receiver) PacketTime() int64 { return r.now.Load() }

// Sinks returns the current sinks (a snapshot; do not modify).
func (r *Receiver) Sinks() []Sink { return *r.sinks.Load() }

// RemoveSink stops forwarding to s; it does not close s.
func (r *Receiver) RemoveSink(s Sink) {
	r.mu.Lock()
	next := WithoutSink(*r.sinks.Load(), s)
	r.sinks.Store(&next)
	r.mu.Unlock()
	if r.onSinks != nil {
		r.onSinks()
	}
}

// RequestKeyframe asks the publisher for a keyframe on a layer, at most once
// per keyframeInterval; layer < 0 means every layer.
func (r *Receiver) RequestKeyframe(idx int8) {
	if r.kind != webrtc.RTPCodecTypeVideo {
		return
	}
	r.mu.Lock()
	layers := r.layer
	r.mu.Unlock()
	now := clock.Nanos()
	for i, l := range layers {
		if l == nil || (idx >= 0 && int8(i) != idx) {
			continue
		}
		last := l.lastPLI.Load()
		if now-last < int64(keyframeInterval) || !l.lastPLI.CompareAndSwap(last, now) {
			continue
		}
		counters.plisSent.Add(1)
		if f := r.keySent.Load(); f != nil {
			(*f)(int8(i), now)
		}
		err := r.writeRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: l.ssrc}})
		if err != nil {
			r.log.Debug("keyframe request failed", "track", r.id, "err", err)
		}
	}
}

// readRTP is the hot path: read into one buffer, parse, fan out. No
// allocation per packet; sinks copy what they keep.
func (r *Receiver) readRTP(l *layer) {
	defer r.wg.Done()
	if l.cache != nil {
		defer unregisterReader(l)
	}
	buf := make([]byte, maxPacket)
	hdr := &rtp.Header{}
	for {
		n, _, err := l.track.Read(buf)
		if err != nil {
			if l.woken(err) {
				continue // a retransmission is queued: Read returns it first
			}
			return
		}
		hl, err := hdr.Unmarshal(buf[:n])
		if err != nil {
			continue // garbage from the network never reaches a sink
		}
		if l.nack != nil {
			l.nack.received(hdr.SequenceNumber) // media or repair alike
		}
		end := n
		if hdr.Padding {
			pad := int(buf[n-1])
			if pad == 0 || hl+pad > n {
				continue
			}
			end -= pad
			hdr.Padding = false
		}
		now := clock.Nanos()
		r.now.Store(now)
		l.lastSeen.Store(now)
		l.bytes.Add(uint64(n))
		r.packets.Add(1)
		r.bytes.Add(uint64(n))
		if !r.first.Load() && r.first.CompareAndSwap(false, true) && r.onFirst != nil {
			r.onFirst()
		}
		if hl == end {
			continue // padding only: bandwidth probes carry nothing to forward
		}
		if l.levelID != 0 {
			r.level.add(hdr.GetExtension(l.levelID))
		}
		if l.cache != nil && l.size.observe(r.codecKind, buf[hl:end]) {
			r.resized.Store(true)
		}
		r.forward(l, hdr, buf[hl:end])
	}
}

// forward keeps a video payload for retransmissions and fans it out.
func (r *Receiver) forward(l *layer, hdr *rtp.Header, payload []byte) {
	if l.cache != nil {
		l.cache.put(hdr.SequenceNumber, hdr.Timestamp, hdr.Marker, payload)
	}
	r.fanOut(hdr, payload, l.idx)
}

func (r *Receiver) fanOut(hdr *rtp.Header, payload []byte, idx int8) {
	muted := r.muted.Load()
	for _, s := range *r.sinks.Load() {
		if muted {
			if _, down := s.(*DownTrack); down {
				continue
			}
		}
		_ = s.WriteRTP(hdr, payload, idx)
	}
}

// SetMuted says whether the publisher muted the track. A muted track's
// packets (a browser sends silence, or black frames, for a disabled track)
// still reach other sinks (recorders) but not down tracks, which the room
// pauses as well: the room need not touch every subscriber's down track
// per packet, which for a muted speaker in a large audio room was most of
// the fan-out's cost.
func (r *Receiver) SetMuted(muted bool) { r.muted.Store(muted) }

// CachedPayload copies a recently received payload of a layer into dst.
func (r *Receiver) CachedPayload(idx int8, seq uint16, dst []byte) (int, bool) {
	if idx < 0 || idx >= MaxLayers {
		return 0, false
	}
	r.mu.Lock()
	l := r.layer[idx]
	r.mu.Unlock()
	if l == nil || l.cache == nil {
		return 0, false
	}
	return l.cache.get(seq, dst)
}

// readRTCP drains the publisher's RTCP for a layer (the interceptors need it
// read) and passes sender reports to the sinks for lip sync.
func (r *Receiver) readRTCP(l *layer) {
	defer r.wg.Done()
	for {
		var pkts []rtcp.Packet
		var err error
		if rid := l.track.RID(); rid != "" {
			pkts, _, err = l.recv.ReadSimulcastRTCP(rid)
		} else {
			pkts, _, err = l.recv.ReadRTCP()
		}
		if err != nil {
			return
		}
		for _, p := range pkts {
			if sr, ok := p.(*rtcp.SenderReport); ok && sr.SSRC == l.ssrc {
				r.observeSR(sr.NTPTime, clock.Nanos())
				for _, s := range *r.sinks.Load() {
					s.OnSenderReport(l.idx, sr.NTPTime, sr.RTPTime)
				}
			}
		}
	}
}

// Close stops forwarding, closes every sink and waits for the read
// goroutines, which end when the publisher's transceiver stops.
func (r *Receiver) Close() {
	r.once.Do(func() {
		r.mu.Lock()
		close(r.done)
		sinks := *r.sinks.Load()
		empty := []Sink{}
		r.sinks.Store(&empty)
		r.mu.Unlock()
		for _, s := range sinks {
			s.Close()
		}
		r.releaseClock()
	})
}

// Wait blocks until the read goroutines have exited.
func (r *Receiver) Wait() { r.wg.Wait() }

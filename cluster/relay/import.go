package relay

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/internal/clock"
	"github.com/starling-rtc/starling/sfu"
)

// Import is a track relayed from its origin node, as an edge node's
// sfu.Source: down tracks, the allocator and the recorder consume it like a
// local publisher's track. Its packets are fanned out on the transport's
// read goroutine (sinks must not block, as for a local receiver).
type Import struct {
	t     *Transport
	p     *peer
	base  uint32
	id    string
	kind  webrtc.RTPCodecType
	codec webrtc.RTPCodecParameters
	video bool

	sinks  atomic.Pointer[[]sfu.Sink] // copy-on-write
	mu     sync.Mutex                 // guards writers of sinks
	layer  [maxLayers]importLayer
	now    atomic.Int64 // read time of the packet being fanned out
	muted  atomic.Bool
	closed atomic.Bool
	once   sync.Once

	// What the origin last said (status reports), and what is seen here.
	present    atomic.Uint32
	originLive atomic.Uint32
	originSent atomic.Uint32
	statusAt   atomic.Int64
	live       atomic.Uint32
	onLayers   atomic.Pointer[func(live uint8)]
	packets    atomic.Uint64
	bytes      atomic.Uint64
	level      sfu.AudioLevels // the publisher's audio levels, as relayed

	// Publisher clock offset at the origin (lip sync), from clock reports.
	pubOffset atomic.Int64
	havePub   atomic.Bool

	// Loss detection: guarded by nackMu (read loop and timer).
	nackMu      sync.Mutex
	nack        [maxLayers]nackLayer
	pending     atomic.Int32 // missing packets being asked for, all layers
	rxScratch   [missSlots]uint16
	tickScratch [missSlots]uint16

	// Timer goroutine only.
	lastBytes [maxLayers]uint64
	// The layer wish, sent by the timer and at once when a sink comes.
	wishMu   sync.Mutex
	wish     uint8
	wishAt   int64
	hadSinks bool
}

type importLayer struct {
	lastSeen atomic.Int64
	bytes    atomic.Uint64
	bitrate  atomic.Uint64
	lastPLI  atomic.Int64
	cache    atomic.Pointer[sfu.PacketCache] // video, at the layer's first packet
}

const (
	// layerTimeout is how long a layer may be silent here before it no
	// longer counts as received.
	layerTimeout = time.Second
	// pliInterval coalesces the edge's keyframe requests per layer.
	pliInterval = 300 * time.Millisecond
)

// Import receives the stream peerNode exports under ssrcBase as a track
// with this server id, kind and codec; layers are the simulcast layers the
// track has (bit i = layer i; audio: 1).
func (t *Transport) Import(peerNode string, ssrcBase uint32, id string, kind webrtc.RTPCodecType,
	codec webrtc.RTPCodecParameters, layers uint8,
) (*Import, error) {
	if t.isClosed() {
		return nil, ErrClosed
	}
	if ssrcBase < 4 || ssrcBase&3 != 0 {
		return nil, fmt.Errorf("relay: bad SSRC base %d", ssrcBase)
	}
	if kind != webrtc.RTPCodecTypeAudio && kind != webrtc.RTPCodecTypeVideo {
		return nil, errors.New("relay: track kind must be audio or video")
	}
	p := t.peer(peerNode)
	if p == nil {
		return nil, ErrUnknownPeer
	}
	i := &Import{t: t, p: p, base: ssrcBase, id: id, kind: kind, codec: codec, video: kind == webrtc.RTPCodecTypeVideo}
	if !i.video || layers == 0 {
		layers = 1
	}
	i.present.Store(uint32(layers & (1<<maxLayers - 1)))
	empty := []sfu.Sink{}
	i.sinks.Store(&empty)
	p.mu.Lock()
	old := *p.imports.Load()
	if old[ssrcBase] != nil {
		p.mu.Unlock()
		return nil, fmt.Errorf("relay: SSRC base %d from %s is already imported", ssrcBase, peerNode)
	}
	next := make(map[uint32]*Import, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[ssrcBase] = i
	p.imports.Store(&next)
	p.mu.Unlock()
	t.addImport(i)
	return i, nil
}

// ID is the track's server id.
func (i *Import) ID() string { return i.id }

// Kind is audio or video.
func (i *Import) Kind() webrtc.RTPCodecType { return i.kind }

// Codec is the publisher's codec.
func (i *Import) Codec() webrtc.RTPCodecParameters { return i.codec }

// SSRCBase is the stream's SSRC base, as the origin's Export named it.
func (i *Import) SSRCBase() uint32 { return i.base }

// Layers reports the layers the track has at the origin (bit i = layer i).
func (i *Import) Layers() uint8 { return uint8(i.present.Load()) }

// LiveLayers reports the layers received here within the last second, and
// those the origin reports live (so a subscriber can target a layer the
// edge does not receive yet: its wish then turns it on).
func (i *Import) LiveLayers() uint8 { return uint8(i.live.Load()) }

// PacketTime is when the packet being fanned out was read (unix nanos).
func (i *Import) PacketTime() int64 { return i.now.Load() }

// Bitrate is a layer's receive rate here, bits per second (~1 s average).
func (i *Import) Bitrate(layer int8) uint64 {
	if layer < 0 || layer >= maxLayers {
		return 0
	}
	return i.layer[layer].bitrate.Load()
}

// TakeAudioLevel returns the publisher's average audio level (-dBov) since
// the last call and how many packets carried one, as
// sfu.Receiver.TakeAudioLevel does: the edge's speaker detection works on
// relayed tracks.
func (i *Import) TakeAudioLevel() (db float64, packets uint32) { return i.level.Take() }

// Stats returns the media packets and bytes received.
func (i *Import) Stats() (packets, bytes uint64) { return i.packets.Load(), i.bytes.Load() }

// OnLayersChanged sets a callback run (on the transport's timer) when the
// live layers change.
func (i *Import) OnLayersChanged(f func(live uint8)) { i.onLayers.Store(&f) }

// SetMuted mirrors the origin's mute: down tracks get nothing while muted,
// other sinks (recorders) still do, as with a local receiver.
func (i *Import) SetMuted(m bool) { i.muted.Store(m) }

// AddSink starts forwarding to s. The origin hears at once if s needs
// layers that do not cross yet.
func (i *Import) AddSink(s sfu.Sink) {
	i.mu.Lock()
	next := sfu.WithSink(*i.sinks.Load(), s)
	i.sinks.Store(&next)
	i.mu.Unlock()
	i.sendWish(clock.Nanos())
}

// RemoveSink stops forwarding to s; it does not close s.
func (i *Import) RemoveSink(s sfu.Sink) {
	i.mu.Lock()
	defer i.mu.Unlock()
	next := sfu.WithoutSink(*i.sinks.Load(), s)
	i.sinks.Store(&next)
}

// Sinks returns the current sinks (a snapshot; do not modify).
func (i *Import) Sinks() []sfu.Sink { return *i.sinks.Load() }

// RequestKeyframe asks the origin for a keyframe on a layer (layer < 0:
// every layer), at most once per layer per pliInterval however many
// subscribers ask; the origin's source throttles again.
func (i *Import) RequestKeyframe(layer int8) {
	if !i.video || i.closed.Load() {
		return
	}
	now := clock.Nanos()
	var pkts []rtcp.Packet
	for l := int8(0); l < maxLayers; l++ {
		if layer >= 0 && l != layer {
			continue
		}
		if layer < 0 && i.present.Load()&(1<<l) == 0 {
			continue
		}
		il := &i.layer[l]
		last := il.lastPLI.Load()
		if now-last < int64(pliInterval) || !il.lastPLI.CompareAndSwap(last, now) {
			continue
		}
		pkts = append(pkts, &rtcp.PictureLossIndication{SenderSSRC: controlSSRC, MediaSSRC: i.base + uint32(l)})
	}
	if len(pkts) > 0 {
		i.t.stats.plisOut.Add(uint64(len(pkts)))
		i.p.sendRTCP(pkts...)
	}
}

// CachedPayload copies a recently received payload into dst, for the
// edge's down tracks' NACK answers (sfu.PayloadCache).
func (i *Import) CachedPayload(layer int8, seq uint16, dst []byte) (int, bool) {
	if layer < 0 || layer >= maxLayers {
		return 0, false
	}
	c := i.layer[layer].cache.Load()
	if c == nil {
		return 0, false
	}
	return c.Get(seq, dst)
}

// CachedPacket is CachedPayload with the packet's timestamp and marker
// (sfu.PacketReplayer): a down track starting on a keyframe whose first
// packet came late replays the packets received after it.
func (i *Import) CachedPacket(layer int8, seq uint16, dst []byte) (n int, ts uint32, marker, ok bool) {
	if layer < 0 || layer >= maxLayers {
		return 0, 0, false, false
	}
	c := i.layer[layer].cache.Load()
	if c == nil {
		return 0, 0, false, false
	}
	return c.GetPacket(seq, dst)
}

// NewestCached returns the newest sequence number received on a layer
// (sfu.PacketReplayer): how far a down track starting on a late keyframe
// replays.
func (i *Import) NewestCached(layer int8) (uint16, bool) {
	if layer < 0 || layer >= maxLayers {
		return 0, false
	}
	c := i.layer[layer].cache.Load()
	if c == nil {
		return 0, false
	}
	return c.Newest()
}

// PublisherClockOffset is this node's clock minus the publisher's NTP
// clock (sfu.ClockSource): the origin's offset for the publisher plus the
// relay's (this node's clock minus the origin's, plus the shortest delay),
// the same for all of one publisher's tracks, so their sender reports keep
// audio and video in sync here as at the origin.
func (i *Import) PublisherClockOffset() (int64, bool) {
	if !i.havePub.Load() {
		return 0, false
	}
	relay, ok := i.p.clockOffset()
	if !ok {
		return 0, false
	}
	return i.pubOffset.Load() + relay, true
}

// receive handles one decrypted media packet on the read loop.
func (i *Import) receive(layer int8, hdr *rtp.Header, payload []byte) {
	if i.closed.Load() {
		return
	}
	now := clock.Nanos()
	i.now.Store(now)
	l := &i.layer[layer]
	l.lastSeen.Store(now)
	l.bytes.Add(uint64(len(payload)))
	i.packets.Add(1)
	i.bytes.Add(uint64(len(payload)))
	if p := i.present.Load(); p&(1<<layer) == 0 {
		i.present.CompareAndSwap(p, p|1<<layer)
	}
	resume := false
	if hdr.Extension {
		resume = hdr.GetExtension(resumeExtID) != nil
		i.level.Add(hdr.GetExtension(levelExtID))
		hdr.Extension, hdr.Extensions = false, hdr.Extensions[:0] // the relay's own, not the sinks'
	}
	i.detectLoss(layer, hdr.SequenceNumber, resume, now)
	if i.video {
		c := l.cache.Load()
		if c == nil {
			c = sfu.NewPacketCache()
			l.cache.Store(c)
		}
		c.Put(hdr.SequenceNumber, hdr.Timestamp, hdr.Marker, payload)
	}
	muted := i.muted.Load()
	for _, s := range *i.sinks.Load() {
		if muted {
			if _, down := s.(*sfu.DownTrack); down {
				continue
			}
		}
		_ = s.WriteRTP(hdr, payload, layer)
	}
}

// onStatus applies the origin's layer status.
func (i *Import) onStatus(present, live, sent uint8) {
	if i.video && present != 0 {
		i.present.Store(uint32(present & (1<<maxLayers - 1)))
	}
	i.originLive.Store(uint32(live))
	i.originSent.Store(uint32(sent))
	i.statusAt.Store(clock.Nanos())
}

// onSenderReport passes the publisher's report to the sinks, and takes
// the clock report that follows it.
func (i *Import) onSenderReport(sr *rtcp.SenderReport, clock *rtcp.ApplicationDefined, arrival int64) {
	_, layer := splitSSRC(sr.SSRC)
	if layer >= maxLayers || i.closed.Load() {
		return
	}
	if clock != nil && len(clock.Data) >= 20 {
		i.p.observeClock(arrival - int64(binary.BigEndian.Uint64(clock.Data[0:])))
		if clock.Data[16] == 1 {
			i.pubOffset.Store(int64(binary.BigEndian.Uint64(clock.Data[8:])))
			i.havePub.Store(true)
		}
	}
	for _, s := range *i.sinks.Load() {
		s.OnSenderReport(layer, sr.NTPTime, sr.RTPTime)
	}
}

// monitor refreshes liveness and bitrates and sends the layer wish.
// Runs on the timer every monitorEvery.
func (i *Import) monitor(now int64) {
	if i.closed.Load() {
		return
	}
	var recv uint8
	for l := range i.layer {
		il := &i.layer[l]
		if seen := il.lastSeen.Load(); seen != 0 && now-seen < int64(layerTimeout) {
			recv |= 1 << l
		}
		b := il.bytes.Load()
		rate := (b - i.lastBytes[l]) * 8 * uint64(time.Second/monitorEvery)
		i.lastBytes[l] = b
		il.bitrate.Store((il.bitrate.Load()*4 + rate) / 5)
	}
	live := recv
	if at := i.statusAt.Load(); at != 0 && now-at < int64(statusTimeout) {
		live |= uint8(i.originLive.Load())
	}
	if prev := uint8(i.live.Swap(uint32(live))); prev != live {
		if f := i.onLayers.Load(); f != nil {
			(*f)(live)
		}
	}
	i.sendWish(now)
}

// wanted is the layers the sinks want, as the origin's dynacast computes
// it: every layer up to the highest wanted. A sink that does not say (a
// recorder) wants every layer. Call with wishMu held. Before the first sink there is no wish (the
// control plane's choice stands); after the last one left, nothing is
// wanted until the import closes or a sink comes back.
func (i *Import) wanted() (uint8, bool) {
	sinks := *i.sinks.Load()
	if len(sinks) == 0 {
		return 0, i.hadSinks
	}
	i.hadSinks = true
	top := int8(-1)
	for _, s := range sinks {
		w, ok := s.(sfu.LayerWanter)
		if !ok {
			return 1<<maxLayers - 1, true
		}
		top = max(top, min(w.DesiredLayer(), maxLayers-1))
	}
	return uint8(1)<<(top+1) - 1, true
}

// sendWish tells the origin the layers wanted, when they changed and
// every wishRefresh (a wish may be lost). Audio has one layer: no wishes.
func (i *Import) sendWish(now int64) {
	if !i.video || i.closed.Load() {
		return
	}
	i.wishMu.Lock()
	w, ok := i.wanted()
	if !ok || (w == i.wish && now-i.wishAt < int64(wishRefresh)) {
		i.wishMu.Unlock()
		return
	}
	i.wish, i.wishAt = w, now
	i.wishMu.Unlock()
	i.p.sendRTCP(&rtcp.ApplicationDefined{SubType: appWish, SSRC: i.base, Name: appName, Data: []byte{w, 0, 0, 0}})
}

// Close ends the import: it leaves the transport and closes its sinks, as
// a local receiver does when its publisher leaves.
func (i *Import) Close() {
	i.once.Do(func() {
		i.closed.Store(true)
		p := i.p
		p.mu.Lock()
		old := *p.imports.Load()
		if old[i.base] == i {
			next := make(map[uint32]*Import, len(old))
			for k, v := range old {
				if v != i {
					next[k] = v
				}
			}
			p.imports.Store(&next)
		}
		p.mu.Unlock()
		i.t.removeImport(i)
		i.mu.Lock()
		sinks := *i.sinks.Load()
		empty := []sfu.Sink{}
		i.sinks.Store(&empty)
		i.mu.Unlock()
		for _, s := range sinks {
			s.Close()
		}
	})
}

// Compile-time checks: an Import is everything a local receiver is to its
// consumers; an Export is a sink that tells dynacast what it wants.
var (
	_ sfu.Source         = (*Import)(nil)
	_ sfu.PayloadCache   = (*Import)(nil)
	_ sfu.PacketReplayer = (*Import)(nil)
	_ sfu.ClockSource    = (*Import)(nil)
	_ sfu.Sink           = (*Export)(nil)
	_ sfu.LayerWanter    = (*Export)(nil)
)

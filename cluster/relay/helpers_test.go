package relay

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/sfu"
)

var testSecret = []byte("a cluster secret for the relay tests")

// fakeSource is a published track the test drives: emit calls its sinks as
// a receiver's read goroutine would.
type fakeSource struct {
	kind   webrtc.RTPCodecType
	layers uint8
	mu     sync.Mutex
	sinks  []sfu.Sink
	now    atomic.Int64
	live   atomic.Uint32
	kf     chan int8 // RequestKeyframe calls
}

func newFakeSource(kind webrtc.RTPCodecType, layers uint8) *fakeSource {
	f := &fakeSource{kind: kind, layers: layers, kf: make(chan int8, 64)}
	f.live.Store(uint32(layers))
	return f
}

func (f *fakeSource) ID() string                { return "TR_fake" }
func (f *fakeSource) Kind() webrtc.RTPCodecType { return f.kind }
func (f *fakeSource) Codec() webrtc.RTPCodecParameters {
	return webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, PayloadType: 96}
}
func (f *fakeSource) AddSink(s sfu.Sink) { f.mu.Lock(); f.sinks = append(f.sinks, s); f.mu.Unlock() }
func (f *fakeSource) RemoveSink(s sfu.Sink) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sinks = sfu.WithoutSink(f.sinks, s)
}
func (f *fakeSource) RequestKeyframe(layer int8) {
	select {
	case f.kf <- layer:
	default:
	}
}
func (f *fakeSource) Layers() uint8     { return f.layers }
func (f *fakeSource) LiveLayers() uint8 { return uint8(f.live.Load()) }
func (f *fakeSource) PacketTime() int64 { return f.now.Load() }
func (f *fakeSource) sinkCount() int    { f.mu.Lock(); defer f.mu.Unlock(); return len(f.sinks) }
func (f *fakeSource) snapshot() []sfu.Sink {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]sfu.Sink(nil), f.sinks...)
}

func (f *fakeSource) emit(layer int8, seq uint16, ts uint32, marker bool, payload []byte) {
	f.now.Store(time.Now().UnixNano())
	h := &rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: ts, Marker: marker, SSRC: 0xdead0000 + uint32(layer)}
	for _, s := range f.snapshot() {
		_ = s.WriteRTP(h, payload, layer)
	}
}

func (f *fakeSource) senderReport(layer int8, ntp uint64, ts uint32) {
	for _, s := range f.snapshot() {
		s.OnSenderReport(layer, ntp, ts)
	}
}

type gotPacket struct {
	layer   int8
	seq     uint16
	ts      uint32
	marker  bool
	payload []byte
}

type gotSR struct {
	layer int8
	ntp   uint64
	ts    uint32
}

// recSink records what reaches it.
type recSink struct {
	pkts   chan gotPacket
	srs    chan gotSR
	closed chan struct{}
	once   sync.Once
	want   int8 // DesiredLayer, when used as a LayerWanter
}

func newRecSink() *recSink {
	return &recSink{pkts: make(chan gotPacket, 100000), srs: make(chan gotSR, 100), closed: make(chan struct{}), want: 2}
}

func (r *recSink) WriteRTP(h *rtp.Header, payload []byte, layer int8) error {
	r.pkts <- gotPacket{layer: layer, seq: h.SequenceNumber, ts: h.Timestamp, marker: h.Marker, payload: append([]byte(nil), payload...)}
	return nil
}
func (r *recSink) OnSenderReport(layer int8, ntp uint64, ts uint32) {
	r.srs <- gotSR{layer, ntp, ts}
}
func (r *recSink) Close() { r.once.Do(func() { close(r.closed) }) }

// wanterSink is a recSink that says which layer it wants (like a down track).
type wanterSink struct {
	*recSink
	desired atomic.Int32
}

func (w *wanterSink) DesiredLayer() int8 { return int8(w.desired.Load()) }

// exportImport relays src from origin (node-a) to edge (node-b): exported
// with layers, imported as trackID with all of src's layers.
func exportImport(t testing.TB, origin, edge *Transport, src sfu.Source, layers uint8, trackID string) (*Export, *Import) {
	t.Helper()
	exp, err := origin.Export("node-b", src, layers)
	if err != nil {
		t.Fatal(err)
	}
	imp, err := edge.Import("node-a", exp.SSRCBase(), trackID, src.Kind(), src.Codec(), src.Layers())
	if err != nil {
		t.Fatal(err)
	}
	return exp, imp
}

// recording adds a recSink to imp.
func recording(imp *Import) *recSink {
	sink := newRecSink()
	imp.AddSink(sink)
	return sink
}

// listen is a transport on loopback, closed when the test ends.
func listen(t testing.TB, nodeID string, secret []byte) *Transport {
	t.Helper()
	tr, err := Listen("127.0.0.1:0", nodeID, secret)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

// introduce makes origin (node-a) and edge (node-b) peers of each other.
func introduce(t testing.TB, origin, edge *Transport) {
	t.Helper()
	if err := origin.AddPeer("node-b", edge.Addr()); err != nil {
		t.Fatal(err)
	}
	if err := edge.AddPeer("node-a", origin.Addr()); err != nil {
		t.Fatal(err)
	}
}

// pair is two transports on loopback that know each other.
func pair(t testing.TB) (origin, edge *Transport) {
	t.Helper()
	origin, edge = listen(t, "node-a", testSecret), listen(t, "node-b", testSecret)
	introduce(t, origin, edge)
	return origin, edge
}

func recv(t testing.TB, ch chan gotPacket, timeout time.Duration) gotPacket {
	t.Helper()
	select {
	case p := <-ch:
		return p
	case <-time.After(timeout):
		t.Fatal("timed out waiting for a relayed packet")
		return gotPacket{}
	}
}

// proxy sits between two transports and may drop or alter datagrams: the
// origin sends to its a side, the edge to its b side.
type proxy struct {
	a, b     *net.UDPConn
	origin   netip.AddrPort
	edge     netip.AddrPort
	fromA    func(pkt []byte) bool // false: drop a datagram from the origin
	wg       sync.WaitGroup
	dropped  atomic.Int64
	forwards atomic.Int64
}

// newProxy wires origin (node-a) and edge (node-b) through a proxy.
func newProxy(t testing.TB, fromOrigin func(pkt []byte) bool) (origin, edge *Transport, px *proxy) {
	t.Helper()
	origin, edge = listen(t, "node-a", testSecret), listen(t, "node-b", testSecret)
	var err error
	px = &proxy{fromA: fromOrigin, origin: netip.MustParseAddrPort(origin.Addr()), edge: netip.MustParseAddrPort(edge.Addr())}
	if px.a, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
		t.Fatal(err)
	}
	if px.b, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
		t.Fatal(err)
	}
	px.wg.Add(2)
	go px.pump(px.a, px.b, px.edge, px.fromA)
	go px.pump(px.b, px.a, px.origin, nil)
	t.Cleanup(func() {
		origin.Close()
		edge.Close()
		px.a.Close()
		px.b.Close()
		px.wg.Wait()
	})
	if err := origin.AddPeer("node-b", px.a.LocalAddr().String()); err != nil {
		t.Fatal(err)
	}
	if err := edge.AddPeer("node-a", px.b.LocalAddr().String()); err != nil {
		t.Fatal(err)
	}
	return origin, edge, px
}

func (px *proxy) pump(in, out *net.UDPConn, to netip.AddrPort, pass func([]byte) bool) {
	defer px.wg.Done()
	buf := make([]byte, 2048)
	for {
		n, _, err := in.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		if pass != nil && !pass(buf[:n]) {
			px.dropped.Add(1)
			continue
		}
		px.forwards.Add(1)
		_, _ = out.WriteToUDPAddrPort(buf[:n], to)
	}
}

// mediaSeq reads a relay media datagram's sequence number (the RTP header
// is not encrypted); ok=false for RTCP.
func mediaSeq(pkt []byte) (ssrc uint32, seq uint16, ok bool) {
	if len(pkt) < prefixLen+rtpHeaderLen || pkt[1] != kindRTP {
		return 0, 0, false
	}
	return binary.BigEndian.Uint32(pkt[prefixLen+8:]), binary.BigEndian.Uint16(pkt[prefixLen+2:]), true
}

// eventually waits for cond with a generous deadline (the machine is busy).
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

package relay

import (
	"encoding/binary"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/starling-rtc/starling/internal/clock"
)

// peer is another node: where it is, the keys both ways, and the tracks
// exported to and imported from it.
type peer struct {
	t    *Transport
	id   string
	addr atomic.Pointer[netip.AddrPort]
	out  sendKeys // what this node sends to the peer with

	// RTCP to the peer: one context, RTCP is rare, a lock is fine.
	rtcpMu  sync.Mutex
	rtcpOut *srtp.Context
	rtcpBuf []byte

	// Receiving, only on the read loop: the peer's current epoch and the
	// contexts it selects. A datagram under another epoch (the peer
	// restarted) is tried with fresh contexts, at most once per
	// epochTrialGap, and adopted if it authenticates.
	rxEpoch   epoch
	rxRTP     *srtp.Context
	rxRTCP    *srtp.Context
	lastTrial int64
	// Epochs the peer used before: never adopted again, or a recorded
	// datagram of an old epoch replayed from the peer's address would
	// bring back keys with an empty replay window.
	retired  [retiredEpochs]epoch
	nRetired int

	mu      sync.Mutex
	exports map[uint32]*Export                 // by SSRC base
	imports atomic.Pointer[map[uint32]*Import] // by SSRC base, copy-on-write
	// Relay clock: the smallest (arrival - origin send time) seen in
	// clock reports, per recent window: this node's clock minus the
	// peer's, plus the shortest one-way delay.
	clockMu   sync.Mutex
	clockObs  [clockWindow]int64
	clockN    int
	rtcpRxHdr rtcp.Header // read loop only
	rtcpTxHdr rtcp.Header // under rtcpMu
}

// epochTrialGap limits how often a datagram under an unknown epoch costs a
// key derivation: a forged stream of them must not eat the CPU.
const epochTrialGap = 100 * time.Millisecond

// retiredEpochs is how many of a peer's past epochs are remembered.
const retiredEpochs = 8

// clockWindow is how many clock reports the relay clock offset is the
// minimum of (~8 s of one publisher's audio and video reports).
const clockWindow = 32

func newPeer(t *Transport, id string) (*peer, error) {
	key, salt, err := deriveKeys(t.secret, t.nodeID, id, t.epoch)
	if err != nil {
		return nil, err
	}
	p := &peer{t: t, id: id, out: sendKeys{key: key, salt: salt},
		exports: map[uint32]*Export{}, rtcpBuf: make([]byte, 1500)}
	if p.rtcpOut, err = p.out.context(); err != nil {
		return nil, err
	}
	empty := map[uint32]*Import{}
	p.imports.Store(&empty)
	return p, nil
}

func (p *peer) exportList() []*Export {
	p.mu.Lock()
	defer p.mu.Unlock()
	l := make([]*Export, 0, len(p.exports))
	for _, e := range p.exports {
		l = append(l, e)
	}
	return l
}

func (p *peer) importList() []*Import {
	m := *p.imports.Load()
	l := make([]*Import, 0, len(m))
	for _, i := range m {
		l = append(l, i)
	}
	return l
}

// contexts returns the receive contexts for a datagram's epoch, deriving
// them for a new epoch when allowed; adopt says the caller must call
// p.adopt after the datagram authenticates.
func (p *peer) contexts(pkt []byte, kind byte) (ctx *srtp.Context, fresh *[2]*srtp.Context, e epoch) {
	copy(e[:], pkt[2:2+epochLen])
	if p.rxRTP != nil && e == p.rxEpoch {
		if kind == kindRTP {
			return p.rxRTP, nil, e
		}
		return p.rxRTCP, nil, e
	}
	for _, r := range p.retired[:min(p.nRetired, retiredEpochs)] {
		if r == e {
			return nil, nil, e
		}
	}
	now := clock.Nanos()
	if now-p.lastTrial < int64(epochTrialGap) {
		return nil, nil, e
	}
	p.lastTrial = now
	a, err := receiveContext(p.t.secret, p.id, p.t.nodeID, e)
	if err != nil {
		return nil, nil, e
	}
	b, err := receiveContext(p.t.secret, p.id, p.t.nodeID, e)
	if err != nil {
		return nil, nil, e
	}
	fresh = &[2]*srtp.Context{a, b}
	if kind == kindRTP {
		return a, fresh, e
	}
	return b, fresh, e
}

func (p *peer) adopt(fresh *[2]*srtp.Context, e epoch) {
	if p.rxRTP != nil {
		p.t.log.Info("relay peer restarted: new keys", "peer", p.id)
		p.retired[p.nRetired%retiredEpochs] = p.rxEpoch
		p.nRetired++
	}
	p.rxRTP, p.rxRTCP, p.rxEpoch = fresh[0], fresh[1], e
}

// receiveRTP authenticates and decrypts one media datagram in place and
// hands it to its import. Runs on the read loop.
func (p *peer) receiveRTP(pkt []byte, hdr *rtp.Header) {
	t := p.t
	// The SSRC is readable before decryption: datagrams for no import are
	// dropped before any crypto, and never create SRTP state.
	ssrc := binary.BigEndian.Uint32(pkt[prefixLen+8:])
	base, layer := splitSSRC(ssrc)
	imp := (*p.imports.Load())[base]
	if imp == nil || layer >= maxLayers {
		t.stats.unknown.Add(1)
		return
	}
	ctx, fresh, e := p.contexts(pkt, kindRTP)
	if ctx == nil {
		t.stats.authFailures.Add(1)
		return
	}
	// The index is the sender's: its rollover counter, then the sequence
	// number (authenticated: a wrong counter fails the tag).
	ctx.SetROC(ssrc, binary.BigEndian.Uint32(pkt[8:12]))
	body := pkt[prefixLen:]
	plain, err := ctx.DecryptRTP(body, body, hdr)
	if err != nil {
		t.stats.authFailures.Add(1)
		return
	}
	if fresh != nil {
		p.adopt(fresh, e)
	}
	hl := hdr.MarshalSize()
	if hl > len(plain) {
		t.stats.malformed.Add(1)
		return
	}
	t.stats.packetsIn.Add(1)
	t.stats.bytesIn.Add(uint64(len(pkt)))
	imp.receive(layer, hdr, plain[hl:])
}

// receiveRTCP authenticates, decrypts and dispatches one RTCP datagram.
func (p *peer) receiveRTCP(pkt []byte) {
	t := p.t
	ctx, fresh, e := p.contexts(pkt, kindRTCP)
	if ctx == nil {
		t.stats.authFailures.Add(1)
		return
	}
	body := pkt[prefixLen:]
	plain, err := ctx.DecryptRTCP(body, body, &p.rtcpRxHdr)
	if err != nil {
		t.stats.authFailures.Add(1)
		return
	}
	if fresh != nil {
		p.adopt(fresh, e)
	}
	pkts, err := rtcp.Unmarshal(plain)
	if err != nil {
		t.stats.malformed.Add(1)
		return
	}
	t.stats.rtcpIn.Add(1)
	arrival := clock.Nanos()
	for i, pk := range pkts {
		switch pk := pk.(type) {
		case *rtcp.TransportLayerNack:
			if e := p.export(pk.MediaSSRC); e != nil {
				e.onNACK(pk)
			}
		case *rtcp.PictureLossIndication:
			if e := p.export(pk.MediaSSRC); e != nil {
				e.onPLI(pk.MediaSSRC)
			}
		case *rtcp.FullIntraRequest:
			if e := p.export(pk.MediaSSRC); e != nil {
				e.onPLI(pk.MediaSSRC)
			}
		case *rtcp.SenderReport:
			// An SR may be followed by its clock report.
			var clock *rtcp.ApplicationDefined
			if i+1 < len(pkts) {
				if a, ok := pkts[i+1].(*rtcp.ApplicationDefined); ok && a.Name == appName && a.SubType == appClock {
					clock = a
				}
			}
			if imp := p.importOf(pk.SSRC); imp != nil {
				imp.onSenderReport(pk, clock, arrival)
			}
		case *rtcp.ApplicationDefined:
			p.onApp(pk)
		}
	}
}

func (p *peer) export(ssrc uint32) *Export {
	base, _ := splitSSRC(ssrc)
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exports[base]
}

func (p *peer) importOf(ssrc uint32) *Import {
	base, _ := splitSSRC(ssrc)
	return (*p.imports.Load())[base]
}

func (p *peer) onApp(a *rtcp.ApplicationDefined) {
	if a.Name != appName || len(a.Data) < 4 {
		return
	}
	switch a.SubType {
	case appStatus:
		if imp := p.importOf(a.SSRC); imp != nil {
			imp.onStatus(a.Data[0], a.Data[1], a.Data[2])
		}
	case appWish:
		if e := p.export(a.SSRC); e != nil {
			e.onWish(a.Data[0])
		}
	}
}

// sendRTCP encrypts and queues RTCP to the peer. It allocates (RTCP is a
// few packets per second per track, NACKs only on loss).
func (p *peer) sendRTCP(pkts ...rtcp.Packet) {
	raw, err := rtcp.Marshal(pkts)
	if err != nil {
		return
	}
	to := p.addr.Load()
	p.rtcpMu.Lock()
	defer p.rtcpMu.Unlock()
	buf := p.rtcpBuf
	if need := prefixLen + len(raw) + 64; need > len(buf) {
		buf = make([]byte, need)
	}
	putPrefix(buf, kindRTCP, &p.t.epoch, 0)
	out, err := p.rtcpOut.EncryptRTCP(buf[prefixLen:prefixLen], raw, &p.rtcpTxHdr)
	if err != nil || len(out) == 0 {
		return
	}
	dgram := buf[:prefixLen+len(out)]
	if &out[0] != &buf[prefixLen] { // the cipher wrote elsewhere (it never does with room)
		dgram = append(append(make([]byte, 0, prefixLen+len(out)), buf[:prefixLen]...), out...)
	}
	p.t.stats.rtcpOut.Add(1)
	_, _ = p.t.conn.WriteToAddrPort(dgram, *to)
}

// observeClock records one clock report's (arrival - origin send time).
func (p *peer) observeClock(d int64) {
	p.clockMu.Lock()
	p.clockObs[p.clockN%clockWindow] = d
	p.clockN++
	p.clockMu.Unlock()
}

// clockOffset is this node's clock minus the peer's plus the shortest
// one-way delay: the minimum over the recent clock reports.
func (p *peer) clockOffset() (int64, bool) {
	p.clockMu.Lock()
	defer p.clockMu.Unlock()
	if p.clockN == 0 {
		return 0, false
	}
	o := p.clockObs[0]
	for i := 1; i < min(p.clockN, clockWindow); i++ {
		o = min(o, p.clockObs[i])
	}
	return o, true
}

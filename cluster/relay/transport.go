package relay

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/starling-rtc/starling/internal/clock"
	"github.com/starling-rtc/starling/internal/udpgro"
	"github.com/starling-rtc/starling/sfu"
)

// Transport is a node's relay endpoint: one UDP socket for every relayed
// track to and from every peer node.
type Transport struct {
	nodeID string
	secret []byte
	epoch  epoch
	conn   *sfu.BatchConn // sends: batched, segmented when the kernel can
	rd     *udpgro.Conn   // reads the same socket, coalesced runs at once
	log    *slog.Logger

	mu     sync.Mutex
	peers  map[string]*peer
	byAddr atomic.Pointer[map[netip.AddrPort]*peer] // copy-on-write: the read loop never locks
	// Every export and import, for the timer's work (copy-on-write).
	exports atomic.Pointer[[]*Export]
	imports atomic.Pointer[[]*Import]

	nextBase atomic.Uint32
	stats    counters
	done     chan struct{}
	kick     chan struct{} // an import started missing packets, or the first export or import came (timer)
	rounds   atomic.Uint64 // the timer's runs (tests)
	wg       sync.WaitGroup
	once     sync.Once
}

// Errors callers may test for.
var (
	ErrUnknownPeer = errors.New("relay: unknown peer node (AddPeer first)")
	ErrClosed      = errors.New("relay: transport closed")
)

// Listen opens the node's relay socket on addr ("host:port"; port 0 picks
// one) for node nodeID. secret is the cluster secret; each direction of
// each node pair gets its own keys from it. The address peers must send to
// is Addr() when addr names a concrete host; a wildcard listen address
// needs the control plane to advertise a reachable host with its port.
func Listen(addr, nodeID string, secret []byte) (*Transport, error) {
	if nodeID == "" {
		return nil, errors.New("relay: empty node id")
	}
	if len(secret) == 0 {
		return nil, errors.New("relay: empty cluster secret")
	}
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("relay: listen address %q: %w", addr, err)
	}
	c, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	e, err := newEpoch()
	if err != nil {
		c.Close()
		return nil, err
	}
	log := slog.Default().With("component", "relay", "node", nodeID)
	t := &Transport{
		nodeID: nodeID, secret: append([]byte(nil), secret...), epoch: e,
		conn: sfu.NewBatchConn(c, log), rd: udpgro.Wrap(c), log: log,
		peers: map[string]*peer{}, done: make(chan struct{}), kick: make(chan struct{}, 1),
	}
	emptyAddr := map[netip.AddrPort]*peer{}
	t.byAddr.Store(&emptyAddr)
	t.exports.Store(&[]*Export{})
	t.imports.Store(&[]*Import{})
	// SSRC bases start at a random multiple of 4 (never below 4).
	var b [4]byte
	_, _ = rand.Read(b[:])
	t.nextBase.Store(binary.BigEndian.Uint32(b[:])&^3 | 4)
	t.wg.Add(2)
	go t.readLoop()
	go t.timer()
	return t, nil
}

// Addr is the socket's local address.
func (t *Transport) Addr() string { return t.conn.LocalAddr().String() }

// NodeID is the id this transport was opened with.
func (t *Transport) NodeID() string { return t.nodeID }

// AddPeer declares a peer node and where its relay socket is. Datagrams are
// accepted only from declared peers' addresses. Calling it again for the
// same node moves it to a new address (a restarted node); its exports and
// imports stay.
func (t *Transport) AddPeer(nodeID, udpAddr string) error {
	if nodeID == "" || nodeID == t.nodeID {
		return fmt.Errorf("relay: bad peer node id %q", nodeID)
	}
	ap, err := resolve(udpAddr)
	if err != nil {
		return fmt.Errorf("relay: peer %s address %q: %w", nodeID, udpAddr, err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.isClosed() {
		return ErrClosed
	}
	p := t.peers[nodeID]
	if p == nil {
		p, err = newPeer(t, nodeID)
		if err != nil {
			return err
		}
		t.peers[nodeID] = p
	}
	p.addr.Store(&ap)
	t.rebuildAddrs()
	return nil
}

// RemovePeer forgets a peer node (it left or died): its exports stop and
// its imports close, which closes their sinks as a publisher leaving would.
func (t *Transport) RemovePeer(nodeID string) {
	t.mu.Lock()
	p := t.peers[nodeID]
	delete(t.peers, nodeID)
	t.rebuildAddrs()
	t.mu.Unlock()
	if p == nil {
		return
	}
	for _, e := range p.exportList() {
		e.Close()
	}
	for _, i := range p.importList() {
		i.Close()
	}
}

// rebuildAddrs publishes the address index; call with t.mu held.
func (t *Transport) rebuildAddrs() {
	m := make(map[netip.AddrPort]*peer, len(t.peers))
	for _, p := range t.peers {
		m[*p.addr.Load()] = p
	}
	t.byAddr.Store(&m)
}

func resolve(s string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		ua, rerr := net.ResolveUDPAddr("udp", s)
		if rerr != nil {
			return netip.AddrPort{}, rerr
		}
		ap = ua.AddrPort()
	}
	ap = unmap(ap)
	if ap.Port() == 0 || !ap.Addr().IsValid() || ap.Addr().IsUnspecified() {
		return netip.AddrPort{}, errors.New("needs a concrete host and port")
	}
	return ap, nil
}

func unmap(a netip.AddrPort) netip.AddrPort { return netip.AddrPortFrom(a.Addr().Unmap(), a.Port()) }

func (t *Transport) peer(nodeID string) *peer {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.peers[nodeID]
}

func (t *Transport) isClosed() bool {
	select {
	case <-t.done:
		return true
	default:
		return false
	}
}

// Close stops every export and import (closing the imports' sinks), then
// the socket and the transport's goroutines.
func (t *Transport) Close() error {
	t.once.Do(func() {
		t.mu.Lock()
		close(t.done)
		t.mu.Unlock()
		for _, e := range *t.exports.Load() {
			e.Close()
		}
		for _, i := range *t.imports.Load() {
			i.Close()
		}
		t.conn.Close()
		t.wg.Wait()
	})
	return nil
}

// readLoop is the receive hot path for every peer: read, authenticate and
// decrypt in place, hand to the import (media) or the RTCP handler.
func (t *Transport) readLoop() {
	defer t.wg.Done()
	buf := make([]byte, readBufSize)
	hdr := &rtp.Header{}
	for {
		n, from, err := t.rd.ReadFromAddrPort(buf)
		if err != nil {
			if t.isClosed() || errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		p := (*t.byAddr.Load())[unmap(from)]
		if p == nil {
			t.stats.unknown.Add(1)
			continue
		}
		if n < prefixLen+rtpHeaderLen || buf[0] != wireVersion {
			t.stats.malformed.Add(1)
			continue
		}
		switch buf[1] {
		case kindRTP:
			p.receiveRTP(buf[:n], hdr)
		case kindRTCP:
			p.receiveRTCP(buf[:n])
		default:
			t.stats.malformed.Add(1)
		}
	}
}

// Timer periods.
const (
	tick          = 20 * time.Millisecond  // NACK retries, while a packet is missing
	monitorEvery  = 200 * time.Millisecond // liveness, bitrates, layer wishes
	statusEvery   = 500 * time.Millisecond // origin -> edge layer status
	wishRefresh   = time.Second            // a wish is repeated this often (it may be lost)
	statusTimeout = 2 * time.Second        // an edge trusts the origin's status this long
)

// timer does the relay's periodic work: NACK retries, liveness, wishes,
// status. It runs every tick only while an import misses packets (an
// import's first miss kicks it, see addMiss), else at the next monitor or
// status time: a 20 ms ticker woke every node 50 times a second for
// nothing, half of an idle node's wake-ups and one more wake-up of an
// otherwise idle process every 20 ms under load. With no export and no
// import it sleeps until one is added.
func (t *Transport) timer() {
	defer t.wg.Done()
	tm := time.NewTimer(tick)
	defer tm.Stop()
	var lastMonitor, lastStatus int64
	for {
		select {
		case <-t.done:
			return
		case <-tm.C:
		case <-t.kick:
		}
		now := clock.Nanos()
		imports := *t.imports.Load()
		missing := false
		for _, i := range imports {
			i.retryNACKs(now)
			missing = missing || i.pending.Load() > 0
		}
		if now-lastMonitor >= int64(monitorEvery) {
			lastMonitor = now
			for _, i := range imports {
				i.monitor(now)
			}
		}
		if now-lastStatus >= int64(statusEvery) {
			lastStatus = now
			for _, e := range *t.exports.Load() {
				e.sendStatus()
			}
		}
		t.rounds.Add(1)
		if len(imports) == 0 && len(*t.exports.Load()) == 0 {
			// Nothing crosses: sleep until an export or import is added
			// (it kicks), rather than wake an idle node 7 times a second.
			tm.Stop()
			continue
		}
		next := time.Duration(min(lastMonitor+int64(monitorEvery), lastStatus+int64(statusEvery)) - now)
		if missing {
			next = min(next, tick)
		}
		tm.Reset(max(next, time.Millisecond))
	}
}

// missed kicks the timer when an import starts missing packets (it may be
// asleep until the next monitor time, and retries are due within a tick)
// and when an export or import is added (it may be asleep for good).
func (t *Transport) missed() {
	select {
	case t.kick <- struct{}{}:
	default:
	}
}

func (t *Transport) addExport(e *Export) {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := *t.exports.Load()
	next := append(append(make([]*Export, 0, len(old)+1), old...), e)
	t.exports.Store(&next)
	if len(old) == 0 && len(*t.imports.Load()) == 0 {
		t.missed() // the timer is asleep with nothing to do
	}
}

func (t *Transport) removeExport(e *Export) {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := *t.exports.Load()
	next := make([]*Export, 0, len(old))
	for _, x := range old {
		if x != e {
			next = append(next, x)
		}
	}
	t.exports.Store(&next)
}

func (t *Transport) addImport(i *Import) {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := *t.imports.Load()
	next := append(append(make([]*Import, 0, len(old)+1), old...), i)
	t.imports.Store(&next)
	if len(old) == 0 && len(*t.exports.Load()) == 0 {
		t.missed() // the timer is asleep with nothing to do
	}
}

func (t *Transport) removeImport(i *Import) {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := *t.imports.Load()
	next := make([]*Import, 0, len(old))
	for _, x := range old {
		if x != i {
			next = append(next, x)
		}
	}
	t.imports.Store(&next)
}

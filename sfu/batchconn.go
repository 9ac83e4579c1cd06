package sfu

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/pion/transport/v5"
	"github.com/pion/transport/v5/stdnet"
	"github.com/starling-rtc/starling/internal/clock"
	"github.com/starling-rtc/starling/internal/rawudp"
)

// batchConn is the shared media UDP socket with sends batched: one
// sendmmsg(2) carries every datagram queued since the last one, instead of
// one sendto(2) per packet per subscriber, which was half of the server's
// CPU when forwarding. Writers (each down track's goroutine, through pion's
// SRTP and ICE layers) only copy the datagram into a queue; one flusher
// goroutine sends. Under load batches form by themselves; when idle a batch
// is one packet and costs one goroutine wake-up more than a direct send.
//
// It implements ice.AddrPortReaderWriter, so pion's UDP mux reads and writes
// through it without allocating addresses.
type batchConn struct {
	*net.UDPConn
	// raw reads and sends without waking the runtime's monitor thread
	// (internal/rawudp).
	raw *rawudp.Conn

	mu      sync.Mutex
	pending []outDatagram
	closed  bool
	wake    chan struct{}
	done    chan struct{}
	exited  chan struct{}
	once    sync.Once
	dropped atomic.Uint64 // datagrams lost to a full queue or a send error
	logger  *slog.Logger
	// free holds the socket's own datagram buffers, reused before the
	// shared pool: sync.Pool empties at every GC, and refilling it was the
	// last allocation per forwarded packet.
	free chan *packetBuf
	taps socketTaps // subscribers' feedback readers (rtcptap.go)
	hold batchHold  // datagrams queued without waking the flusher (batchhold.go)
}

// freeBuffers is how many buffers a batched socket keeps: a few batches'
// worth; bursts borrow from the shared pool.
const freeBuffers = 1024

type outDatagram struct {
	buf *packetBuf
	n   int
	to  netip.AddrPort
	// The congestion controller's record of this packet, stamped with the
	// time it left (bwe.go); nil for datagrams it does not follow.
	hist *sendHistory
	tseq uint16
}

const (
	maxBatch      = 64   // datagrams per sendmmsg
	maxPendingOut = 8192 // datagrams queued before new ones are dropped
)

// newBatchConn wraps c; gso asks for segmentation offload, used when the
// kernel has it.
func newBatchConn(c *net.UDPConn, gso bool, log *slog.Logger) *batchConn {
	growBuffers(c)
	b := &batchConn{UDPConn: c, wake: make(chan struct{}, 1), done: make(chan struct{}), exited: make(chan struct{}),
		logger: log, free: make(chan *packetBuf, freeBuffers)}
	raw, err := rawudp.New(c)
	if err != nil {
		// Only a socket without a file descriptor fails here, which
		// net.ListenUDP does not return.
		panic("sfu: batched socket: " + err.Error())
	}
	b.raw = raw
	// The writer owns the segmentation switch: it may turn it off later.
	go b.flushLoop(newBatchWriter(b, gso && gsoSupported(c)))
	return b
}

// socketBuffer is what the media sockets ask the kernel for, each way: one
// socket carries every peer, and the default (~208 KiB, some 150 packets)
// overflowed when the machine was busy for a few ms, dropping publishers'
// packets before the server read them. The kernel caps it at
// net.core.rmem_max / wmem_max.
const socketBuffer = 4 << 20

func growBuffers(c *net.UDPConn) {
	_ = c.SetReadBuffer(socketBuffer)
	_ = c.SetWriteBuffer(socketBuffer)
}

// ReadFromAddrPort reads one datagram, as the UDP socket does, except
// subscribers' congestion control feedback, which their taps consume
// (rtcptap.go).
func (b *batchConn) ReadFromAddrPort(p []byte) (int, netip.AddrPort, error) {
	for {
		n, _, from, err := b.raw.ReadMsg(p, nil)
		if err != nil || !b.tapped(p[:n], from) {
			return n, from, err
		}
	}
}

// tapped reports whether a datagram read from addr was feedback that its
// subscriber's tap consumed.
func (b *batchConn) tapped(d []byte, from netip.AddrPort) bool {
	if !isSRTCPFeedback(d) {
		return false
	}
	t := b.tap(from)
	return t != nil && t.consume(d, clock.Micros())
}

// WriteToAddrPort queues one datagram for the next batch.
func (b *batchConn) WriteToAddrPort(p []byte, to netip.AddrPort) (int, error) {
	if len(p) > len(packetBuf{}) {
		return b.UDPConn.WriteToUDPAddrPort(p, to) // rare (large DTLS records): send at once
	}
	buf := b.getBuf()
	n := copy(buf[:], p)
	return n, b.queueOwned(buf, n, to, nil, 0)
}

// getBuf returns a datagram buffer, the socket's own if one is free.
func (b *batchConn) getBuf() *packetBuf {
	select {
	case buf := <-b.free:
		return buf
	default:
		return packetPool.Get().(*packetBuf)
	}
}

// queueOwned queues buf[:n] for the next batch without copying it: the
// buffer is the batch's from now on, reused once sent. A full
// queue drops the datagram, like a full socket buffer would. hist, when
// not nil, gets packet tseq's send time once it is sent.
func (b *batchConn) queueOwned(buf *packetBuf, n int, to netip.AddrPort, hist *sendHistory, tseq uint16) error {
	return b.queue(buf, n, to, hist, tseq, false)
}

// queue queues buf[:n]; held leaves the flusher asleep (see WriteHeld).
func (b *batchConn) queue(buf *packetBuf, n int, to netip.AddrPort, hist *sendHistory, tseq uint16, held bool) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		recycle(b.free, buf)
		return net.ErrClosed
	}
	if len(b.pending) >= maxPendingOut {
		b.mu.Unlock()
		recycle(b.free, buf)
		b.dropped.Add(1)
		counters.queueDrops.Add(1)
		return nil
	}
	b.pending = append(b.pending, outDatagram{buf: buf, n: n, to: to, hist: hist, tseq: tseq})
	if held && b.holdLocked() {
		b.mu.Unlock()
		return nil
	}
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default:
	}
	return nil
}

// WriteTo queues one datagram (net.Addr form, for callers without AddrPort).
func (b *batchConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return b.UDPConn.WriteTo(p, addr)
	}
	return b.WriteToAddrPort(p, ua.AddrPort())
}

// Close sends what is queued, stops the flusher and closes the socket.
func (b *batchConn) Close() error {
	b.once.Do(func() {
		b.mu.Lock()
		b.closed = true
		b.mu.Unlock()
		close(b.done)
		<-b.exited
	})
	return b.UDPConn.Close()
}

// Dropped counts datagrams lost to a full queue or a failed send.
func (b *batchConn) Dropped() uint64 { return b.dropped.Load() }

func (b *batchConn) flushLoop(w *batchWriter) {
	defer close(b.exited)
	var batch []outDatagram
	for {
		stop := false
		select {
		case <-b.wake:
		case <-b.done:
			stop = true
		}
		if !stop {
			b.gather() // let the other woken writers queue first (batchgather.go)
		}
		b.mu.Lock()
		batch, b.pending = b.pending, batch[:0]
		b.releasedLocked()
		b.mu.Unlock()
		w.write(batch)
		// Send times for the congestion controller: now, when the packets
		// have left, not when they were queued (docs/congestion.md).
		now := clock.Micros()
		for i := range batch {
			if batch[i].hist != nil {
				batch[i].hist.stamp(batch[i].tseq, now)
			}
			recycle(b.free, batch[i].buf)
			batch[i] = outDatagram{}
		}
		batch = batch[:0]
		if stop {
			return
		}
	}
}

func (b *batchConn) log(msg string, err error) {
	if b.logger != nil {
		b.logger.Warn(msg, "socket", b.LocalAddr().String(), "err", err)
	}
}

// batchNet is the operating system's network for pion's multi-socket UDP
// mux (media on every interface), except that the UDP sockets it opens send
// in batches.
type batchNet struct {
	*stdnet.Net
	gso    bool
	log    *slog.Logger
	opened func(*batchConn) // told of each socket opened
}

func newBatchNet(gso bool, log *slog.Logger, opened func(*batchConn)) (*batchNet, error) {
	n, err := stdnet.NewNet()
	if err != nil {
		return nil, err
	}
	return &batchNet{Net: n, gso: gso, log: log, opened: opened}, nil
}

// ListenUDP opens the socket and wraps it.
func (n *batchNet) ListenUDP(network string, laddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := net.ListenUDP(network, laddr)
	if err != nil {
		return nil, err
	}
	bc := newBatchConn(c, n.gso, n.log)
	if n.opened != nil {
		n.opened(bc)
	}
	return bc, nil
}

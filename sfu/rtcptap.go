package sfu

import (
	"net/netip"
	"sync"

	"github.com/pion/rtcp"
	"github.com/pion/srtp/v3"
)

// The feedback tap: a subscriber's transport-wide congestion control
// feedback is read off the batched media socket, decrypted and applied to
// its estimator there, and never reaches pion.
//
// Each viewer's client sends a feedback packet every 50–100 ms. Through
// pion, each one crossed the UDP mux, ICE's candidate read loop, the
// DTLS/SRTP mux and the SRTCP session (which decrypts it and unmarshals it
// into fresh structs to route it by SSRC), then the connection's RTCP
// reader and interceptors, with a goroutine hand-off at each of five
// steps. With congestion control on, that was most of its cost on the
// server (docs/congestion.md, "Cost").
//
// Only packets whose clear SRTCP header says "transport-wide feedback"
// are decrypted here, and only if every packet of the compound is
// feedback are they consumed; anything else (receiver reports, NACKs, PLIs,
// a compound mixing them) goes on to pion untouched, and pion decrypts it
// with its own context. The tap's context has its own replay window, so
// the two never see each other's indexes.

// rtcpTap is one subscriber connection's feedback reader, registered on the
// batched socket of its route under the client's address.
type rtcpTap struct {
	est *bwe

	mu   sync.Mutex // the socket's reader; a route change may move the tap between sockets
	keys *directKeys
	ctx  *srtp.Context
	hdr  rtcp.Header
	buf  [1500]byte
}

// isSRTCPFeedback reports whether a datagram is SRTCP starting with
// transport-wide feedback (PT 205, FMT 15): the first 8 bytes of SRTCP
// are in the clear.
func isSRTCPFeedback(b []byte) bool {
	return len(b) >= 8 && b[0]&0xc0 == 0x80 && b[0]&0x1f == 15 && b[1] == 205
}

// consume decrypts a datagram and applies it when it holds feedback only;
// false leaves it to pion.
func (t *rtcpTap) consume(b []byte, now int64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ctx == nil {
		return false
	}
	plain, err := t.ctx.DecryptRTCP(t.buf[:0], b, &t.hdr)
	if err != nil || len(plain) > len(t.buf) || !onlyTWCC(plain) {
		// Not ours to judge (pion's context may know better: a key
		// change), or not feedback only: pion reads it.
		return false
	}
	t.est.onRTCP(plain, now)
	counters.bweFeedbackTapped.Add(1)
	t.est.counts.feedbackTapped.Add(1)
	return true
}

// setKeys points the tap at a route's keys.
func (t *rtcpTap) setKeys(k *directKeys) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if k == t.keys {
		return
	}
	t.keys, t.ctx = k, nil
	if k == nil || len(k.remoteKey) == 0 {
		return
	}
	if ctx, err := srtp.CreateContext(k.remoteKey, k.remoteSalt, k.profile); err == nil {
		t.ctx = ctx
	}
}

// onlyTWCC reports whether a compound RTCP packet is well formed and holds
// transport-wide feedback only.
func onlyTWCC(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for rest := b; len(rest) > 0; {
		p, r, ok := splitRTCP(rest)
		if !ok || len(p) < 2 || !isTWCC(p) {
			return false
		}
		rest = r
	}
	return true
}

// socketTaps are a batched socket's feedback taps, by client address.
type socketTaps struct {
	mu sync.RWMutex
	m  map[netip.AddrPort]*rtcpTap
}

// tapFrom registers t for datagrams from addr, decrypted with keys.
func (b *batchConn) tapFrom(addr netip.AddrPort, t *rtcpTap, keys *directKeys) {
	t.setKeys(keys)
	b.taps.mu.Lock()
	defer b.taps.mu.Unlock()
	if b.taps.m == nil {
		b.taps.m = map[netip.AddrPort]*rtcpTap{}
	}
	b.taps.m[addr] = t
}

// untap removes t from addr, if it is still the one there (a new
// connection from the same address may have taken it).
func (b *batchConn) untap(addr netip.AddrPort, t *rtcpTap) {
	b.taps.mu.Lock()
	defer b.taps.mu.Unlock()
	if b.taps.m[addr] == t {
		delete(b.taps.m, addr)
	}
}

func (b *batchConn) tap(addr netip.AddrPort) *rtcpTap {
	b.taps.mu.RLock()
	defer b.taps.mu.RUnlock()
	return b.taps.m[addr]
}

package sfu

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/internal/clock"
)

// The direct send path: a subscriber connection's RTP is encrypted by
// Starling and queued straight into the batched media socket, instead of
// going down pion's write path (srtpWriterFuture, the SRTP session with its
// lock, pooled buffer and copy, the mux endpoint, ice.Conn with a channel
// poll per packet, the UDP mux's bookkeeping, and the batched socket's
// copy). That path was a third of the server's CPU when forwarding, about
// 2 µs per packet besides the encryption itself.
//
// It is the innermost interceptor of each subscriber connection, so the
// others (sender-report accounting, TWCC sequence numbers, congestion
// control) still see every packet; only pion's bottom layers are skipped.
// The keys come from the DTLS handshake (dtlsKeys), the destination from
// ICE's selected pair. A stream decides its path at its first packet and
// keeps it: the SRTP rollover counter lives in whichever context encrypts
// the stream, so the two paths must not take turns. Media takes pion's path
// whenever the direct one is not possible: Starling was the DTLS client,
// the selected pair is ICE-TCP or not on one of the batched sockets, or the
// path is turned off (EngineConfig.DirectSRTP).
//
// If the selected pair later moves off the batched sockets (an ICE restart
// onto TCP), a direct stream continues on pion's path, whose context starts
// afresh: receivers accept that until the stream's sequence numbers have
// wrapped once (65,536 packets), and fail to decrypt it after.

// srtpOverhead is the most SRTP adds to a packet: an AES-GCM tag (16) and
// room for a rollover counter (4).
const srtpOverhead = 20

// directSender is one subscriber connection's direct send path: an
// interceptor (its own factory) that pion builds into the connection's chain.
type directSender struct {
	interceptor.NoOp
	keys   dtlsKeys
	route  atomic.Pointer[directRoute] // nil = send through pion
	dtlsUp atomic.Bool
	srtp   atomic.Pointer[directKeys]
	// tap reads the connection's TWCC feedback off the batched socket
	// (rtcptap.go); nil without congestion control.
	tap     *rtcpTap
	routeMu sync.Mutex // serialises route changes, which move the tap
}

// setRoute changes the connection's route, and moves its feedback tap
// with it.
func (s *directSender) setRoute(r *directRoute) {
	s.routeMu.Lock()
	defer s.routeMu.Unlock()
	old := s.route.Swap(r)
	if s.tap == nil || old == r {
		return
	}
	if old != nil {
		old.conn.untap(old.to, s.tap)
	}
	if r != nil {
		r.conn.tapFrom(r.to, s.tap, r.keys)
	}
}

// directRoute is where a connection's packets go: the socket of the
// selected pair's local candidate and its remote address.
type directRoute struct {
	conn *batchConn
	to   netip.AddrPort
	keys *directKeys
}

// directKeys are the SRTP master key and salt Starling sends with, and
// the client's, which its RTCP is decrypted with (rtcptap.go).
type directKeys struct {
	key, salt             []byte
	remoteKey, remoteSalt []byte
	profile               srtp.ProtectionProfile
}

// NewInterceptor returns s itself: each subscriber connection gets a
// registry of its own whose first factory is its directSender.
func (s *directSender) NewInterceptor(string) (interceptor.Interceptor, error) { return s, nil }

// BindLocalStream puts the direct path under the stream's other interceptors.
func (s *directSender) BindLocalStream(_ *interceptor.StreamInfo, next interceptor.RTPWriter) interceptor.RTPWriter {
	return &directStream{sender: s, next: next}
}

// Close ends the connection's direct path.
func (s *directSender) Close() error {
	s.setRoute(nil)
	return nil
}

// registryFactory builds a shared registry's interceptors as one: the
// shared chain, placed after a connection's own directSender.
type registryFactory struct{ r *interceptor.Registry }

func (f registryFactory) NewInterceptor(id string) (interceptor.Interceptor, error) {
	return f.r.Build(id)
}

type streamPath uint8

const (
	pathUnset streamPath = iota
	pathDirect
	pathPion
)

// directStream is one local stream (a down track, with its RTX SSRC). Its
// only writer is the down track's writer goroutine (sendqueue.go: media,
// padding and retransmissions all leave through its queue), so its state
// needs no lock on the per-packet path.
type directStream struct {
	sender *directSender
	next   interceptor.RTPWriter
	path   streamPath
	ctx    *srtp.Context
	keys   *directKeys
	hdr    rtp.Header // EncryptRTP's scratch header, reused
}

// direct reports whether a packet goes out directly by route r (nil: none
// now). A stream's path is settled by its first packet, for good: direct
// if a route was known then, else through pion.
func (st *directStream) direct(r *directRoute) bool {
	if st.path == pathUnset {
		if r != nil {
			st.path = pathDirect
			counters.directStreams.Add(1)
		} else {
			st.path = pathPion
			counters.pionStreams.Add(1)
		}
	}
	return st.path != pathPion && r != nil
}

// Write encrypts and queues the packet, or hands it to pion.
func (st *directStream) Write(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
	r := st.sender.route.Load()
	if !st.direct(r) {
		return st.next.Write(h, payload, a)
	}
	return st.writeDirect(r, h, payload, nil, 0)
}

// writeStamped is Write for a packet the estimator follows: its send
// time in hist is stamped when the batched socket has sent it (bweio.go).
func (st *directStream) writeStamped(h *rtp.Header, payload []byte, a interceptor.Attributes, hist *sendHistory, seq uint16) (int, error) {
	r := st.sender.route.Load()
	if !st.direct(r) {
		n, err := st.next.Write(h, payload, a)
		hist.stamp(seq, clock.Micros())
		return n, err
	}
	return st.writeDirect(r, h, payload, hist, seq)
}

// writeDirect marshals and encrypts into a pooled buffer that the batched
// socket then owns: no copy after the encryption.
func (st *directStream) writeDirect(r *directRoute, h *rtp.Header, payload []byte, hist *sendHistory, seq uint16) (int, error) {
	if st.keys != r.keys {
		ctx, err := srtp.CreateContext(r.keys.key, r.keys.salt, r.keys.profile)
		if err != nil {
			return 0, err
		}
		st.ctx, st.keys = ctx, r.keys
	}
	size := h.MarshalSize() + len(payload)
	if size+srtpOverhead > len(packetBuf{}) {
		out, err := st.encrypt(make([]byte, size+srtpOverhead), h, payload) // rare: an oversize packet
		if err != nil {
			return 0, err
		}
		defer stampNow(hist, seq)
		return r.conn.WriteToAddrPort(out, r.to)
	}
	buf := r.conn.getBuf()
	out, err := st.encrypt(buf[:], h, payload)
	if err != nil {
		recycle(r.conn.free, buf)
		return 0, err
	}
	if len(out) > len(buf) || &out[0] != &buf[0] {
		// The cipher wrote elsewhere (it never does with room to spare).
		defer recycle(r.conn.free, buf)
		defer stampNow(hist, seq)
		return r.conn.WriteToAddrPort(out, r.to)
	}
	return len(out), r.conn.queueOwned(buf, len(out), r.to, hist, seq)
}

// stampNow stamps a packet's send time now, for the rare packets that do
// not go through the batched socket's own queue.
func stampNow(hist *sendHistory, seq uint16) {
	if hist != nil {
		hist.stamp(seq, clock.Micros())
	}
}

func (st *directStream) encrypt(dst []byte, h *rtp.Header, payload []byte) ([]byte, error) {
	n, err := h.MarshalTo(dst)
	if err != nil {
		return nil, err
	}
	n += copy(dst[n:], payload)
	return st.ctx.EncryptRTP(dst, dst[:n], &st.hdr)
}

// watchDirect keeps a subscriber connection's route current: set when
// DTLS is up (before the connection counts as connected, so every stream's
// first packet already finds it), moved when ICE selects another pair.
func (e *Engine) watchDirect(pc *webrtc.PeerConnection, s *directSender) {
	dtls := pc.SCTP().Transport()
	ice := dtls.ICETransport()
	dtls.OnStateChange(func(state webrtc.DTLSTransportState) {
		// pion holds the DTLS transport's lock here: no calls back into it.
		switch state {
		case webrtc.DTLSTransportStateConnected:
			s.dtlsUp.Store(true)
			pair, err := ice.GetSelectedCandidatePair()
			if err != nil {
				pair = nil
			}
			s.setRoute(e.directRoute(s, pair))
		case webrtc.DTLSTransportStateClosed, webrtc.DTLSTransportStateFailed:
			s.dtlsUp.Store(false)
			s.setRoute(nil)
		}
	})
	ice.OnSelectedCandidatePairChange(func(pair *webrtc.ICECandidatePair) {
		if s.dtlsUp.Load() {
			s.setRoute(e.directRoute(s, pair))
		}
	})
}

// directRoute is the route for a selected pair, or nil where pion must send.
func (e *Engine) directRoute(s *directSender, pair *webrtc.ICECandidatePair) *directRoute {
	if pair == nil || pair.Local == nil || pair.Remote == nil ||
		pair.Local.Protocol != webrtc.ICEProtocolUDP || pair.Remote.Protocol != webrtc.ICEProtocolUDP {
		return nil
	}
	keys := s.srtp.Load()
	if keys == nil {
		k, ok := s.keys.srtpKeys()
		if !ok {
			return nil
		}
		keys = k
		s.srtp.Store(keys)
	}
	local := pair.Local.Address
	switch pair.Local.Typ {
	case webrtc.ICECandidateTypeHost:
	case webrtc.ICECandidateTypeSrflx, webrtc.ICECandidateTypePrflx:
		local = pair.Local.RelatedAddress // the host socket it was learnt through
	default:
		return nil // relayed: pion's TURN client sends
	}
	remote, err := netip.ParseAddr(pair.Remote.Address)
	if err != nil {
		return nil // a hostname (mDNS): pion resolves it, we do not
	}
	conn := e.socketFor(local)
	if conn == nil {
		return nil
	}
	la, ok := conn.LocalAddr().(*net.UDPAddr)
	if !ok || (la.IP.To4() != nil) != remote.Unmap().Is4() {
		return nil
	}
	return &directRoute{conn: conn, to: netip.AddrPortFrom(remote.Unmap(), pair.Remote.Port), keys: keys}
}

// socketFor is the batched socket a local candidate's address belongs to.
// With a single socket it is that one whatever the address (NAT 1:1
// rewrites candidates to the public address).
func (e *Engine) socketFor(address string) *batchConn {
	e.sockMu.Lock()
	defer e.sockMu.Unlock()
	if len(e.sockets) == 1 {
		return e.sockets[0]
	}
	ip, err := netip.ParseAddr(address)
	if err != nil {
		return nil
	}
	for _, c := range e.sockets {
		if la, ok := c.LocalAddr().(*net.UDPAddr); ok {
			if a, ok := netip.AddrFromSlice(la.IP); ok && a.Unmap() == ip.Unmap() {
				return c
			}
		}
	}
	return nil
}

// addSocket records a batched media socket for socketFor.
func (e *Engine) addSocket(c *batchConn) {
	e.sockMu.Lock()
	e.sockets = append(e.sockets, c)
	e.sockMu.Unlock()
}

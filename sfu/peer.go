package sfu

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/internal/pcclose"
)

// peer holds what both of a participant's connections share: the pion
// connection and candidates that arrived before the remote description.
type peer struct {
	pc        *webrtc.PeerConnection
	mu        sync.Mutex
	pending   []webrtc.ICECandidateInit
	closed    bool
	onFailed  func()
	connected atomic.Bool // DTLS is up: SRTP writes reach the client
	onConnect func()      // runs on each transition to connected
	stateMu   sync.Mutex  // one state change handled at a time
	failure   string      // how it failed (Failure); guarded by mu
}

// watchState follows the connection state; call once after creating pc.
func (p *peer) watchState() {
	p.pc.OnConnectionStateChange(func(webrtc.PeerConnectionState) {
		// pion calls this on a new goroutine for each change, so two
		// changes close together (disconnected, then connected again, when
		// a busy client answered ICE's checks late) can arrive in either
		// order. Acting on the state this call was made for, a late
		// "disconnected" left the flag down on a connected subscriber, and
		// nothing was ever forwarded to it again (issue 18: one viewer's
		// video never started). Act on the state the connection is in now.
		p.stateMu.Lock()
		defer p.stateMu.Unlock()
		switch s := p.pc.ConnectionState(); s {
		case webrtc.PeerConnectionStateConnected:
			if !p.connected.Swap(true) && p.onConnect != nil {
				p.onConnect()
			}
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			p.connected.Store(false)
			why := p.describe(s)
			p.mu.Lock()
			f := p.onFailed
			ours := p.closed
			if !ours && p.failure == "" {
				p.failure = why
			}
			p.mu.Unlock()
			// Closed without our Close: the client sent a DTLS close_notify
			// (closed its connection) but kept its socket. The connection is
			// as dead as a failed one and will never come back.
			if f != nil && !ours {
				f()
			}
		case webrtc.PeerConnectionStateDisconnected:
			p.connected.Store(false)
		}
	})
}

// ErrClosed is returned by operations on a closed connection.
var ErrClosed = errors.New("connection closed")

// maxPendingCandidates bounds the candidates kept for a description not
// applied yet.
const maxPendingCandidates = 64

// AddCandidate adds a remote ICE candidate; nil means end of candidates.
// Candidates that arrive before the remote description are kept until it
// is set. So is a candidate of another ICE session than the remote
// description's (its ufrag is not the description's): one of an ICE
// restart whose description has not been applied, or never will be (the
// soak saw a client's answer to a subscriber restart offer refused because
// the connection had closed meanwhile, and the client's candidates of that
// answer follow it). pion drops those with an error-level log ("dropping
// candidate with ufrag ..."), which the soak counted as a server error
// after resumes: the client did nothing wrong.
// A later description with that ufrag takes them; the oldest go first when
// too many wait.
func (p *peer) AddCandidate(c *webrtc.ICECandidateInit) error {
	if c == nil {
		return nil // pion ends gathering checks on its own
	}
	c = normalizeCandidate(c)
	if err := checkCandidate(c.Candidate); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	rd := p.pc.RemoteDescription()
	if rd == nil {
		if len(p.pending) >= maxPendingCandidates {
			return errors.New("too many candidates before the remote description")
		}
		p.pending = append(p.pending, *c)
		return nil
	}
	if !fitsDescription(rd.SDP, *c) {
		if len(p.pending) >= maxPendingCandidates {
			p.pending = p.pending[1:]
		}
		p.pending = append(p.pending, *c)
		return nil
	}
	if err := p.pc.AddICECandidate(*c); err != nil {
		return fmt.Errorf("bad ICE candidate: %w", err)
	}
	return nil
}

// normalizeCandidate accepts a candidate copied from an SDP line as it is:
// "a=candidate:..." with its line ending (some clients trickle the SDP
// attribute rather than RTCIceCandidate.candidate). pion takes only
// "candidate:..." or the bare value.
func normalizeCandidate(c *webrtc.ICECandidateInit) *webrtc.ICECandidateInit {
	line := strings.TrimSpace(c.Candidate)
	line = strings.TrimPrefix(line, "a=")
	if line == c.Candidate {
		return c
	}
	n := *c
	n.Candidate = line
	return &n
}

// checkCandidate refuses a candidate line pion would refuse once the remote
// description is set. It runs before a candidate is kept for later, so a
// client that trickles garbage before its description is applied learns it
// at once (docs/PROTOCOL.md: a failed notification gets an error) instead of
// the candidate vanishing at the flush. "" (end of candidates) and the kinds
// pion skips (unknown type, unknown network) pass, as pion lets them.
func checkCandidate(line string) error {
	v := strings.TrimPrefix(line, "candidate:")
	if v == "" {
		return nil
	}
	_, err := ice.UnmarshalCandidate(v)
	if err == nil || errors.Is(err, ice.ErrUnknownCandidateTyp) || errors.Is(err, ice.ErrDetermineNetworkType) {
		return nil
	}
	return fmt.Errorf("bad ICE candidate: %w", err)
}

// flushCandidates adds the candidates kept that fit the remote description
// now set; those of another ICE session keep waiting.
func (p *peer) flushCandidates() {
	p.mu.Lock()
	pending := p.pending
	p.pending = nil
	var fit []webrtc.ICECandidateInit
	if rd := p.pc.RemoteDescription(); rd == nil {
		p.pending = pending
	} else {
		for _, c := range pending {
			if fitsDescription(rd.SDP, c) {
				fit = append(fit, c)
			} else {
				p.pending = append(p.pending, c)
			}
		}
	}
	p.mu.Unlock()
	for _, c := range fit {
		_ = p.pc.AddICECandidate(c)
	}
}

// fitsDescription reports whether candidate c may be added with sdp as the
// remote description: it names no ufrag, or one of sdp's (pion's own test,
// which drops the candidate otherwise).
func fitsDescription(sdp string, c webrtc.ICECandidateInit) bool {
	f := strings.Fields(c.Candidate)
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "ufrag" {
			u := f[i+1]
			return strings.Contains(sdp, "a=ice-ufrag:"+u+"\r\n") || strings.Contains(sdp, "a=ice-ufrag:"+u+"\n")
		}
	}
	return true
}

// OnCandidate calls f with each local candidate, then nil at the end of gathering.
func (p *peer) OnCandidate(f func(*webrtc.ICECandidateInit)) {
	p.pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c == nil {
			f(nil)
			return
		}
		init := c.ToJSON()
		f(&init)
	})
}

// OnFailed calls f once the connection has failed for good, or the client
// closed it (not us).
func (p *peer) OnFailed(f func()) {
	p.mu.Lock()
	p.onFailed = f
	p.mu.Unlock()
}

// Failure says how the connection failed or why pion closed it (its ICE
// and DTLS states then), once OnFailed's f was called; "" before.
func (p *peer) Failure() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failure
}

// describe is the connection's state s with its ICE and DTLS transports':
// "closed" with DTLS closed is the client's close_notify (or a fatal
// alert), "failed" with DTLS failed a handshake that did not complete.
func (p *peer) describe(s webrtc.PeerConnectionState) string {
	dtls := "none"
	if sctp := p.pc.SCTP(); sctp != nil && sctp.Transport() != nil {
		dtls = sctp.Transport().State().String()
	}
	return fmt.Sprintf("%s (ICE %s, DTLS %s)", s, p.pc.ICEConnectionState(), dtls)
}

// Describe is the connection's state with its ICE and DTLS transports'.
func (p *peer) Describe() string { return p.describe(p.pc.ConnectionState()) }

// State is the connection state.
func (p *peer) State() webrtc.PeerConnectionState { return p.pc.ConnectionState() }

// ICEStarted reports whether ICE has started checking: after the first
// answer, pion starts the transports in the background, and only once they
// run can new remote credentials (an ICE restart's answer) be applied; ones
// applied before are overwritten by the first answer's.
func (p *peer) ICEStarted() bool {
	return p.pc.ICEConnectionState() != webrtc.ICEConnectionStateNew
}

// isClosed reports whether the connection is closed or closing: by Close,
// or by pion on its own when the client's DTLS close_notify arrives (pion
// sets the signaling state to closed before it stops the transceivers).
func (p *peer) isClosed() bool {
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	return closed || p.pc.SignalingState() == webrtc.SignalingStateClosed
}

// Close closes the connection; idempotent. pion's Close can deadlock; then
// this returns pcclose.ErrStuck after 10 s with the connection's ICE
// transport stopped, instead of never (internal/pcclose), so that a
// participant's end and the server's shutdown, which waits for it, go on.
func (p *peer) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	return pcclose.Close(p.pc, slog.Default())
}

func randUint32() uint32 {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint32(b[:])
}

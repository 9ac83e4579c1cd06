package sfu

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// Subscriber is the connection a participant receives on; the server offers.
type Subscriber struct {
	peer
	dc     *webrtc.DataChannel
	data   dataOut                      // messages held until dc opens (dataqueue.go)
	tracks map[string]*webrtc.RTPSender // by track id; guarded by the owner's goroutine
	// videoAll: the first video transceiver offers every video codec (see
	// AddDownTrack); guarded like tracks.
	videoAll bool
	dmu      sync.Mutex
	down     map[string]*DownTrack // by track id, for transport events
	slots    []*slot               // answering connections only (answer.go)

	bw        *bweInterceptor    // congestion control (bwe.go); nil when it is off
	plis      *atomic.Uint64     // the engine's count of keyframe requests read (Engine.PLIsReceived)
	fallback  *fallbackEstimator // REMB / receiver-report loss, when TWCC is not negotiated
	probeID   uint16             // the last probe cluster's id
	twcc      atomic.Bool        // the client's answer enabled TWCC feedback
	probeMu   sync.Mutex
	probing   bool
	stopped   bool
	stopProbe chan struct{}
	probeWG   sync.WaitGroup
	// The prober's choice of track (pad): a scratch list of the down
	// tracks, and the id of the last one padded. Only the running probe
	// touches them (one at a time).
	padOrder  []*DownTrack
	padLast   string
	downSince int64                  // watchdog.go: since when connected with the flag down (ns); the loop's goroutine only
	everUp    atomic.Bool            // DTLS came up at least once
	upHook    atomic.Pointer[func()] // OnConnected
	// The client's side of the connection (PeerUp): its answer kept the
	// data section (SCTP is to start), and the `data` channel opened.
	dataAnswered atomic.Bool
	dataOpen     atomic.Bool
}

// NewSubscriber makes a subscriber connection with its `data` channel.
func NewSubscriber(e *Engine, iceServers []webrtc.ICEServer) (*Subscriber, error) {
	pc, bw, err := e.newSubscriberPC(iceServers)
	if err != nil {
		return nil, err
	}
	dc, err := pc.CreateDataChannel("data", nil)
	if err != nil {
		_ = pc.Close()
		return nil, err
	}
	s := &Subscriber{
		peer: peer{pc: pc}, dc: dc, tracks: map[string]*webrtc.RTPSender{}, down: map[string]*DownTrack{},
		bw: bw, plis: &e.plisReceived, stopProbe: make(chan struct{}), fallback: newFallbackEstimator(e.initialBitrate),
	}
	s.onConnect = func() {
		s.everUp.Store(true)
		s.resumeAll()
		if f := s.upHook.Load(); f != nil {
			(*f)()
		}
	}
	flush := s.data.opened(dc)
	dc.OnOpen(func() {
		flush()
		s.dataOpen.Store(true)
		if f := s.upHook.Load(); f != nil {
			(*f)() // PeerUp changed
		}
	})
	dc.OnClose(s.data.closed)
	s.watchState()
	return s, nil
}

// EverConnected reports whether the connection has been up (DTLS) at least
// once.
func (s *Subscriber) EverConnected() bool { return s.everUp.Load() }

// PeerUp reports whether the client's end of the connection is up too.
// DTLS up here says less: the server is the DTLS server for clients that
// answer "active" (browsers, aiortc, pion), and its handshake ends when it
// sends its last flight; the client's ends when that flight arrives, and a
// starved client may read a signaling message first. An SCTP association
// needs both ends' DTLS, so the `data` channel's opening says the client
// is up; a client whose answer refused the data section is taken as up
// with DTLS.
func (s *Subscriber) PeerUp() bool {
	return s.everUp.Load() && (s.dataOpen.Load() || !s.dataAnswered.Load())
}

// Handshaking reports whether the connection's first DTLS handshake is
// under way: ICE has connected, the client's end is not up yet (PeerUp)
// and the connection has not failed. An ICE restart then breaks the
// handshake (see room's holdUntilConnected); while ICE is still checking
// there is no handshake to break, and a restart may be what connects it.
func (s *Subscriber) Handshaking() bool {
	if s.PeerUp() {
		return false
	}
	switch s.pc.ConnectionState() {
	case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
		return false
	}
	switch s.pc.ICEConnectionState() {
	case webrtc.ICEConnectionStateConnected, webrtc.ICEConnectionStateCompleted:
		return true
	}
	return false
}

// OnConnected sets f to run on each transition to connected (after the
// down tracks are told), and when PeerUp becomes true. f must not block.
func (s *Subscriber) OnConnected(f func()) { s.upHook.Store(&f) }

// resumeAll restarts every down track at a keyframe once DTLS is up: what
// was written before went nowhere.
func (s *Subscriber) resumeAll() {
	s.dmu.Lock()
	down := make([]*DownTrack, 0, len(s.down))
	for _, d := range s.down {
		down = append(down, d)
	}
	s.dmu.Unlock()
	for _, d := range down {
		d.transportReady()
	}
}

// AddDownTrack adds a send-only transceiver for d; the change takes effect
// at the next offer.
func (s *Subscriber) AddDownTrack(d *DownTrack) error {
	if _, ok := s.tracks[d.ID()]; ok {
		return fmt.Errorf("track %s already subscribed", d.ID())
	}
	t, err := s.pc.AddTransceiverFromTrack(d, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		return err
	}
	// A close racing this call may have stopped the connection's
	// transceivers just before ours was added: nothing would ever stop it,
	// and the RTCP reader below would wait on it forever, holding the
	// connection, this down track and its publisher's receiver in memory.
	// pion checks that the connection is open before it builds the
	// transceiver, not when it adds it. Two closers: Close, and pion
	// itself when the client's DTLS close_notify arrives (a client that
	// closed its connection; Close is not called then: issue 17, the
	// soak's leaked RTCP reader after its churn). Both mark the connection
	// closed before stopping its transceivers, so checking after the add
	// catches every order.
	if s.isClosed() {
		_ = t.Stop()
		return webrtc.ErrConnectionClosed
	}
	all := t.Sender().GetParameters().Codecs
	if prefs := offerCodecs(all, d.codec); len(prefs) > 0 {
		// pion fixes a connection's video codecs for good from the first
		// video section of the first answer. If that section offered only
		// its track's codec, a later track in another codec (an H.264
		// camera or OBS beside VP8 browsers) could never be sent to this
		// subscriber. So the first video section offers every codec, its
		// own first; the others offer only theirs (small offers).
		if d.video && !s.videoAll {
			s.videoAll = true
			prefs = withOtherCodecs(prefs, all)
		}
		_ = t.SetCodecPreferences(prefs) // best effort: pion offers everything otherwise
	}
	s.tracks[d.ID()] = t.Sender()
	d.setTransport(&s.connected)
	d.mu.Lock()
	d.plis = s.plis // before StartRTCP starts the reader that counts
	if s.bw != nil {
		d.fallback = s.fallback
	}
	d.mu.Unlock()
	s.dmu.Lock()
	s.down[d.ID()] = d
	s.dmu.Unlock()
	d.StartRTCP(t.Sender())
	return nil
}

// DownTrack returns the subscriber's down track of trackID, or nil.
func (s *Subscriber) DownTrack(trackID string) *DownTrack {
	s.dmu.Lock()
	defer s.dmu.Unlock()
	return s.down[trackID]
}

// RemoveDownTrack removes a track's transceiver; the change takes effect at
// the next offer.
func (s *Subscriber) RemoveDownTrack(trackID string) error {
	sender, ok := s.tracks[trackID]
	if !ok {
		return nil
	}
	delete(s.tracks, trackID)
	s.dmu.Lock()
	delete(s.down, trackID)
	s.dmu.Unlock()
	if err := s.pc.RemoveTrack(sender); err != nil && !errors.Is(err, webrtc.ErrConnectionClosed) {
		return err
	}
	return nil
}

// CreateOffer makes and applies a new local offer and returns its SDP.
func (s *Subscriber) CreateOffer() (string, error) {
	offer, err := s.createOffer(nil)
	if err != nil {
		return "", err
	}
	if err := s.pc.SetLocalDescription(offer); err != nil {
		return "", err
	}
	return withoutRTCPCandidates(s.pc.LocalDescription().SDP), nil
}

// createOffer is pion's CreateOffer, made to work when a transceiver has
// no codec left to offer. Its codec preferences (offerCodecs) were set
// while this connection had not negotiated the kind yet; the first answer
// then fixed pion's codecs for the kind to the answer's, and if the
// preferred codec is not among them pion refuses the whole offer ("RTPSender
// created with no codecs"), so that no change could be offered to this
// subscriber ever again. Such a transceiver offers what was negotiated
// instead; its down track binds as unsupported (DownTrack.Bind).
func (s *Subscriber) createOffer(opts *webrtc.OfferOptions) (webrtc.SessionDescription, error) {
	offer, err := s.pc.CreateOffer(opts)
	if err == nil {
		return offer, nil
	}
	reset := false
	for _, t := range s.pc.GetTransceivers() {
		if sender := t.Sender(); sender != nil && len(sender.GetParameters().Codecs) == 0 {
			if t.SetCodecPreferences(nil) == nil {
				reset = true
			}
		}
	}
	if !reset {
		return offer, err
	}
	return s.pc.CreateOffer(opts)
}

// SetAnswer applies the client's answer to the pending offer.
func (s *Subscriber) SetAnswer(sdp string) error {
	if s.pc.SignalingState() != webrtc.SignalingStateHaveLocalOffer {
		return errors.New("no subscriber offer is pending")
	}
	sections := -1
	if local := s.pc.PendingLocalDescription(); local != nil {
		if parsed, err := local.Unmarshal(); err == nil {
			sections = len(parsed.MediaDescriptions)
		}
	}
	if err := checkRemote(sdp, false, sections); err != nil {
		return fmt.Errorf("cannot apply answer: %w", err)
	}
	if err := s.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sdp}); err != nil {
		return fmt.Errorf("cannot apply answer: %w", err)
	}
	s.flushCandidates()
	s.twcc.Store(twccNegotiated(sdp))
	s.dataAnswered.Store(dataAccepted(sdp))
	return nil
}

// dataAccepted reports whether an answer keeps its data (application)
// section: SCTP starts, and the `data` channel will open.
func dataAccepted(answer string) bool {
	var d sdp.SessionDescription
	if d.UnmarshalString(answer) != nil {
		return false
	}
	for _, m := range d.MediaDescriptions {
		if m.MediaName.Media == "application" {
			_, bundleOnly := m.Attribute("bundle-only")
			return m.MediaName.Port.Value != 0 || bundleOnly
		}
	}
	return false
}

// SendData sends a text message on the `data` channel, or holds it until
// the channel opens (see dataqueue.go). msg must not be modified afterwards.
func (s *Subscriber) SendData(msg []byte) error { return s.data.send(s.dc, msg) }

// offerCodecs narrows what a down track's m-section offers to what it can
// be sent as: the source's codec (every fmtp variant, the subscriber
// picks), for audio Opus and RED too (RED is unwrapped or rewritten, see
// red.go), and their RTX. pion would offer every registered codec in each
// section; SDP is most of the signaling bytes of a call.
// withOtherCodecs appends to prefs every codec of all it lacks, in all's
// order.
func withOtherCodecs(prefs, all []webrtc.RTPCodecParameters) []webrtc.RTPCodecParameters {
	have := make(map[webrtc.PayloadType]bool, len(prefs))
	for _, c := range prefs {
		have[c.PayloadType] = true
	}
	for _, c := range all {
		if !have[c.PayloadType] {
			prefs = append(prefs, c)
		}
	}
	return prefs
}

func offerCodecs(all []webrtc.RTPCodecParameters, source webrtc.RTPCodecParameters) []webrtc.RTPCodecParameters {
	audio := strings.HasPrefix(strings.ToLower(source.MimeType), "audio/")
	kept := map[webrtc.PayloadType]bool{}
	var out []webrtc.RTPCodecParameters
	for _, c := range all {
		if strings.EqualFold(c.MimeType, source.MimeType) ||
			(audio && (strings.EqualFold(c.MimeType, webrtc.MimeTypeOpus) || strings.EqualFold(c.MimeType, MimeTypeRED))) {
			out = append(out, c)
			kept[c.PayloadType] = true
		}
	}
	for _, c := range all {
		if !strings.EqualFold(c.MimeType, "video/rtx") {
			continue
		}
		for _, p := range strings.Split(c.SDPFmtpLine, ";") {
			if apt, ok := strings.CutPrefix(strings.TrimSpace(p), "apt="); ok {
				if pt, err := strconv.Atoi(apt); err == nil && kept[webrtc.PayloadType(pt)] {
					out = append(out, c)
				}
			}
		}
	}
	return out
}

package sfu

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/internal/clock"
)

// This file is the subscriber connection of a client that offers (WHEP):
// the client's offer fixes the media sections once, so the server answers
// with one slot per receiving section and later swaps which down track
// feeds a slot (the RTCRtpSender.replaceTrack of the browser API) instead
// of renegotiating. The normal subscriber connection, where the server is
// the only offerer, is subscriber.go.

// slot is one media section of an answered offer: its sender stays, the
// down track feeding it changes. One RTCP reader per slot hands feedback to
// whichever down track is current.
type slot struct {
	kind   webrtc.RTPCodecType
	sender *webrtc.RTPSender
	mu     sync.Mutex
	cur    *DownTrack // the down track bound now (a placeholder while empty)
	empty  bool       // cur is the placeholder of idleSource
	cont   continuity // where the slot's stream stands, for the next track
}

// continuity is where a slot's outgoing stream stands: a track put into
// the slot continues its sequence numbers and timestamps. It must: the
// SSRC stays, and SRTP's replay check drops packets whose index falls
// behind what the client has seen, so a fresh random sequence number would
// be silently discarded half of the time.
type continuity struct {
	seq, rtxSeq uint16
	ts          uint32
	at          int64 // unix nanos when it was taken
	ok          bool
}

// handOff returns where d's stream stands (ok false if it sent nothing).
func (d *DownTrack) handOff() continuity {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.munger == nil {
		return continuity{}
	}
	seq, ts, ok := d.munger.Last()
	return continuity{seq: seq, ts: ts, rtxSeq: d.rtxSeq, at: clock.Nanos(), ok: ok}
}

// continueFrom makes d's stream start right after c; call before d is bound.
func (d *DownTrack) continueFrom(c continuity) {
	if !c.ok {
		return
	}
	adv := tsAdvance(clock.Nanos()-c.at, d.codec.ClockRate)
	d.mu.Lock()
	d.munger = NewMunger(d.codec.ClockRate, c.seq+1, c.ts+uint32(adv))
	d.rtxSeq = c.rtxSeq + 1
	d.mu.Unlock()
}

// takeOver records where the slot's current track left the stream and
// continues it in next.
func (sl *slot) takeOver(next *DownTrack) {
	sl.mu.Lock()
	prev := sl.cur
	sl.mu.Unlock()
	if c := prev.handOff(); c.ok {
		sl.mu.Lock()
		sl.cont = c
		sl.mu.Unlock()
	}
	sl.mu.Lock()
	c := sl.cont
	sl.mu.Unlock()
	next.continueFrom(c)
}

// AnswerOffer applies a client offer whose audio and video sections receive
// (WHEP) and returns the answer, with its candidates once gathered (at most
// wait). Each such section becomes a slot that SetSlot fills; until then a
// placeholder keeps it bound and silent. Call once, before any SetSlot.
func (s *Subscriber) AnswerOffer(offer string, wait time.Duration) (string, error) {
	if s.pc.SignalingState() != webrtc.SignalingStateStable || s.pc.RemoteDescription() != nil {
		return "", errors.New("the subscriber connection is already negotiated")
	}
	if err := checkRemote(offer, true, -1); err != nil {
		return "", fmt.Errorf("cannot apply offer: %w", err)
	}
	if err := s.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", fmt.Errorf("cannot apply offer: %w", err)
	}
	s.flushCandidates()
	receiving := receivingMIDs(offer)
	for _, t := range s.pc.GetTransceivers() {
		// A recvonly section (WHEP) is answered sendonly; a sendrecv one
		// is served too, and what the client sends is ignored.
		if t.Sender() != nil || t.Receiver() == nil || !receiving[t.Mid()] {
			continue
		}
		placeholder := NewDownTrack(newIdleSource(t.Kind(), offeredCodec(t)), "starling")
		// AddTrack reuses a transceiver the offer created that has no sender yet.
		sender, err := s.pc.AddTrack(placeholder)
		if err != nil {
			return "", fmt.Errorf("cannot add a %s sender: %w", t.Kind(), err)
		}
		sl := &slot{kind: t.Kind(), sender: sender, cur: placeholder, empty: true}
		s.slots = append(s.slots, sl)
		go sl.readRTCP()
	}
	if len(s.slots) == 0 {
		return "", errors.New("the offer has no audio or video section that receives")
	}
	answer, err := s.pc.CreateAnswer(nil)
	if err != nil {
		return "", fmt.Errorf("cannot answer offer: %w", err)
	}
	s.twcc.Store(twccNegotiated(offer))
	return s.setLocalGathered(answer, wait)
}

// receivingMIDs lists the offer's audio and video sections that may
// receive: recvonly or sendrecv, and not stopped.
func receivingMIDs(offer string) map[string]bool {
	var sd sdp.SessionDescription
	out := map[string]bool{}
	if sd.UnmarshalString(offer) != nil {
		return out
	}
	for _, md := range sd.MediaDescriptions {
		if k := md.MediaName.Media; k != "audio" && k != "video" {
			continue
		}
		mid, _ := md.Attribute("mid")
		_, bundleOnly := md.Attribute("bundle-only")
		if mid == "" || (md.MediaName.Port.Value == 0 && !bundleOnly) {
			continue
		}
		receives := true
		for _, a := range md.Attributes {
			if a.Key == "sendonly" || a.Key == "inactive" {
				receives = false
			}
		}
		out[mid] = receives
	}
	return out
}

// offeredCodec is the placeholder's codec: the first one the client offers
// for the section (Opus or VP8 if it lists none that pion kept).
func offeredCodec(t *webrtc.RTPTransceiver) webrtc.RTPCodecParameters {
	for _, c := range t.Receiver().GetParameters().Codecs {
		if !strings.EqualFold(c.MimeType, "video/rtx") && !strings.EqualFold(c.MimeType, MimeTypeRED) {
			return c
		}
	}
	if t.Kind() == webrtc.RTPCodecTypeAudio {
		return webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}}
	}
	return webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}}
}

// Slots reports how many audio and video slots the answered offer has.
func (s *Subscriber) Slots() (audio, video int) {
	for _, sl := range s.slots {
		if sl.kind == webrtc.RTPCodecTypeAudio {
			audio++
		} else {
			video++
		}
	}
	return audio, video
}

// ErrNoSlot says the client's offer has no free section for a track's kind.
var ErrNoSlot = errors.New("no receiving media section of this kind in the offer")

// SetSlot makes d feed the first empty slot of its kind, or the first slot
// of its kind when none is empty (replacing what fed it, which the caller
// then stops). It returns the id of the down track replaced ("" for none).
func (s *Subscriber) SetSlot(d *DownTrack) (replaced string, err error) {
	var target *slot
	for _, sl := range s.slots {
		if sl.kind != d.Kind() {
			continue
		}
		sl.mu.Lock()
		empty := sl.empty
		sl.mu.Unlock()
		if target == nil || (empty && !target.isEmpty()) {
			target = sl
		}
	}
	if target == nil {
		return "", ErrNoSlot
	}
	d.setTransport(&s.connected)
	if s.bw != nil {
		d.mu.Lock()
		d.fallback = s.fallback
		d.mu.Unlock()
	}
	target.takeOver(d)
	// Bind the new track before it becomes current: RTCP for the slot keeps
	// going to the old one until then.
	if err := target.sender.ReplaceTrack(d); err != nil {
		return "", err
	}
	d.mu.Lock()
	d.sender = target.sender
	d.mu.Unlock()
	target.mu.Lock()
	old, wasEmpty := target.cur, target.empty
	target.cur, target.empty = d, false
	target.mu.Unlock()
	if wasEmpty {
		old.Close() // the placeholder
	}
	s.dmu.Lock()
	if !wasEmpty {
		delete(s.down, old.ID())
		replaced = old.ID()
	}
	s.down[d.ID()] = d
	s.dmu.Unlock()
	if s.connected.Load() {
		d.transportReady()
	}
	return replaced, nil
}

// ClearSlot empties the slot d feeds, if any: the section stays, silent,
// until SetSlot fills it again.
func (s *Subscriber) ClearSlot(trackID string) {
	for _, sl := range s.slots {
		sl.mu.Lock()
		mine := !sl.empty && sl.cur.ID() == trackID
		sl.mu.Unlock()
		if !mine {
			continue
		}
		placeholder := NewDownTrack(newIdleSource(sl.kind, sl.cur.codec), "starling")
		sl.takeOver(placeholder)
		if err := sl.sender.ReplaceTrack(placeholder); err != nil {
			continue // the connection is closing
		}
		sl.mu.Lock()
		sl.cur, sl.empty = placeholder, true
		sl.mu.Unlock()
	}
	s.dmu.Lock()
	delete(s.down, trackID)
	s.dmu.Unlock()
}

// Answering reports whether this connection answered the client's offer
// (AnswerOffer): its tracks change by slot, never by renegotiation.
func (s *Subscriber) Answering() bool { return len(s.slots) > 0 }

func (sl *slot) isEmpty() bool {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	return sl.empty
}

// readRTCP hands the slot's RTCP to its current down track until the
// sender stops.
func (sl *slot) readRTCP() {
	for {
		pkts, _, err := sl.sender.ReadRTCP()
		if err != nil {
			return
		}
		sl.mu.Lock()
		d := sl.cur
		sl.mu.Unlock()
		d.handleRTCP(pkts)
	}
}

// setLocalGathered applies a local description and returns it once ICE
// gathering is complete or wait has passed: clients that offer over HTTP
// (WHIP, WHEP) get no candidates from the server afterwards.
func (p *peer) setLocalGathered(desc webrtc.SessionDescription, wait time.Duration) (string, error) {
	gathered := webrtc.GatheringCompletePromise(p.pc)
	if err := p.pc.SetLocalDescription(desc); err != nil {
		return "", fmt.Errorf("cannot apply answer: %w", err)
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-gathered:
	case <-t.C:
	}
	return withoutRTCPCandidates(p.pc.LocalDescription().SDP), nil
}

// idleSource is the source of a placeholder down track: a track of the
// right kind that never sends, so an empty slot stays bound.
type idleSource struct {
	kind  webrtc.RTPCodecType
	codec webrtc.RTPCodecParameters
	id    string
}

func newIdleSource(kind webrtc.RTPCodecType, codec webrtc.RTPCodecParameters) *idleSource {
	return &idleSource{kind: kind, codec: codec, id: fmt.Sprintf("idle-%s-%08x", kind, randUint32())}
}

func (i *idleSource) ID() string                       { return i.id }
func (i *idleSource) Kind() webrtc.RTPCodecType        { return i.kind }
func (i *idleSource) Codec() webrtc.RTPCodecParameters { return i.codec }
func (i *idleSource) AddSink(Sink)                     {}
func (i *idleSource) RemoveSink(Sink)                  {}
func (i *idleSource) RequestKeyframe(int8)             {}
func (i *idleSource) Layers() uint8                    { return 0 }
func (i *idleSource) LiveLayers() uint8                { return 0 }
func (i *idleSource) PacketTime() int64                { return 0 }

// HandleOfferGathered is HandleOffer for a client that gets no trickled
// candidates (WHIP): the answer carries them, once gathered or after wait.
func (p *Publisher) HandleOfferGathered(sdp string, wait time.Duration) (string, error) {
	p.negMu.Lock()
	defer p.negMu.Unlock()
	answer, err := p.answerOffer(sdp)
	if err != nil {
		return "", err
	}
	local, err := p.setLocalGathered(answer, wait)
	return receiveOnly(local), err
}

// RestartICE applies an ICE restart asked by the client of a connection it
// offered (WHIP and WHEP PATCH): its last offer again with the new
// credentials, answered with new local ones. It returns the new local
// description once gathered (at most wait).
func (p *peer) RestartICE(ufrag, pwd string, wait time.Duration) (string, error) {
	remote := p.pc.RemoteDescription()
	if remote == nil || p.pc.SignalingState() != webrtc.SignalingStateStable {
		return "", errors.New("the connection is not negotiated")
	}
	return p.restartWith(remote.SDP, ufrag, pwd, wait)
}

// restartWith is RestartICE from the offer given (without its new
// credentials).
func (p *peer) restartWith(last, ufrag, pwd string, wait time.Duration) (string, error) {
	offer, err := withICECredentials(last, ufrag, pwd)
	if err != nil {
		return "", err
	}
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", fmt.Errorf("cannot restart ICE: %w", err)
	}
	answer, err := p.pc.CreateAnswer(nil)
	if err != nil {
		return "", fmt.Errorf("cannot answer the ICE restart: %w", err)
	}
	return p.setLocalGathered(answer, wait)
}

// RemoteICE returns the client's current ICE ufrag and password.
func (p *peer) RemoteICE() (ufrag, pwd string) {
	remote := p.pc.RemoteDescription()
	if remote == nil {
		return "", ""
	}
	return iceCredentials(remote.SDP)
}

// withICECredentials rewrites an SDP's ice-ufrag and ice-pwd (everywhere
// they appear) and drops its candidates, which belong to the old ones.
func withICECredentials(raw, ufrag, pwd string) (string, error) {
	var s sdp.SessionDescription
	if err := s.UnmarshalString(raw); err != nil {
		return "", err
	}
	rewrite := func(attrs []sdp.Attribute) []sdp.Attribute {
		out := attrs[:0]
		for _, a := range attrs {
			switch a.Key {
			case "ice-ufrag":
				a.Value = ufrag
			case "ice-pwd":
				a.Value = pwd
			case "candidate", "end-of-candidates":
				continue
			}
			out = append(out, a)
		}
		return out
	}
	s.Attributes = rewrite(s.Attributes)
	for _, md := range s.MediaDescriptions {
		md.Attributes = rewrite(md.Attributes)
	}
	out, err := s.Marshal()
	return string(out), err
}

// iceCredentials reads the first ice-ufrag and ice-pwd of an SDP.
func iceCredentials(raw string) (ufrag, pwd string) {
	for _, line := range strings.Split(raw, "\n") {
		line = strings.TrimSpace(line)
		if v, ok := strings.CutPrefix(line, "a=ice-ufrag:"); ok && ufrag == "" {
			ufrag = v
		}
		if v, ok := strings.CutPrefix(line, "a=ice-pwd:"); ok && pwd == "" {
			pwd = v
		}
	}
	return ufrag, pwd
}

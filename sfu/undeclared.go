package sfu

import (
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/pion/interceptor"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// A publisher offer may leave out a=ssrc lines: RFC 8843 and JSEP tell a
// receiver to place a stream by the MID header extension it carries. pion
// (v4.2) places a stream it was not told of only in an offer's only media
// section, by its rid (simulcast), or, when the MID extension is not
// negotiated, by payload type. A stream that carries a MID and no rid it
// reads for 10 packets looking for a rid, then gives up: an offer with
// audio and video sections and no a=ssrc lines published nothing.
//
// So the publisher connection watches for that: midWatch, an interceptor of
// its own, notes the MID of each stream pion binds while it looks for a
// rid, and when pion unbinds such a stream (it gave up), the publisher
// declares the SSRC in the section of that MID (an a=ssrc line) and applies
// the client's offer again with it, answering it locally: the answer does
// not change (same credentials, fingerprint, codecs), so the client is
// told nothing, and pion starts a receiver for the now declared SSRC, which
// reads the stream from where it was left. Later offers from the client
// get the same line while their section still declares nothing.

// midWatch is the interceptor that tells the publisher which MID a stream
// pion could not place carried.
type midWatch struct {
	interceptor.NoOp
	armed    atomic.Bool // the current offer has a sending section without a=ssrc or rid
	mu       sync.Mutex
	mids     map[uint32]seenStream // SSRC → the MID its packets carry
	onGiveUp func(ssrc uint32, mid string, pt uint8)
}

// seenStream is what midWatch read of a stream: its MID and payload type.
type seenStream struct {
	mid string
	pt  uint8
}

// NewInterceptor returns w itself: each publisher connection has its own
// API, so its own midWatch.
func (w *midWatch) NewInterceptor(string) (interceptor.Interceptor, error) { return w, nil }

// BindRemoteStream reads the MID of a stream's packets until it has one.
// While no section of the offer lacks a=ssrc lines (browsers declare their
// SSRCs) streams pass untouched.
func (w *midWatch) BindRemoteStream(info *interceptor.StreamInfo, r interceptor.RTPReader) interceptor.RTPReader {
	if !w.armed.Load() {
		return r
	}
	id := uint8(0)
	for _, e := range info.RTPHeaderExtensions {
		if e.URI == sdp.SDESMidURI && e.ID > 0 && e.ID < 256 {
			id = uint8(e.ID)
		}
	}
	if id == 0 {
		return r
	}
	ssrc := info.SSRC
	var found atomic.Bool
	return interceptor.RTPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		n, a, err := r.Read(b, a)
		if err == nil && !found.Load() {
			if mid := rtpExtension(b[:n], id); len(mid) > 0 {
				found.Store(true)
				w.mu.Lock()
				if w.mids == nil {
					w.mids = map[uint32]seenStream{}
				}
				w.mids[ssrc] = seenStream{mid: string(mid), pt: b[1] & 0x7f}
				w.mu.Unlock()
			}
		}
		return n, a, err
	})
}

// UnbindRemoteStream hands a stream whose MID it read to the publisher,
// which acts only if that section declares no SSRC (pion gave up on it).
func (w *midWatch) UnbindRemoteStream(info *interceptor.StreamInfo) {
	w.mu.Lock()
	seen, ok := w.mids[info.SSRC]
	delete(w.mids, info.SSRC)
	w.mu.Unlock()
	if ok && w.onGiveUp != nil {
		// pion calls this on the goroutine that probed the stream; the
		// publisher takes its negotiation lock, which an offer being
		// applied holds.
		go w.onGiveUp(info.SSRC, seen.mid, seen.pt)
	}
}

// rtpExtension returns the value of header extension id in an RTP packet
// (RFC 8285, one- and two-byte forms), without allocating.
func rtpExtension(b []byte, id uint8) []byte {
	if len(b) < 12 || b[0]>>6 != 2 || b[0]&0x10 == 0 {
		return nil
	}
	off := 12 + 4*int(b[0]&0x0f)
	if len(b) < off+4 {
		return nil
	}
	profile := uint16(b[off])<<8 | uint16(b[off+1])
	end := off + 4 + 4*(int(b[off+2])<<8|int(b[off+3]))
	if len(b) < end {
		return nil
	}
	for i := off + 4; i < end; {
		switch {
		case profile == 0xBEDE:
			if b[i] == 0 { // padding
				i++
				continue
			}
			eid, l := b[i]>>4, int(b[i]&0x0f)+1
			if eid == 15 || i+1+l > end {
				return nil
			}
			if eid == id {
				return b[i+1 : i+1+l]
			}
			i += 1 + l
		case profile&0xfff0 == 0x1000:
			if b[i] == 0 {
				i++
				continue
			}
			if i+2 > end {
				return nil
			}
			eid, l := b[i], int(b[i+1])
			if i+2+l > end {
				return nil
			}
			if eid == id {
				return b[i+2 : i+2+l]
			}
			i += 2 + l
		default:
			return nil
		}
	}
	return nil
}

// undeclaredMIDs lists the mids of an offer's audio and video sections
// that send (sendrecv or sendonly, port not 0 unless bundle-only) with
// neither an a=ssrc line nor a rid.
func undeclaredMIDs(raw string) map[string]bool {
	var s sdp.SessionDescription
	if err := s.UnmarshalString(raw); err != nil {
		return nil
	}
	out := map[string]bool{}
	for _, md := range s.MediaDescriptions {
		if k := md.MediaName.Media; k != "audio" && k != "video" {
			continue
		}
		if _, bundleOnly := md.Attribute("bundle-only"); md.MediaName.Port.Value == 0 && !bundleOnly {
			continue
		}
		mid, sends, declared := "", true, false
		for _, a := range md.Attributes {
			switch a.Key {
			case "mid":
				mid = a.Value
			case "recvonly", "inactive":
				sends = false
			case "ssrc", "rid":
				declared = true
			}
		}
		if mid != "" && sends && !declared {
			out[mid] = true
		}
	}
	return out
}

// declareSSRCs adds an a=ssrc line (with a cname, RFC 7022) for each SSRC
// learned by MID to that section of an offer, where the section still
// declares none.
func declareSSRCs(raw string, learned map[string]uint32) string {
	if len(learned) == 0 {
		return raw
	}
	open := undeclaredMIDs(raw)
	var b strings.Builder
	mid := ""
	flush := func() {
		if ssrc, ok := learned[mid]; ok && open[mid] {
			b.WriteString("a=ssrc:" + strconv.FormatUint(uint64(ssrc), 10) + " cname:starling-mid-" + mid + "\r\n")
		}
	}
	for _, l := range strings.SplitAfter(raw, "\n") {
		t := strings.TrimRight(l, "\r\n")
		if strings.HasPrefix(t, "m=") {
			flush()
			mid = ""
		}
		if v, ok := strings.CutPrefix(t, "a=mid:"); ok {
			mid = v
		}
		if t == "" {
			continue
		}
		b.WriteString(t + "\r\n")
	}
	flush()
	return b.String()
}

// adopt declares a stream that pion gave up on in the section of its MID
// and applies the client's last offer again with it (see the top of this
// file). A retransmission (RTX) or FEC stream is left alone: without a=ssrc
// lines it has no group naming its media stream, and taken for the media it
// would replace it.
func (p *Publisher) adopt(ssrc uint32, mid string, pt uint8) {
	p.negMu.Lock()
	defer p.negMu.Unlock()
	if p.pc.ConnectionState() == webrtc.PeerConnectionStateClosed || p.offer == "" || !undeclaredMIDs(p.offer)[mid] {
		return
	}
	if repairCodec(p.offer, mid, pt) {
		return
	}
	if p.learned[mid] == ssrc {
		return
	}
	if p.learned == nil {
		p.learned = map[string]uint32{}
	}
	p.learned[mid] = ssrc
	if p.pc.SignalingState() != webrtc.SignalingStateStable {
		return // the next offer carries it
	}
	offer := ridsForPion(msidForPion(declareSSRCs(p.offer, p.learned)))
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return
	}
	answer, err := p.pc.CreateAnswer(nil)
	if err != nil {
		return
	}
	_ = p.pc.SetLocalDescription(answer)
}

// repairCodec reports whether payload type pt of the section of mid is a
// repair format (rtx, ulpfec, flexfec), not media.
func repairCodec(raw, mid string, pt uint8) bool {
	var s sdp.SessionDescription
	if err := s.UnmarshalString(raw); err != nil {
		return false
	}
	prefix := strconv.Itoa(int(pt)) + " "
	for _, md := range s.MediaDescriptions {
		if m, _ := md.Attribute("mid"); m != mid {
			continue
		}
		for _, a := range md.Attributes {
			if v, ok := strings.CutPrefix(a.Value, prefix); ok && a.Key == "rtpmap" {
				name, _, _ := strings.Cut(strings.ToLower(v), "/")
				return name == "rtx" || name == "ulpfec" || strings.HasPrefix(name, "flexfec")
			}
		}
	}
	return false
}

// placed notes the SSRC of a stream pion placed by itself in a section that
// declares none: the offer's only section, or (without the MID extension)
// the first section of its payload type. pion gives such a stream a
// transceiver of its own and stops its receiver at the next description
// that does not name its SSRC (an ICE restart, a new offer): GStreamer
// 1.22's video stopped at a WHIP ICE restart. Declared from then on (a
// second receiver pion starts for it in the section is ignored, a
// duplicate layer), it goes on.
func (p *Publisher) placed(ssrc uint32, kind webrtc.RTPCodecType, pt uint8, r *webrtc.RTPReceiver) {
	p.negMu.Lock()
	defer p.negMu.Unlock()
	if p.offer == "" {
		return
	}
	open := undeclaredMIDs(p.offer)
	if len(open) == 0 {
		return
	}
	mid := ""
	for _, t := range p.pc.GetTransceivers() {
		if t.Receiver() == r {
			mid = t.Mid()
		}
	}
	if mid == "" {
		mid = sectionOf(p.offer, kind.String(), pt)
	}
	if !open[mid] || p.learned[mid] != 0 || repairCodec(p.offer, mid, pt) {
		return
	}
	if p.learned == nil {
		p.learned = map[string]uint32{}
	}
	p.learned[mid] = ssrc
}

// sectionOf is the mid of the first section of kind whose formats list pt,
// as pion places a stream by payload type.
func sectionOf(raw, kind string, pt uint8) string {
	var s sdp.SessionDescription
	if err := s.UnmarshalString(raw); err != nil {
		return ""
	}
	want := strconv.Itoa(int(pt))
	for _, md := range s.MediaDescriptions {
		if md.MediaName.Media != kind {
			continue
		}
		for _, f := range md.MediaName.Formats {
			if f == want {
				return midOf(md)
			}
		}
	}
	return ""
}

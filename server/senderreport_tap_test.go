package server_test

// The tap TestSenderReportsMapLikeThePublisher (senderreport_test.go)
// watches a client's RTP and sender reports through.

import (
	"encoding/binary"
	"sync"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// srTap records, below pion's interceptors, the RTP a client sends or
// receives (by a packet key carried in the payload) and the sender reports
// that go with it.
type srTap struct {
	delay time.Duration // holds back outgoing video (a slower path than audio's)
	// exact, on a publisher's tap, rewrites its outgoing sender reports
	// to the exact mapping of its media clock (srPublisher's timestamps
	// follow the wall clock from this instant): pion's report takes the
	// last packet's write time, and a publisher stalled between stamping
	// and writing would send a report some ms off, an error the test
	// would then blame on the SFU.
	exact   time.Time
	layerOf map[uint32]uint64 // ssrc -> kind<<8 | layer, from the packet keys
	queue   chan srDelayed
	mu      sync.Mutex
	packets map[uint64]srPacket // by payload key
	reports map[uint32][]srReport
}

type srDelayed struct {
	due time.Time
	w   interceptor.RTPWriter
	h   rtp.Header
	p   []byte
}

// run writes held-back packets in order once due; ends when queue closes.
func (s *srTap) run() {
	for d := range s.queue {
		time.Sleep(time.Until(d.due))
		_, _ = d.w.Write(&d.h, d.p, nil)
	}
}

type srPacket struct {
	ssrc uint32
	ts   uint32
	at   time.Time
}

type srReport struct {
	ntp uint64
	rtp uint32
	at  time.Time
}

func newSRTap() *srTap {
	return &srTap{packets: map[uint64]srPacket{}, reports: map[uint32][]srReport{}, layerOf: map[uint32]uint64{}}
}

func (s *srTap) NewInterceptor(string) (interceptor.Interceptor, error) { return &srTapConn{s: s}, nil }

type srTapConn struct {
	interceptor.NoOp
	s *srTap
}

// srKey is the last 8 bytes of a payload: the sender's packet key.
func srKey(payload []byte) (uint64, bool) {
	if len(payload) < 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(payload[len(payload)-8:]), true
}

func (s *srTap) packet(h *rtp.Header, payload []byte) {
	if k, ok := srKey(payload); ok && !h.Padding {
		s.mu.Lock()
		if _, seen := s.packets[k]; !seen { // retransmissions keep the first arrival
			s.packets[k] = srPacket{ssrc: h.SSRC, ts: h.Timestamp, at: time.Now()}
		}
		s.layerOf[h.SSRC] = k >> 48
		s.mu.Unlock()
	}
}

func (s *srTap) rtcp(pkts []rtcp.Packet) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range pkts {
		if sr, ok := p.(*rtcp.SenderReport); ok {
			s.reports[sr.SSRC] = append(s.reports[sr.SSRC], srReport{ntp: sr.NTPTime, rtp: sr.RTPTime, at: now})
		}
	}
}

func (c *srTapConn) BindLocalStream(info *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	delay := c.s.delay > 0 && isVideoMime(info.MimeType)
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		c.s.packet(h, payload)
		if delay {
			c.s.queue <- srDelayed{due: time.Now().Add(c.s.delay), w: w, h: h.Clone(), p: append([]byte(nil), payload...)}
			return len(payload), nil
		}
		return w.Write(h, payload, a)
	})
}

func (c *srTapConn) BindRemoteStream(_ *interceptor.StreamInfo, r interceptor.RTPReader) interceptor.RTPReader {
	return interceptor.RTPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		n, attr, err := r.Read(b, a)
		if err == nil {
			var h rtp.Header
			if hl, herr := h.Unmarshal(b[:n]); herr == nil {
				end := n
				if h.Padding && n > hl {
					end -= int(b[n-1])
				}
				if end > hl {
					c.s.packet(&h, b[hl:end])
				}
			}
		}
		return n, attr, err
	})
}

func (c *srTapConn) BindRTCPWriter(w interceptor.RTCPWriter) interceptor.RTCPWriter {
	return interceptor.RTCPWriterFunc(func(pkts []rtcp.Packet, a interceptor.Attributes) (int, error) {
		c.s.exactReports(pkts)
		c.s.rtcp(pkts)
		return w.Write(pkts, a)
	})
}

func (c *srTapConn) BindRTCPReader(r interceptor.RTCPReader) interceptor.RTCPReader {
	return interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		n, attr, err := r.Read(b, a)
		if err == nil {
			if pkts, perr := rtcp.Unmarshal(b[:n]); perr == nil {
				c.s.rtcp(pkts)
			}
		}
		return n, attr, err
	})
}

// exactReports sets each sender report's RTP time to what the publisher's
// media clock read at the report's NTP time.
func (s *srTap) exactReports(pkts []rtcp.Packet) {
	if s.exact.IsZero() {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range pkts {
		sr, ok := p.(*rtcp.SenderReport)
		if !ok {
			continue
		}
		kl, ok := s.layerOf[sr.SSRC]
		if !ok {
			continue
		}
		// pion's NTP time is the wall clock (seconds since 1900)
		at := time.Unix(int64(sr.NTPTime>>32)-2208988800, int64((sr.NTPTime&0xffffffff)*1e9>>32))
		base, rate := uint32(srAudioBase), 48000.0
		if kl>>8 == srVideoKey>>56 {
			base, rate = srVideoBases[kl&0xff], 90000
		}
		sr.RTPTime = base + uint32(at.Sub(s.exact).Seconds()*rate)
	}
}

// ntpSeconds converts a 64-bit NTP timestamp to seconds.
func ntpSeconds(ntp uint64) float64 {
	return float64(ntp>>32) + float64(ntp&0xffffffff)/(1<<32)
}

// wallOf maps an RTP timestamp to NTP seconds through the report of ssrc
// nearest to at; ok=false when ssrc has no report yet.
func (s *srTap) wallOf(ssrc, ts uint32, at time.Time, clock float64) (float64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	reps := s.reports[ssrc]
	if len(reps) == 0 {
		return 0, false
	}
	best := reps[0]
	for _, r := range reps[1:] {
		if r.at.Sub(at).Abs() < best.at.Sub(at).Abs() {
			best = r
		}
	}
	return ntpSeconds(best.ntp) + float64(int32(ts-best.rtp))/clock, true
}

// firstPacket is the earliest packet of a kind (srAudioKey, srVideoKey)
// and layer (-1: any) that arrived after after: when, and its SSRC.
func (s *srTap) firstPacket(kind uint64, layer int, after time.Time) (time.Time, uint32, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var at time.Time
	var ssrc uint32
	for k, p := range s.packets {
		if k>>56 != kind>>56 || (layer >= 0 && int(k>>48&0xff) != layer) || !p.at.After(after) {
			continue
		}
		if at.IsZero() || p.at.Before(at) {
			at, ssrc = p.at, p.ssrc
		}
	}
	return at, ssrc, !at.IsZero()
}

// reportsAfter lists when the reports of ssrc that were made (by their
// NTP time: the SFU's wall clock, this machine's) after after came.
func (s *srTap) reportsAfter(ssrc uint32, after time.Time) []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []time.Time
	for _, r := range s.reports[ssrc] {
		if ntpSeconds(r.ntp)-2208988800 > float64(after.UnixNano())/1e9 {
			out = append(out, r.at)
		}
	}
	return out
}

// packetsAfter counts the packets that arrived after after.
func (s *srTap) packetsAfter(after time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, p := range s.packets {
		if p.at.After(after) {
			n++
		}
	}
	return n
}

// layerCounts counts the packets since after by kind<<8 | layer, for a
// failure's message.
func (s *srTap) layerCounts(after time.Time) map[uint64]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[uint64]int{}
	for k, p := range s.packets {
		if p.at.After(after) {
			out[k>>48]++
		}
	}
	return out
}

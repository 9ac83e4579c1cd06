package sfu

import (
	"sync"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
)

// Retransmission limits for a subscriber's NACKs. pion's NACK responder
// resends a packet every time it is asked, if the last resend is older than
// the RTT; a receiver that keeps asking (pion's own NACK generator does not
// notice packets repaired by RTX and asks again every 100 ms for ~5 s)
// would get ~45 copies of each lost packet, and a congested subscriber
// would drown in them.
const (
	// maxResends: a packet is retransmitted at most this many times.
	maxResends = 3
	// maxResendAge: a packet first asked for longer ago than this is not
	// retransmitted any more: too late to be played.
	maxResendAge = time.Second
	nackHistory  = 2048 // requests remembered per stream (power of two)
)

// nackFilterFactory makes nackFilter, which trims the NACKs a subscriber
// sends before pion's NACK responder reads them: registered before the
// responder, it is the inner reader, and the responder sees the packets it
// parsed (the interceptor attributes cache them).
type nackFilterFactory struct {
	now func() time.Time
}

func (f *nackFilterFactory) NewInterceptor(string) (interceptor.Interceptor, error) {
	now := f.now
	if now == nil {
		now = time.Now
	}
	return &nackFilter{now: now, streams: map[uint32]*nackRequests{}}, nil
}

type nackFilter struct {
	interceptor.NoOp
	now     func() time.Time
	mu      sync.Mutex
	streams map[uint32]*nackRequests
}

type nackRequests [nackHistory]struct {
	seq   uint16
	count uint8
	valid bool
	first int64 // unix nanos of the first request
}

func (f *nackFilter) BindRTCPReader(reader interceptor.RTCPReader) interceptor.RTCPReader {
	return interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		n, attr, err := reader.Read(b, a)
		if err != nil {
			return n, attr, err
		}
		if attr == nil {
			attr = make(interceptor.Attributes)
		}
		pkts, perr := attr.GetRTCPPackets(b[:n])
		if perr != nil {
			return n, attr, nil // the responder reports it
		}
		for _, p := range pkts {
			if nack, ok := p.(*rtcp.TransportLayerNack); ok {
				counters.nacksReceived.Add(nackedCount(nack))
				f.trim(nack)
			}
		}
		return n, attr, nil
	})
}

// BindRTCPWriter counts the NACKs pion's generator sends to publishers: it
// writes through this (inner) writer.
func (f *nackFilter) BindRTCPWriter(writer interceptor.RTCPWriter) interceptor.RTCPWriter {
	return interceptor.RTCPWriterFunc(func(pkts []rtcp.Packet, a interceptor.Attributes) (int, error) {
		for _, p := range pkts {
			if nack, ok := p.(*rtcp.TransportLayerNack); ok {
				counters.nacksSent.Add(nackedCount(nack))
			}
		}
		return writer.Write(pkts, a)
	})
}

func (f *nackFilter) UnbindLocalStream(info *interceptor.StreamInfo) {
	f.mu.Lock()
	delete(f.streams, info.SSRC)
	f.mu.Unlock()
}

// trim drops from a NACK the packets already asked for maxResends times or
// first asked for more than maxResendAge ago.
func (f *nackFilter) trim(nack *rtcp.TransportLayerNack) {
	now := f.now().UnixNano()
	f.mu.Lock()
	defer f.mu.Unlock()
	reqs := f.streams[nack.MediaSSRC]
	if reqs == nil {
		reqs = &nackRequests{}
		f.streams[nack.MediaSSRC] = reqs
	}
	var keep []uint16
	for _, pair := range nack.Nacks {
		pair.Range(func(seq uint16) bool {
			r := &reqs[seq&(nackHistory-1)]
			if !r.valid || r.seq != seq || now-r.first > int64(10*maxResendAge) {
				r.seq, r.count, r.valid, r.first = seq, 0, true, now // a new request (or the slot's old tenant expired)
			}
			if r.count < maxResends && now-r.first <= int64(maxResendAge) {
				r.count++
				keep = append(keep, seq)
			}
			return true
		})
	}
	nack.Nacks = rtcp.NackPairsFromSequenceNumbers(keep)
}

package sfu

import (
	"encoding/binary"
	"strings"
	"sync/atomic"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
)

// twccSeqFactory makes, per peer connection, the interceptor that gives each
// video packet sent a transport-wide sequence number (the TWCC header
// extension the subscriber's feedback refers to). pion's equivalent
// marshals a new 2-byte slice for every packet and numbers audio too.
//
// Audio is left out of send-side congestion control: it has no layers to
// choose, and pion's per-packet work for it (the sequence number, the
// estimator's send history, then parsing the feedback) was a fifth of the
// server's CPU in an audio room, more than SRTP. The estimate then comes
// from video packets alone, which are almost all of the bytes, and
// audio-only subscribers send no feedback at all. rtxEstimator.AddStream
// keeps audio out of the estimator likewise.
type twccSeqFactory struct{}

func (twccSeqFactory) NewInterceptor(string) (interceptor.Interceptor, error) {
	return &twccSeq{}, nil
}

type twccSeq struct {
	interceptor.NoOp
	next atomic.Uint32
}

func (t *twccSeq) BindLocalStream(info *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	if isAudio(info) {
		return w
	}
	var id uint8
	for _, e := range info.RTPHeaderExtensions {
		if e.URI == sdp.TransportCCURI && e.ID > 0 && e.ID < 256 {
			id = uint8(e.ID)
			break
		}
	}
	if id == 0 {
		return w
	}
	// One buffer per stream: a down track writes from one goroutine, and
	// the header is marshalled before Write returns.
	buf := make([]byte, 2)
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		binary.BigEndian.PutUint16(buf, uint16(t.next.Add(1)-1))
		if err := h.SetExtension(id, buf); err != nil {
			return 0, err
		}
		return w.Write(h, payload, a)
	})
}

func isAudio(info *interceptor.StreamInfo) bool {
	return len(info.MimeType) >= 6 && strings.EqualFold(info.MimeType[:6], "audio/")
}

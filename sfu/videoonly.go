package sfu

import (
	"strings"

	"github.com/pion/interceptor"
)

// Audio is left out of send-side congestion control: it has no layers to
// choose, and pion's per-packet work for it (a transport-wide sequence
// number on each packet, the estimator's send history, then parsing the
// feedback) was a fifth of the server's CPU in an audio room, more than
// SRTP. The estimate then comes from video packets alone, which are almost
// all of the bytes, and audio-only subscribers send no feedback at all.
//
// videoOnly wraps an interceptor factory so that its interceptors ignore
// audio streams; rtxEstimator.AddStream does the same for the estimator.
type videoOnly struct{ interceptor.Factory }

func (f videoOnly) NewInterceptor(id string) (interceptor.Interceptor, error) {
	i, err := f.Factory.NewInterceptor(id)
	if err != nil {
		return nil, err
	}
	return videoOnlyInterceptor{i}, nil
}

type videoOnlyInterceptor struct{ interceptor.Interceptor }

func (i videoOnlyInterceptor) BindLocalStream(info *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	if isAudio(info) {
		return w
	}
	return i.Interceptor.BindLocalStream(info, w)
}

func (i videoOnlyInterceptor) UnbindLocalStream(info *interceptor.StreamInfo) {
	if !isAudio(info) {
		i.Interceptor.UnbindLocalStream(info)
	}
}

func isAudio(info *interceptor.StreamInfo) bool {
	return len(info.MimeType) >= 6 && strings.EqualFold(info.MimeType[:6], "audio/")
}

package sfu

import (
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// TestRequestKeyframeCoalesces: many concurrent requests for a layer become
// one PLI per keyframeInterval; other layers have their own window.
func TestRequestKeyframeCoalesces(t *testing.T) {
	var plis [MaxLayers]atomic.Int32
	r := NewReceiver("TR_kf", vp8Codec, webrtc.RTPCodecTypeVideo, func(pkts []rtcp.Packet) error {
		for _, p := range pkts {
			if pli, ok := p.(*rtcp.PictureLossIndication); ok {
				plis[pli.MediaSSRC-100].Add(1)
			}
		}
		return nil
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	for i := range r.layer {
		r.layer[i] = &layer{idx: int8(i), ssrc: uint32(100 + i)}
	}
	burst := func(layer int8) {
		var wg sync.WaitGroup
		for range 20 {
			wg.Add(1)
			go func() { defer wg.Done(); r.RequestKeyframe(layer) }()
		}
		wg.Wait()
	}
	burst(0)
	if n := plis[0].Load(); n != 1 {
		t.Fatalf("20 concurrent requests sent %d PLIs, want 1", n)
	}
	burst(1)
	if plis[1].Load() != 1 || plis[0].Load() != 1 {
		t.Fatalf("layer 1 has its own window: PLIs %d/%d, want 1/1", plis[0].Load(), plis[1].Load())
	}
	burst(-1) // every layer: 0 and 1 are still throttled, 2 is asked
	if plis[0].Load() != 1 || plis[1].Load() != 1 || plis[2].Load() != 1 {
		t.Fatalf("request for every layer: PLIs %d/%d/%d, want 1/1/1", plis[0].Load(), plis[1].Load(), plis[2].Load())
	}
	time.Sleep(keyframeInterval + 10*time.Millisecond)
	burst(0)
	if n := plis[0].Load(); n != 2 {
		t.Fatalf("after the window: %d PLIs in total, want 2", n)
	}
}

// TestRequestKeyframeAudioIgnored: keyframe requests for audio send nothing.
func TestRequestKeyframeAudioIgnored(t *testing.T) {
	sent := 0
	r := NewReceiver("TR_a", vp8Codec, webrtc.RTPCodecTypeAudio, func([]rtcp.Packet) error { sent++; return nil },
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	r.layer[0] = &layer{ssrc: 1}
	r.RequestKeyframe(0)
	if sent != 0 {
		t.Fatalf("audio keyframe request sent %d packets", sent)
	}
}

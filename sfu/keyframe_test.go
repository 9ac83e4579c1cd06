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
	// The windows are on the wall clock: what follows holds while the
	// first window lasts. A machine that stalls this goroutine for longer
	// (seen under -race with the suite's other packages) cannot check it.
	start := time.Now()
	inWindow := func(what string) bool {
		if time.Since(start) < keyframeInterval {
			return true
		}
		t.Logf("%s: not checked, the first window (%v) was over before the requests were made", what, keyframeInterval)
		return false
	}
	burst(0)
	if n := plis[0].Load(); inWindow("coalescing") && n != 1 {
		t.Fatalf("20 concurrent requests sent %d PLIs, want 1", n)
	}
	burst(1)
	if inWindow("layer windows") && (plis[1].Load() != 1 || plis[0].Load() != 1) {
		t.Fatalf("layer 1 has its own window: PLIs %d/%d, want 1/1", plis[0].Load(), plis[1].Load())
	}
	burst(-1) // every layer: 0 and 1 are still throttled, 2 is asked
	if plis[2].Load() != 1 {
		t.Fatalf("request for every layer: %d PLIs for layer 2, want 1", plis[2].Load())
	}
	if inWindow("every layer") && (plis[0].Load() != 1 || plis[1].Load() != 1) {
		t.Fatalf("request for every layer: PLIs %d/%d/%d, want 1/1/1", plis[0].Load(), plis[1].Load(), plis[2].Load())
	}
	n0 := plis[0].Load()
	time.Sleep(keyframeInterval + 10*time.Millisecond)
	burst(0)
	if n := plis[0].Load(); n != n0+1 {
		t.Fatalf("after the window: %d PLIs in total, want %d", n, n0+1)
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

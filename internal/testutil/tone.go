package testutil

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/thesyncim/gopus"
)

// ToneOn and ToneOff bound a tone's amplitude in a mix of tones sent at
// 0.2: a tone in the mix is at least ToneOn loud, one left out at most
// ToneOff.
const (
	ToneOn  = 0.04
	ToneOff = 0.008
)

// ToneAmp is the amplitude of frequency f (Hz) in x, 48 kHz samples
// (Goertzel).
func ToneAmp(x []float32, f float64) float64 {
	coeff := 2 * math.Cos(2*math.Pi*f/48000)
	var s1, s2 float64
	for _, v := range x {
		s0 := float64(v) + coeff*s1 - s2
		s2, s1 = s1, s0
	}
	power := s1*s1 + s2*s2 - coeff*s1*s2
	return 2 * math.Sqrt(math.Max(0, power)) / float64(len(x))
}

// WaitTones waits up to d until the last second of a listener's decoded
// mix (last returns the last n samples, nil while fewer) has every tone of
// want and none of absent; it fails the test with the last amplitudes
// measured otherwise.
func WaitTones(t testing.TB, d time.Duration, last func(n int) []float32, who string, want, absent []float64) {
	t.Helper()
	deadline := time.Now().Add(d)
	var measured string
	for time.Now().Before(deadline) {
		if x := last(48000); x != nil {
			ok := true
			measured = ""
			for _, f := range want {
				a := ToneAmp(x, f)
				measured += fmt.Sprintf(" %.0f Hz: %.4f", f, a)
				ok = ok && a >= ToneOn
			}
			for _, f := range absent {
				a := ToneAmp(x, f)
				measured += fmt.Sprintf(" (absent) %.0f Hz: %.4f", f, a)
				ok = ok && a <= ToneOff
			}
			if ok {
				t.Logf("%s:%s", who, measured)
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: the mix never had tones %v without %v; last second:%s", who, want, absent, measured)
}

// ReadOpus reads the Opus track tr until it ends, decoding every packet as
// the mixer does (48 kHz, mono) and handing got the packet and its samples
// or the decode error; it stops early when got returns false.
func ReadOpus(t testing.TB, tr *webrtc.TrackRemote, got func(p *rtp.Packet, pcm []float32, err error) bool) {
	dec, err := gopus.NewDecoder(gopus.DefaultDecoderConfig(48000, 1))
	if err != nil {
		t.Error(err)
		return
	}
	pcm := make([]float32, 5760)
	for {
		p, _, err := tr.ReadRTP()
		if err != nil {
			return
		}
		n, err := dec.Decode(p.Payload, pcm)
		samples := pcm[:0]
		if err == nil {
			samples = pcm[:n]
		}
		if !got(p, samples, err) {
			return
		}
	}
}

// LastSamples is a copy of the last n samples of pcm (nil if fewer).
func LastSamples(pcm []float32, n int) []float32 {
	if len(pcm) < n {
		return nil
	}
	return append([]float32(nil), pcm[len(pcm)-n:]...)
}

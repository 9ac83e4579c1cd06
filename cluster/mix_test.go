package cluster_test

import (
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/internal/testutil"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/server"
	"github.com/thesyncim/gopus"
)

const audioLevelURI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"

// publishTone joins srv and sends a sine tone as real Opus, every 20 ms,
// until the test ends; with levels, it attaches the RFC 6464 level a
// browser sends, else none (a bare client).
func publishTone(t *testing.T, srv *server.Server, roomName, name string, freq, amp float64, levels bool) *client.Client {
	t.Helper()
	api, err := client.LoopbackAPIWith(nil, func(m *webrtc.MediaEngine, _ *interceptor.Registry) error {
		if !levels {
			return nil
		}
		return m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: audioLevelURI}, webrtc.RTPCodecTypeAudio)
	})
	if err != nil {
		t.Fatal(err)
	}
	c := join(t, srv, roomName, name, func(o *client.Options) { o.API = api })
	audio := testutil.OpusRTPTrack(t)
	pubs, err := c.Publish(ctxT(t, 15*time.Second), client.LocalTrack{Track: audio, Source: protocol.SourceMicrophone})
	if err != nil || len(pubs) != 1 {
		t.Fatalf("publish: %v", err)
	}
	var extID uint8
	for _, e := range pubs[0].Sender.GetParameters().HeaderExtensions {
		if e.URI == audioLevelURI {
			extID = uint8(e.ID)
		}
	}
	if levels && extID == 0 {
		t.Fatal("the audio level extension was not negotiated")
	}
	enc, err := gopus.NewEncoder(gopus.EncoderConfig{SampleRate: 48000, Channels: 1, Application: gopus.ApplicationVoIP})
	if err != nil {
		t.Fatal(err)
	}
	_ = enc.SetBitrate(32000)
	db := byte(math.Min(127, -20*math.Log10(amp/math.Sqrt2)))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		// Paced by the wall clock like a capture device: frames a starved
		// goroutine missed are sent at once, so the voice keeps real time.
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		pcm := make([]float32, 960)
		out := make([]byte, 1500)
		seq, ts, phase := uint16(100), uint32(0), 0.0
		start := time.Now()
		for n := 1; ; n++ {
			if n > int(time.Since(start)/(20*time.Millisecond)) {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
			} else {
				select {
				case <-stop:
					return
				default:
				}
			}
			for i := range pcm {
				pcm[i] = float32(amp * math.Sin(phase))
				phase += 2 * math.Pi * freq / 48000
			}
			phase = math.Mod(phase, 2*math.Pi)
			k, err := enc.Encode(pcm, out)
			if err != nil {
				t.Errorf("encode: %v", err)
				return
			}
			pkt := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: ts}, Payload: out[:k]}
			if extID != 0 {
				_ = pkt.Header.SetExtension(extID, []byte{db | 0x80})
			}
			seq++
			ts += 960
			if err := audio.WriteRTP(pkt); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { close(stop); wg.Wait() })
	return c
}

// mixListener decodes the mix a client receives (the mixer's Opus
// decoder) and counts the other audio tracks it gets.
type mixListener struct {
	mu      sync.Mutex
	pcm     []float32
	pkts    int
	others  int
	decErrs int
}

func listenMix(t *testing.T, c *client.Client) *mixListener {
	l := &mixListener{}
	c.OnTrack(func(rt *client.RemoteTrack) {
		if rt.Track.Kind() != webrtc.RTPCodecTypeAudio {
			return
		}
		if rt.ParticipantID != "mix" {
			go func() {
				for {
					if _, _, err := rt.Track.ReadRTP(); err != nil {
						return
					}
					l.mu.Lock()
					l.others++
					l.mu.Unlock()
				}
			}()
			return
		}
		go testutil.ReadOpus(t, rt.Track, func(_ *rtp.Packet, pcm []float32, err error) bool {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.pkts++
			if err != nil {
				l.decErrs++
			} else if len(l.pcm) < 48000*60 {
				l.pcm = append(l.pcm, pcm...)
			}
			return true
		})
	})
	return l
}

// last returns the last n decoded samples (nil if fewer).
func (l *mixListener) last(n int) []float32 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return testutil.LastSamples(l.pcm, n)
}

// The audio mix across nodes: a speaker on node B (n1) and one on node C
// (n2) are mixed by node A (n0) for a listener there, with the mix on: its
// one mixed stream carries both tones (decoded with the mixer's Opus
// decoder). A speaker on n1 who listens to the mix hears n2's voice and not
// its own (mix-minus, mixed by n1). Each remote voice crosses to n0 once.
// n1's speaker sends audio levels (ranked by n1's activeSpeakers), n2's
// none (measured by the mixers from its decoded audio). The admin's
// mute-in-mix through one node holds in every node's mixer.
func TestAudioMixAcrossNodes(t *testing.T) {
	parallel(t)
	srvs := startCluster(t, 3, nil)
	const roomName = "mix-remote"
	const fB, fC = 440.0, 1100.0
	listener := join(t, srvs[0], roomName, "listener", func(o *client.Options) { o.AudioMix = true })
	lmix := listenMix(t, listener)
	spkB := publishTone(t, srvs[1], roomName, "speaker-b", fB, 0.2, true)
	bmix := listenMix(t, spkB)
	if err := spkB.SetAudioMix(ctxT(t, 10*time.Second), true); err != nil {
		t.Fatal(err)
	}
	spkC := publishTone(t, srvs[2], roomName, "speaker-c", fC, 0.2, false)

	eventually(t, 30*time.Second, "the listener on n0 receives mix packets", func() bool {
		lmix.mu.Lock()
		defer lmix.mu.Unlock()
		return lmix.pkts >= 50
	})
	eventually(t, 30*time.Second, "n0 imports the two remote voices once, for its mixer", func() bool {
		mx := srvs[0].Rooms().Room(roomName).Mixer()
		return mx != nil && mx.Stats().Inputs == 2 && srvs[0].Cluster().RelayStats().Imports == 2
	})
	lmix.mu.Lock()
	others, decErrs := lmix.others, lmix.decErrs
	lmix.mu.Unlock()
	if others != 0 {
		t.Errorf("the listener on the mix received %d packets of individual audio tracks", others)
	}
	if decErrs != 0 {
		t.Errorf("%d mix packets did not decode", decErrs)
	}
	if mixUnderRace {
		t.Log("built with -race: the mixer is not real time, the tones are not checked")
		return
	}
	waitTones(t, lmix, "listener on n0", []tone{{fB, 0.2}, {fC, 0.2}}, nil)
	waitTones(t, bmix, "speaker on n1 (mix-minus)", []tone{{fC, 0.2}}, []float64{fB})

	// The admin leaves speaker-c (on n2) out of the mix through n1's API:
	// n0's mixer leaves it out too.
	var st struct {
		Gain  float64 `json:"gain"`
		Muted bool    `json:"muted"`
	}
	path := "/v1/rooms/" + roomName + "/participants/" + spkC.ParticipantID() + "/mix"
	if code := httpJSON(t, "POST", srvs[1].BaseURL()+path, map[string]any{"muted": true}, &st); code != 200 || !st.Muted {
		t.Fatalf("mute speaker-c in the mix through n1: %d %+v", code, st)
	}
	waitTones(t, lmix, "listener on n0, speaker-c muted in the mix", []tone{{fB, 0.2}}, []float64{fC})
	// speaker-b's mix-minus is empty now (n1 sends it nothing); back
	// through n0's API, n1's mixer sends it speaker-c again.
	bmix.mu.Lock()
	before := bmix.pkts
	bmix.mu.Unlock()
	if code := httpJSON(t, "POST", srvs[0].BaseURL()+path, map[string]any{"muted": false, "gain": 0.5}, &st); code != 200 || st.Muted || st.Gain != 0.5 {
		t.Fatalf("unmute speaker-c in the mix through n0: %d %+v", code, st)
	}
	eventually(t, 30*time.Second, "speaker-b's mix carries packets again", func() bool {
		bmix.mu.Lock()
		defer bmix.mu.Unlock()
		return bmix.pkts >= before+60
	})
	waitTones(t, bmix, "speaker on n1, speaker-c back", []tone{{fC, 0.1}}, []float64{fB})
	waitTones(t, lmix, "listener on n0, speaker-c back", []tone{{fB, 0.2}, {fC, 0.1}}, nil)
}

// tone is a frequency a mix should carry at about amp: the amplitude sent
// times the gain the mix gives it.
type tone struct{ f, amp float64 }

// toneWindow is the span (200 ms, ten Opus frames) over which a tone is
// measured. The mixer runs on the wall clock: on a starved machine an
// input frame that comes after its turn is concealed (loss concealment
// fading to silence), and over a whole second the tones of a correct mix
// measured a fraction of what was sent (0.044 of 0.2 under load; a tone
// at a quarter gain, 0.0411 of 0.05, under the 0.04 asked then). A tone is
// present when one window of the last second carries every wanted tone
// at half its level or more, absent when no window carries it.
const toneWindow = 9600

// windows splits x into toneWindow spans.
func windows(x []float32) [][]float32 {
	var out [][]float32
	for len(x) >= toneWindow {
		out = append(out, x[:toneWindow])
		x = x[toneWindow:]
	}
	return out
}

// waitTones waits until the last second of a listener's mix has a window
// with every tone of want (at least half its amp) and no window with any
// of absent (above 0.008).
func waitTones(t *testing.T, l *mixListener, who string, want []tone, absent []float64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		if x := l.last(48000); x != nil {
			present, clean := false, true
			last = ""
			for i, w := range windows(x) {
				ok := true
				last += fmt.Sprintf(" [%d]", i)
				for _, tn := range want {
					a := testutil.ToneAmp(w, tn.f)
					last += fmt.Sprintf(" %.0f Hz: %.4f", tn.f, a)
					ok = ok && a >= tn.amp/2
				}
				present = present || ok
				for _, f := range absent {
					a := testutil.ToneAmp(w, f)
					last += fmt.Sprintf(" (absent) %.0f Hz: %.4f", f, a)
					clean = clean && a <= 0.008
				}
			}
			if present && clean {
				t.Logf("%s:%s", who, last)
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: the mix never had tones %v without %v; last second:%s", who, want, absent, last)
}

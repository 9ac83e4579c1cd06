package server_test

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/admin"
	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/internal/testutil"
	"github.com/starling-rtc/starling/mixer"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/server"
	"github.com/thesyncim/gopus"
)

func withAudioMix(o *client.Options) { o.AudioMix = true }

// tonePublisher sends a sine tone as real Opus (encoded here) with the
// RFC 6464 level a browser would attach, every 20 ms.
type tonePublisher struct {
	c        *client.Client
	trackID  string
	freq     float64
	amp      atomic.Uint64 // math.Float64bits
	dropEach int           // drop every n-th packet (loss); 0 = none
	stop     chan struct{}
	wg       sync.WaitGroup
}

func (p *tonePublisher) setAmp(a float64) { p.amp.Store(math.Float64bits(a)) }

func publishTone(t *testing.T, srv *server.Server, roomName, name string, freq, amp float64, dropEach int, opts ...func(*client.Options)) *tonePublisher {
	t.Helper()
	c := join(t, srv, roomName, name, append([]func(*client.Options){withClientAPI(audioLevelAPI(t))}, opts...)...)
	audio := testutil.OpusRTPTrack(t)
	pubs, err := c.Publish(ctxT(t, 10*time.Second), client.LocalTrack{Track: audio, Source: protocol.SourceMicrophone})
	if err != nil || len(pubs) != 1 {
		t.Fatalf("publish: %v", err)
	}
	var extID uint8
	for _, e := range pubs[0].Sender.GetParameters().HeaderExtensions {
		if e.URI == audioLevelURI {
			extID = uint8(e.ID)
		}
	}
	enc, err := gopus.NewEncoder(gopus.EncoderConfig{SampleRate: 48000, Channels: 1, Application: gopus.ApplicationVoIP})
	if err != nil {
		t.Fatal(err)
	}
	_ = enc.SetBitrate(32000)
	p := &tonePublisher{c: c, trackID: pubs[0].ID, freq: freq, dropEach: dropEach, stop: make(chan struct{})}
	p.setAmp(amp)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		// Paced by the wall clock like a capture device, not by ticks: a
		// time.Ticker drops the ticks a starved goroutine misses, and a
		// publisher that skipped them would lag real time for good (the
		// mixer would rightly see its voice stop). After a stall the
		// frames due are sent at once, as a browser's audio capture does.
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		pcm := make([]float32, 960)
		out := make([]byte, 1500)
		seq, ts, phase := uint16(100), uint32(0), 0.0
		start := time.Now()
		for n := 1; ; n++ {
			if n > int(time.Since(start)/(20*time.Millisecond)) {
				select { // not due yet
				case <-p.stop:
					return
				case <-tick.C:
				}
			} else {
				select { // due already: a stall is being made up for
				case <-p.stop:
					return
				default:
				}
			}
			a := math.Float64frombits(p.amp.Load())
			for i := range pcm {
				pcm[i] = float32(a * math.Sin(phase))
				phase += 2 * math.Pi * freq / 48000
			}
			phase = math.Mod(phase, 2*math.Pi)
			k, err := enc.Encode(pcm, out)
			if err != nil {
				t.Errorf("encode: %v", err)
				return
			}
			db := 127.0
			if a > 0 {
				db = math.Min(127, math.Max(0, -20*math.Log10(a/math.Sqrt2)))
			}
			pkt := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: ts}, Payload: out[:k]}
			if extID != 0 { // not with a client API that leaves the extension out
				_ = pkt.Header.SetExtension(extID, []byte{byte(db) | 0x80})
			}
			seq++
			ts += 960
			if p.dropEach > 0 && n%p.dropEach == 0 {
				continue // lost on the way
			}
			if err := audio.WriteRTP(pkt); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { close(p.stop); p.wg.Wait() })
	return p
}

// mixListener decodes the mix a client receives and notes every other
// audio track it gets.
type mixListener struct {
	mu      sync.Mutex
	pcm     []float32
	hdrs    []rtp.Header
	others  map[string]bool // individual audio tracks received
	mixPkts int
}

func listenMix(t *testing.T, c *client.Client) *mixListener {
	l := &mixListener{others: map[string]bool{}}
	c.OnTrack(func(rt *client.RemoteTrack) {
		if rt.Track.Kind() != webrtc.RTPCodecTypeAudio {
			return
		}
		if rt.ParticipantID != "mix" {
			l.mu.Lock()
			l.others[rt.TrackID] = true
			l.mu.Unlock()
			go func() {
				for {
					if _, _, err := rt.Track.ReadRTP(); err != nil {
						return
					}
				}
			}()
			return
		}
		go testutil.ReadOpus(t, rt.Track, func(p *rtp.Packet, pcm []float32, err error) bool {
			if err != nil {
				t.Errorf("the mix does not decode: %v", err)
				return false
			}
			l.mu.Lock()
			l.pcm = append(l.pcm, pcm...)
			l.hdrs = append(l.hdrs, p.Header)
			l.mixPkts++
			l.mu.Unlock()
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

func (l *mixListener) otherTracks() map[string]bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]bool{}
	for k := range l.others {
		out[k] = true
	}
	return out
}

// waitTones waits until the last second of a listener's mix has every
// tone of want (amplitude >= testutil.ToneOn of the 0.2 sent) and none of
// absent (<= testutil.ToneOff).
func waitTones(t *testing.T, l *mixListener, who string, want, absent []float64) {
	t.Helper()
	testutil.WaitTones(t, 20*time.Second, l.last, who, want, absent)
}

// TestAudioMix: three publishers send tones at 440, 700 and 1,100 Hz. A
// listener on the mix decodes all three from one track and gets no
// individual audio track; publisher 1 on the mix hears 2 and 3 but not
// itself (mix-minus). With 5% loss on one input the mix stays continuous.
// The admin mutes one voice in the mix and turns another down; loud inputs
// are limited, never wrapped; setAudioMix off brings the tracks back.
func TestAudioMix(t *testing.T) {
	timingTest(t, groupMix)
	skipUnderRace(t)
	srv := startServer(t, nil)
	const roomName = "mix"
	f1, f2, f3 := 440.0, 700.0, 1100.0
	listener := join(t, srv, roomName, "listener", withAudioMix)
	lmix := listenMix(t, listener)
	p1 := publishTone(t, srv, roomName, "p1", f1, 0.2, 0, withAudioMix)
	p1mix := listenMix(t, p1.c)
	p2 := publishTone(t, srv, roomName, "p2", f2, 0.2, 20) // 5% loss
	p3 := publishTone(t, srv, roomName, "p3", f3, 0.2, 0)

	waitTones(t, lmix, "listener", []float64{f1, f2, f3}, nil)
	waitTones(t, p1mix, "publisher 1", []float64{f2, f3}, []float64{f1})
	if o := lmix.otherTracks(); len(o) != 0 {
		t.Fatalf("the listener on the mix received individual audio tracks: %v", o)
	}
	if o := p1mix.otherTracks(); len(o) != 0 {
		t.Fatalf("publisher 1 on the mix received individual audio tracks: %v", o)
	}
	// A mix track was announced with source "mix".
	if _, err := listener.WaitEvent(ctxT(t, time.Second), protocol.NotifyTrackPublished, func(raw json.RawMessage) bool {
		return strings.Contains(string(raw), `"source":"mix"`)
	}); err != nil {
		t.Fatalf("no trackPublished with source mix: %v", err)
	}

	// Continuity: while three voices speak (one losing 5%), the mix's
	// next 50 packets are contiguous, 960 timestamps apart.
	mx := srv.Rooms().Room(roomName).Mixer()
	if mx == nil {
		t.Fatal("the room has no mixer")
	}
	base := mx.Stats()
	lmix.mu.Lock()
	from := len(lmix.hdrs)
	lmix.mu.Unlock()
	waitFor(t, 30*time.Second, "50 more mix packets", func() bool {
		lmix.mu.Lock()
		defer lmix.mu.Unlock()
		return len(lmix.hdrs) >= from+50
	})
	lmix.mu.Lock()
	hdrs := append([]rtp.Header(nil), lmix.hdrs[from:from+50]...)
	lmix.mu.Unlock()
	checkContinuous(t, srv, roomName, base, hdrs, "with 5% loss on one voice")
	ms := mx.Stats()
	t.Logf("mixer: %d inputs, %d listeners, delay avg %v max %v (+ %v encoder look-ahead)",
		ms.Inputs, ms.Listeners, ms.DelayAvg, ms.DelayMax, ms.Lookahead)

	// The admin leaves p2 out of the mix, then turns p3 down.
	pPath := func(p *tonePublisher) string {
		return "/v1/rooms/" + roomName + "/participants/" + p.c.ParticipantID() + "/mix"
	}
	var st admin.MixState
	if c := adminCall(t, srv, "POST", pPath(p2), "", admin.MixRequest{Muted: boolp(true)}, &st); c != 200 || !st.Muted {
		t.Fatalf("mute in mix: %d %+v", c, st)
	}
	waitTones(t, lmix, "listener, p2 muted in the mix", []float64{f1, f3}, []float64{f2})
	half := 0.2
	if c := adminCall(t, srv, "POST", pPath(p3), "", admin.MixRequest{Gain: &half}, &st); c != 200 || st.Gain != half {
		t.Fatalf("gain: %d %+v", c, st)
	}
	waitFor(t, 30*time.Second, "p3 turned down in the mix", func() bool {
		x := lmix.last(48000)
		return x != nil && testutil.ToneAmp(x, f3) < 0.4*testutil.ToneAmp(x, f1) && testutil.ToneAmp(x, f3) > 0.01
	})
	bad := 5.0
	if c := adminCall(t, srv, "POST", pPath(p3), "", admin.MixRequest{Gain: &bad}, nil); c != 400 {
		t.Fatalf("gain 5 accepted: %d", c)
	}
	one := 1.0
	adminCall(t, srv, "POST", pPath(p3), "", admin.MixRequest{Gain: &one}, nil)
	adminCall(t, srv, "POST", pPath(p2), "", admin.MixRequest{Muted: boolp(false)}, nil)

	// Limiter: three inputs at 0.9 sum to 2.7; the mix is turned down, not
	// wrapped (a wrap is a jump of about 2 between samples).
	for _, p := range []*tonePublisher{p1, p2, p3} {
		p.setAmp(0.9)
	}
	waitFor(t, 30*time.Second, "the loud mix", func() bool {
		x := lmix.last(48000)
		return x != nil && testutil.ToneAmp(x, f1) > 0.2 && testutil.ToneAmp(x, f2) > 0.2 && testutil.ToneAmp(x, f3) > 0.2
	})
	x := lmix.last(48000)
	var peak, jump float64
	for i, v := range x {
		peak = math.Max(peak, math.Abs(float64(v)))
		if i > 0 {
			jump = math.Max(jump, math.Abs(float64(v-x[i-1])))
		}
	}
	t.Logf("loud mix: peak %.3f, largest step %.3f, tones %.3f %.3f %.3f", peak, jump, testutil.ToneAmp(x, f1), testutil.ToneAmp(x, f2), testutil.ToneAmp(x, f3))
	if peak > 1.05 || jump > 0.8 {
		t.Fatalf("loud inputs clipped or wrapped: peak %.3f, largest sample step %.3f", peak, jump)
	}

	// Off: the individual tracks come back and the mix is unpublished.
	if err := listener.SetAudioMix(ctxT(t, 5*time.Second), false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "the individual audio tracks back", func() bool {
		o := lmix.otherTracks()
		return o[p1.trackID] && o[p2.trackID] && o[p3.trackID]
	})
	if _, err := listener.WaitEvent(ctxT(t, 5*time.Second), protocol.NotifyTrackUnpublished, nil); err != nil {
		t.Fatalf("the mix was not unpublished: %v", err)
	}
}

// TestAudioMixLoudestN: with two speakers mixed, the quietest of three is
// left out; when it gets loudest it enters (and the now quietest leaves).
func TestAudioMixLoudestN(t *testing.T) {
	timingTest(t, groupMix)
	skipUnderRace(t)
	srv := startServer(t, func(c *config.Config) { c.Mix.Speakers = 2 })
	const roomName = "mix-n"
	f1, f2, f3 := 440.0, 700.0, 1100.0
	listener := join(t, srv, roomName, "listener", withAudioMix)
	lmix := listenMix(t, listener)
	publishTone(t, srv, roomName, "p1", f1, 0.3, 0)
	publishTone(t, srv, roomName, "p2", f2, 0.1, 0)
	p3 := publishTone(t, srv, roomName, "p3", f3, 0.03, 0)
	waitTones(t, lmix, "listener, N=2", []float64{f1, f2}, []float64{f3})
	t0 := time.Now()
	p3.setAmp(0.6)
	waitTones(t, lmix, "listener, p3 louder", []float64{f1, f3}, []float64{f2})
	t.Logf("p3 entered the mix (and a full second of it was analysed) %v after getting louder", time.Since(t0).Round(10*time.Millisecond))
}

// TestAudioMixRecording: a room recording started with {"mix": true} holds
// mix.webm, which ffprobe reads as Opus and ffmpeg decodes to both tones;
// the room mixes for the recording alone (nobody listens to the mix).
func TestAudioMixRecording(t *testing.T) {
	timingTest(t, groupMix)
	skipUnderRace(t)
	testutil.RequireFFmpeg(t)
	dir := t.TempDir()
	srv := startServer(t, func(c *config.Config) { c.Recordings.Dir = dir })
	const roomName = "mixrec"
	f1, f2 := 500.0, 900.0
	publishTone(t, srv, roomName, "p1", f1, 0.2, 0)
	publishTone(t, srv, roomName, "p2", f2, 0.2, 0)
	url := "http://" + srv.Addr() + "/v1/rooms/" + roomName + "/recordings"
	res, err := http.Post(url, "application/json", strings.NewReader(`{"mix": true}`))
	if err != nil {
		t.Fatal(err)
	}
	var started map[string]any
	_ = json.NewDecoder(res.Body).Decode(&started)
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("start: HTTP %d %v", res.StatusCode, started)
	}
	id, _ := started["id"].(string)
	mixFile := filepath.Join(dir, id, "mix.webm")
	// Both voices become active speakers, then three seconds of mix.
	waitFor(t, 60*time.Second, "the mix recorded", func() bool {
		st, err := os.Stat(mixFile)
		return err == nil && st.Size() > 20000
	})
	req, _ := http.NewRequest("DELETE", url+"/"+id, nil)
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("stop: HTTP %d", res.StatusCode)
	}
	out, err := exec.Command("ffprobe", "-v", "error", "-show_entries", "stream=codec_name,sample_rate:format=duration",
		"-of", "default=noprint_wrappers=1", mixFile).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "codec_name=opus") {
		t.Fatalf("ffprobe mix.webm: %v\n%s", err, out)
	}
	t.Logf("ffprobe mix.webm: %s", strings.ReplaceAll(strings.TrimSpace(string(out)), "\n", ", "))
	raw, err := exec.Command("ffmpeg", "-v", "error", "-i", mixFile, "-f", "f32le", "-ac", "1", "-ar", "48000", "-").Output()
	if err != nil {
		t.Fatalf("ffmpeg cannot decode mix.webm: %v", err)
	}
	pcm := make([]float32, len(raw)/4)
	for i := range pcm {
		pcm[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
	}
	if len(pcm) < 48000 {
		t.Fatalf("mix.webm decodes to %d samples, want at least a second", len(pcm))
	}
	last := pcm[len(pcm)-48000:]
	a1, a2 := testutil.ToneAmp(last, f1), testutil.ToneAmp(last, f2)
	t.Logf("mix.webm: %d samples, last second %.0f Hz %.3f, %.0f Hz %.3f", len(pcm), f1, a1, f2, a2)
	if a1 < testutil.ToneOn || a2 < testutil.ToneOn {
		t.Fatalf("mix.webm does not hold both voices: %.0f Hz %.4f, %.0f Hz %.4f", f1, a1, f2, a2)
	}
}

// TestAudioMixChanges: a new speaker enters without a break in the others'
// stream (contiguous sequence numbers and timestamps); mute, unpublish and
// leave take a voice out of the mix.
func TestAudioMixChanges(t *testing.T) {
	timingTest(t, groupMix)
	skipUnderRace(t)
	srv := startServer(t, nil)
	const roomName = "mix-changes"
	f1, f2, f3 := 440.0, 700.0, 1100.0
	listener := join(t, srv, roomName, "listener", withAudioMix)
	lmix := listenMix(t, listener)
	p1 := publishTone(t, srv, roomName, "p1", f1, 0.2, 0)
	p2 := publishTone(t, srv, roomName, "p2", f2, 0.2, 0)
	waitTones(t, lmix, "two voices", []float64{f1, f2}, []float64{f3})
	base := srv.Rooms().Room(roomName).Mixer().Stats()
	lmix.mu.Lock()
	from := len(lmix.hdrs)
	lmix.mu.Unlock()
	p3 := publishTone(t, srv, roomName, "p3", f3, 0.2, 0)
	waitTones(t, lmix, "p3 entered", []float64{f1, f2, f3}, nil)
	lmix.mu.Lock()
	hdrs := append([]rtp.Header(nil), lmix.hdrs[from:]...)
	lmix.mu.Unlock()
	checkContinuous(t, srv, roomName, base, hdrs, "across p3's entry")

	if err := p2.c.Call(ctxT(t, 5*time.Second), protocol.MethodMute, map[string]any{"trackId": p2.trackID, "muted": true}, nil); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	waitTones(t, lmix, "p2 muted", []float64{f1, f3}, []float64{f2})
	t.Logf("muted voice gone from the last second of the mix %v after mute", time.Since(t0).Round(10*time.Millisecond))
	if err := p3.c.Call(ctxT(t, 5*time.Second), protocol.MethodUnpublish, protocol.UnpublishParams{TrackID: p3.trackID}, nil); err != nil {
		t.Fatal(err)
	}
	waitTones(t, lmix, "p3 unpublished", []float64{f1}, []float64{f2, f3})
	p1.c.Close()
	if err := p2.c.Call(ctxT(t, 5*time.Second), protocol.MethodMute, map[string]any{"trackId": p2.trackID, "muted": false}, nil); err != nil {
		t.Fatal(err)
	}
	waitTones(t, lmix, "p1 left, p2 unmuted", []float64{f2}, []float64{f1, f3})

	// Back and forth: off, then on again, renegotiates each time.
	if err := listener.SetAudioMix(ctxT(t, 5*time.Second), false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "p2's own track", func() bool { return lmix.otherTracks()[p2.trackID] })
	lmix.mu.Lock()
	lmix.pcm = nil
	lmix.mu.Unlock()
	if err := listener.SetAudioMix(ctxT(t, 5*time.Second), true); err != nil {
		t.Fatal(err)
	}
	waitTones(t, lmix, "the mix again", []float64{f2}, nil)
	if err := listener.Call(ctxT(t, 5*time.Second), protocol.MethodSetAudioMix, map[string]any{}, nil); err == nil || !strings.Contains(err.Error(), "enabled") {
		t.Fatalf("setAudioMix without enabled: %v", err)
	}
}

// checkContinuous: the mix's packets follow each other (sequence number +1,
// timestamp +960, no new talkspurt). The mixer itself must never break the
// stream while voices keep coming (a voice entering, loss concealed). A
// break is allowed only where, since base, the mixer reports that its
// inputs stopped coming (Dropouts: on a busy machine the publishers, the
// network path and the mixer share starved CPUs, and a voice delayed past
// the jitter buffer and concealment is a real pause) or that it was itself
// starved past its catch-up (Skipped): timing failures of the test
// machine, not of the mix.
func checkContinuous(t *testing.T, srv *server.Server, roomName string, base mixer.Stats, hdrs []rtp.Header, what string) {
	t.Helper()
	breaks := 0
	var first string
	for i := 1; i < len(hdrs); i++ {
		if hdrs[i].SequenceNumber != hdrs[i-1].SequenceNumber+1 || hdrs[i].Timestamp != hdrs[i-1].Timestamp+960 || hdrs[i].Marker {
			if breaks == 0 {
				first = fmt.Sprintf("at packet %d of %d: seq %d->%d ts %d->%d marker %v", i, len(hdrs),
					hdrs[i-1].SequenceNumber, hdrs[i].SequenceNumber, hdrs[i-1].Timestamp, hdrs[i].Timestamp, hdrs[i].Marker)
			}
			breaks++
		}
	}
	if breaks == 0 {
		t.Logf("%d mix packets contiguous %s", len(hdrs), what)
		return
	}
	st := srv.Rooms().Room(roomName).Mixer().Stats()
	dropouts, skipped := st.Dropouts-base.Dropouts, st.Skipped-base.Skipped
	if dropouts == 0 && skipped == 0 {
		t.Fatalf("the mix broke %s (%d breaks, first %s) though no voice stopped coming and the mixer was never starved (%+v)", what, breaks, first, st)
	}
	t.Logf("the mix broke %d times %s (first %s) where its inputs stopped coming (%d dropouts) or it was starved (%d late wake-ups, %d frames skipped)",
		breaks, what, first, dropouts, st.Late-base.Late, skipped)
}

// skipUnderRace skips a test that checks the mixed audio: under the race
// detector the pure-Go Opus codec runs several times slower than real time
// on a small machine, so the mixer skips most frames. TestAudioMixWiring
// exercises the same room wiring under -race.
func skipUnderRace(t *testing.T) {
	if raceEnabled {
		t.Skip("the audio checks need a real-time mixer; -race makes Opus in Go slower than real time (TestAudioMixWiring runs)")
	}
}

// TestAudioMixWiring: switching the mix on and off while others publish,
// unpublish and leave; the mix track comes and goes, the individual tracks
// come back, and the room stops mixing when its last mix listener leaves.
// It checks packets, not audio, so it also runs under -race.
func TestAudioMixWiring(t *testing.T) {
	timingTest(t, groupMix)
	srv := startServer(t, nil)
	const roomName = "mix-wiring"
	listener := join(t, srv, roomName, "listener", withAudioMix)
	lmix := listenMix(t, listener)
	p1 := publishTone(t, srv, roomName, "p1", 440, 0.2, 0)
	waitFor(t, 20*time.Second, "mix packets", func() bool {
		lmix.mu.Lock()
		defer lmix.mu.Unlock()
		return lmix.mixPkts > 10
	})
	for i := 0; i < 3; i++ {
		p2 := publishTone(t, srv, roomName, fmt.Sprintf("p2-%d", i), 700, 0.2, 0)
		if err := listener.SetAudioMix(ctxT(t, 5*time.Second), false); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 15*time.Second, "individual tracks", func() bool {
			o := lmix.otherTracks()
			return o[p1.trackID] && o[p2.trackID]
		})
		if err := listener.SetAudioMix(ctxT(t, 5*time.Second), true); err != nil {
			t.Fatal(err)
		}
		p2.c.Close()
	}
	if mx := srv.Rooms().Room(roomName).Mixer(); mx == nil || mx.Listeners() != 1 {
		t.Fatalf("the room should mix for its one listener: %v", mx)
	}
	listener.Close()
	waitFor(t, 10*time.Second, "the room to stop mixing", func() bool { return srv.Rooms().Room(roomName).Mixer() == nil })
}

// TestAudioMixWithoutLevels: a publisher whose client sends no RFC 6464
// audio level (the room never ranks it as a speaker) is still mixed: the
// mixer measures its decoded level.
func TestAudioMixWithoutLevels(t *testing.T) {
	timingTest(t, groupMix)
	skipUnderRace(t)
	srv := startServer(t, nil)
	const roomName = "mix-nolevels"
	listener := join(t, srv, roomName, "listener", withAudioMix)
	lmix := listenMix(t, listener)
	publishTone(t, srv, roomName, "with-levels", 440, 0.2, 0)
	plain, err := client.LoopbackAPI()
	if err != nil {
		t.Fatal(err)
	}
	publishTone(t, srv, roomName, "without-levels", 700, 0.2, 0, withClientAPI(plain))
	waitTones(t, lmix, "listener", []float64{440, 700}, nil)
}

// TestAudioMixAutoRecord: with recordings.mix an auto-recorded room's
// recording holds mix.webm.
func TestAudioMixAutoRecord(t *testing.T) {
	timingTest(t, groupMix)
	skipUnderRace(t)
	dir := t.TempDir()
	srv := startServer(t, func(c *config.Config) {
		c.Recordings.Dir = dir
		c.Recordings.AutoRecord = []string{"auto-*"}
		c.Recordings.Mix = true
	})
	publishTone(t, srv, "auto-mix", "p1", 500, 0.2, 0)
	publishTone(t, srv, "auto-mix", "p2", 900, 0.2, 0)
	waitFor(t, 15*time.Second, "mix.webm in the auto recording", func() bool {
		m, _ := filepath.Glob(filepath.Join(dir, "*", "mix.webm"))
		if len(m) != 1 {
			return false
		}
		st, err := os.Stat(m[0])
		return err == nil && st.Size() > 5000
	})
}

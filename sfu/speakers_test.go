package sfu

import (
	"io"
	"log/slog"
	"math"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

const tick = int64(100 * time.Millisecond)

// feed runs ticks of 100 ms with the levels given per participant.
type speakerSim struct {
	d   *SpeakerDetector
	now int64
}

func (s *speakerSim) run(ticks int, levels map[string]float64) []SpeakerLevel {
	var out []SpeakerLevel
	for range ticks {
		s.now += tick
		for id, db := range levels {
			s.d.Observe(id, db, s.now)
		}
		out = s.d.Tick(s.now)
	}
	return out
}

func ids(l []SpeakerLevel) []string {
	out := make([]string, len(l))
	for i, s := range l {
		out[i] = s.ID
	}
	return out
}

func TestSpeakerDetectorLoudAndSilent(t *testing.T) {
	s := &speakerSim{d: NewSpeakerDetector(), now: 1}
	got := s.run(3, map[string]float64{"loud": 20, "quiet": 127})
	if len(got) != 1 || got[0].ID != "loud" {
		t.Fatalf("after 300 ms: %v, want [loud]", got)
	}
	if got[0].Level < 0.5 || got[0].Level > 0.75 {
		t.Fatalf("level of a -20 dBov speaker after 300 ms: %.2f, want 0.5-0.75 (rising to 0.75)", got[0].Level)
	}
	// Swap: the new speaker is active within 300 ms; the old one stays
	// until it has been quiet for the hold time.
	got = s.run(3, map[string]float64{"loud": 127, "quiet": 20})
	if len(got) != 2 || got[0].ID != "quiet" {
		t.Fatalf("300 ms after the swap: %v, want [quiet loud]", ids(got))
	}
	got = s.run(12, map[string]float64{"loud": 127, "quiet": 20})
	if len(got) != 1 || got[0].ID != "quiet" {
		t.Fatalf("1.5 s after the swap: %v, want [quiet]", ids(got))
	}
}

func TestSpeakerDetectorIgnoresShortPeaks(t *testing.T) {
	s := &speakerSim{d: NewSpeakerDetector(), now: 1}
	for range 10 {
		s.run(1, map[string]float64{"a": 0}) // a 100 ms click
		if got := s.run(9, map[string]float64{"a": 127}); len(got) != 0 {
			t.Fatalf("a 100 ms peak made a speaker active: %v", got)
		}
	}
	// Missing ticks count as silence.
	s.run(5, map[string]float64{"a": 20})
	if got := s.run(15, nil); len(got) != 0 {
		t.Fatalf("a participant that stopped sending is still active: %v", got)
	}
}

// A level that hovers around either threshold, or speech with pauses
// between words, changes the speaker set at most once.
func TestSpeakerDetectorDoesNotFlicker(t *testing.T) {
	for _, tc := range []struct {
		name   string
		levels func(i int) float64
	}{
		{"around the enter threshold", func(i int) float64 { return speakerEnterDB + 4*math.Sin(float64(i)) }},
		{"around the exit threshold", func(i int) float64 { return speakerExitDB + 4*math.Sin(float64(i)) }},
		{"speech with 300 ms pauses", func(i int) float64 {
			if i%8 < 3 {
				return 127
			}
			return 25
		}},
		{"noise at the exit threshold after speech", func(i int) float64 {
			if i < 10 {
				return 20
			}
			return speakerExitDB - 1 + 2*float64(i%2)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &speakerSim{d: NewSpeakerDetector(), now: 1}
			changes, prev := 0, false
			for i := range 300 {
				active := len(s.run(1, map[string]float64{"a": tc.levels(i)})) > 0
				if active != prev {
					changes++
				}
				prev = active
			}
			if changes > 1 {
				t.Fatalf("active speaker set changed %d times in 30 s", changes)
			}
		})
	}
}

// Two speakers of about the same loudness do not swap first place at every
// tick; a clearly louder one takes it.
func TestSpeakerDetectorRanking(t *testing.T) {
	s := &speakerSim{d: NewSpeakerDetector(), now: 1}
	s.run(5, map[string]float64{"a": 20, "b": 22, "c": 35})
	firsts := map[string]int{}
	for i := range 100 {
		da, db := 20.0, 22.0
		if i%2 == 1 {
			da, db = 22, 20
		}
		got := s.run(1, map[string]float64{"a": da, "b": db, "c": 35})
		if len(got) != 3 || got[2].ID != "c" {
			t.Fatalf("ranking %v, want c last", ids(got))
		}
		firsts[got[0].ID]++
	}
	if len(firsts) != 1 {
		t.Fatalf("first place changed hands between two equally loud speakers: %v", firsts)
	}
	got := s.run(5, map[string]float64{"a": 40, "b": 40, "c": 5})
	if got[0].ID != "c" {
		t.Fatalf("a clearly louder speaker is not first: %v", ids(got))
	}
}

func TestTakeAudioLevel(t *testing.T) {
	r := NewReceiver("TR_a", vp8Codec, webrtc.RTPCodecTypeAudio, func([]rtcp.Packet) error { return nil },
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if db, n := r.TakeAudioLevel(); db != SpeakerSilenceDB || n != 0 {
		t.Fatalf("no packets: %v dB from %d, want %v from 0", db, n, SpeakerSilenceDB)
	}
	r.level.add([]byte{0x80 | 30}) // voice bit set, -30 dBov
	r.level.add([]byte{30})
	r.level.add(nil) // a packet without the extension does not count
	if db, n := r.TakeAudioLevel(); math.Abs(db-30) > 0.01 || n != 2 {
		t.Fatalf("got %.2f dB from %d packets, want 30 from 2", db, n)
	}
	// Averaged in dB with silence clamped: -20 and -127 average to -50.
	r.level.add([]byte{20})
	r.level.add([]byte{127})
	if db, _ := r.TakeAudioLevel(); db != (20+SpeakerSilenceDB)/2 {
		t.Fatalf("average of -20 and -127 dBov: %.2f, want -%v", db, (20+SpeakerSilenceDB)/2)
	}
}

// TestAudioLevelDoesNotAllocate: parsing a packet with the extension and
// recording its level, as readRTP does, allocates nothing.
func TestAudioLevelDoesNotAllocate(t *testing.T) {
	r := NewReceiver("TR_a", vp8Codec, webrtc.RTPCodecTypeAudio, func([]rtcp.Packet) error { return nil },
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	pkt := rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: 1, Timestamp: 960, SSRC: 5}, Payload: make([]byte, 60)}
	if err := pkt.Header.SetExtension(3, []byte{0x80 | 25}); err != nil {
		t.Fatal(err)
	}
	buf, err := pkt.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	hdr := &rtp.Header{}
	if _, err := hdr.Unmarshal(buf); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(1000, func() {
		_, _ = hdr.Unmarshal(buf)
		r.level.add(hdr.GetExtension(3))
	})
	if allocs != 0 {
		t.Fatalf("reading the audio level allocates %.1f times per packet", allocs)
	}
	if db, n := r.TakeAudioLevel(); n != 1001 || math.Abs(db-25) > 0.01 {
		t.Fatalf("got %.2f dB from %d packets", db, n)
	}
}

// A 100 ms click read in a burst (a busy machine: its five packets fall in
// two ticks of their own, the silence after it in later ticks) does not make
// an active speaker; 200 ms of speech read the same way does.
func TestSpeakerClickInBursts(t *testing.T) {
	d := NewSpeakerDetector()
	now := int64(0)
	tick := func(db float64, packets uint32) []SpeakerLevel {
		now += int64(SpeakerTick)
		if packets == 0 {
			d.Observe("a", SpeakerSilenceDB, now)
		} else {
			d.ObserveAudio("a", db, packets, now)
		}
		return d.Tick(now)
	}
	for i := 0; i < 10; i++ {
		tick(SpeakerSilenceDB, 5)
	}
	for _, n := range []uint32{2, 3} { // the click
		if got := tick(0, n); len(got) != 0 {
			t.Fatalf("a 100 ms click in bursts of 2 and 3 packets made a speaker: %v", got)
		}
	}
	for i := 0; i < 5; i++ {
		if got := tick(SpeakerSilenceDB, 5); len(got) != 0 {
			t.Fatalf("after the click: %v", got)
		}
	}
	active := false
	for _, n := range []uint32{4, 1, 5} { // 200 ms of speech
		active = len(tick(10, n)) == 1
	}
	if !active {
		t.Fatal("200 ms of speech read in bursts did not make a speaker")
	}
}

// A tick held (the speaker's packets are late) keeps its level: it is not
// a tick of silence.
func TestSpeakerHold(t *testing.T) {
	d := NewSpeakerDetector()
	now := int64(0)
	for i := 0; i < 20; i++ {
		now += int64(SpeakerTick)
		d.ObserveAudio("a", 20, 5, now)
		d.Tick(now)
	}
	before := d.Tick(now)
	for i := 0; i < 3; i++ {
		now += int64(SpeakerTick)
		d.Hold("a")
		if got := d.Tick(now); len(got) != 1 || got[0].Level != before[0].Level {
			t.Fatalf("held tick %d: %v, want %v", i, got, before)
		}
	}
	now += int64(SpeakerTick)
	if got := d.Tick(now); len(got) != 1 || got[0].Level >= before[0].Level {
		t.Fatalf("a tick neither observed nor held is silence: %v after %v", got, before)
	}
}

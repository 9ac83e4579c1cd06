package metrics

import (
	"testing"
	"time"

	"github.com/starling-rtc/starling/room"
)

type fakeStats struct{ p, b uint64 }

func (f *fakeStats) Stats() (uint64, uint64) { return f.p, f.b }

// TestCounterSetMonotonic: objects come and go; the total never drops.
func TestCounterSetMonotonic(t *testing.T) {
	s := newCounterSet()
	a, b := &fakeStats{10, 100}, &fakeStats{5, 50}
	step := func(wantP, wantB uint64, xs ...*fakeStats) {
		t.Helper()
		s.begin()
		for _, x := range xs {
			s.see(x)
		}
		if p, by := s.end(); p != wantP || by != wantB {
			t.Fatalf("totals %d/%d, want %d/%d", p, by, wantP, wantB)
		}
	}
	step(15, 150, a, b)
	a.p, a.b = 20, 200
	step(25, 250, a, b)
	step(25, 250, b) // a closed: its last value is kept
	b.p = 7
	c := &fakeStats{1, 1}
	step(28, 251, b, c) // packets 20 (a, closed) + 7 + 1; bytes 200 + 50 + 1
	step(28, 251)       // everything closed
}

type fakeSource struct{ snap room.Snapshot }

func (f fakeSource) Snapshot() room.Snapshot { return f.snap }

// gather returns every sample value by "name{label=value}".
func gather(t *testing.T, m *Metrics) map[string]float64 {
	t.Helper()
	mfs, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, mt := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range mt.GetLabel() {
				key += "{" + l.GetName() + "=" + l.GetValue() + "}"
			}
			switch {
			case mt.Counter != nil:
				out[key] = mt.GetCounter().GetValue()
			case mt.Gauge != nil:
				out[key] = mt.GetGauge().GetValue()
			case mt.Histogram != nil:
				out[key+"_count"] = float64(mt.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

func TestObserveSignaling(t *testing.T) {
	m := New(fakeSource{room.Snapshot{Rooms: 3, Participants: 7}})
	m.ObserveSignaling("join", 0, 20*time.Millisecond)
	m.ObserveSignaling("join", 401, time.Millisecond)
	m.ObserveSignaling("x-custom", -32601, 0)
	m.ObserveSignaling("", -32700, 0)
	got := gather(t, m)
	for key, want := range map[string]float64{
		"starling_signaling_errors_total{code=401}":       1,
		"starling_signaling_errors_total{code=-32601}":    1,
		"starling_signaling_errors_total{code=-32700}":    1,
		"starling_signaling_messages_total{method=join}":  2,
		"starling_signaling_messages_total{method=other}": 1, // unknown methods never become labels
		"starling_signaling_join_duration_seconds_count":  1, // successful joins only
		"starling_rooms":                   3,
		"starling_participants":            7,
		"starling_forwarded_packets_total": 0,
	} {
		if v, ok := got[key]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", key, v, ok, want)
		}
	}
	if _, ok := got["go_goroutines"]; !ok {
		t.Error("Go runtime collector missing")
	}
}

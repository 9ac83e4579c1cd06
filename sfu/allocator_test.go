package sfu

import (
	"reflect"
	"testing"
)

// TestAllocateWithHold: an estimate wobbling ±10% around what three tracks
// on medium cost keeps them there; a 30% drop still switches one down.
func TestAllocateWithHold(t *testing.T) {
	three := [MaxLayers]uint64{150_000, 500_000, 1_500_000}
	demands := []Demand{{Cap: 2, Costs: three}, {Cap: 2, Costs: three}, {Cap: 2, Costs: three}}
	layers := func(out []int8) {
		for i := range demands {
			demands[i].Current = out[i]
		}
	}
	layers(AllocateWithHold(1_500_000, 15, demands))
	if !reflect.DeepEqual([]int8{demands[0].Current, demands[1].Current, demands[2].Current}, []int8{1, 1, 1}) {
		t.Fatalf("start: %v %v %v, want all medium", demands[0].Current, demands[1].Current, demands[2].Current)
	}
	switches := 0
	for i := range 40 {
		budget := uint64(1_500_000)
		if i%2 == 0 {
			budget = 1_500_000 * 9 / 10
		}
		out := AllocateWithHold(budget, 15, demands)
		for k := range out {
			if out[k] != demands[k].Current {
				switches++
			}
		}
		layers(out)
	}
	if switches != 0 {
		t.Fatalf("%d layer switches while the estimate wobbled by 10%%", switches)
	}
	if out := AllocateWithHold(1_500_000*7/10, 15, demands); reflect.DeepEqual(out, []int8{1, 1, 1}) {
		t.Fatalf("a 30%% drop kept every track on medium: %v", out)
	}
}

func TestAllocate(t *testing.T) {
	three := [MaxLayers]uint64{150_000, 500_000, 1_500_000}
	tests := []struct {
		name    string
		budget  uint64
		demands []Demand
		want    []int8
	}{
		{"plenty", 10_000_000, []Demand{{Cap: 2, Costs: three}, {Cap: 2, Costs: three}}, []int8{2, 2}},
		{"cap respected", 10_000_000, []Demand{{Cap: 1, Costs: three}}, []int8{1}},
		{"priority gets the upgrade", 2_200_000, []Demand{{Priority: 0, Cap: 2, Costs: three}, {Priority: 10, Cap: 2, Costs: three}},
			[]int8{1, 2}},
		{"everyone plays before anyone upgrades", 400_000, []Demand{{Cap: 2, Costs: three}, {Cap: 2, Costs: three}}, []int8{0, 0}},
		{"too little: low priority paused", 200_000, []Demand{{Priority: 1, Cap: 2, Costs: three}, {Cap: 2, Costs: three}}, []int8{0, -1}},
		{"nothing fits", 50_000, []Demand{{Cap: 2, Costs: three}}, []int8{-1}},
		{"single layer track", 1_000_000, []Demand{{Cap: 2, Costs: [MaxLayers]uint64{800_000}}}, []int8{0}},
		{"missing middle layer skipped", 2_000_000, []Demand{{Cap: 2, Costs: [MaxLayers]uint64{150_000, 0, 1_500_000}}}, []int8{2}},
		{"no tracks", 1_000_000, nil, []int8{}},
		{"equal priority: the track on the higher layer keeps it", 1_800_000,
			[]Demand{{Cap: 2, Costs: three, Current: 0}, {Cap: 2, Costs: three, Current: 2}}, []int8{0, 2}},
		{"equal priority and layer: the earlier one", 1_800_000,
			[]Demand{{Cap: 2, Costs: three, Current: 1}, {Cap: 2, Costs: three, Current: 1}}, []int8{2, 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Allocate(tc.budget, tc.demands)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Allocate(%d) = %v, want %v", tc.budget, got, tc.want)
			}
			var spent uint64
			for i, l := range got {
				if l >= 0 {
					spent += tc.demands[i].Costs[l]
				}
			}
			if spent > tc.budget {
				t.Fatalf("spent %d over budget %d", spent, tc.budget)
			}
		})
	}
}

func TestSelectLayer(t *testing.T) {
	all := uint8(0b111)
	tests := []struct {
		name          string
		capL, bwL     int8
		present, live uint8
		want          int8
		reason        string
	}{
		{"best available", 2, 2, all, all, 2, ReasonNone},
		{"subscriber cap", 1, 2, all, all, 1, ReasonSubscriber},
		{"bandwidth cap", 2, 0, all, all, 0, ReasonBandwidth},
		{"top layer stalled", 2, 2, all, 0b011, 1, ReasonPublisher},
		{"only top live, capped low", 0, 2, all, 0b100, 2, ReasonPublisher},
		{"two-layer track", 2, 2, 0b011, 0b011, 1, ReasonNone},
		{"nothing live yet keeps wanting", 1, 2, all, 0, 1, ReasonSubscriber},
	}
	for _, tc := range tests {
		got, reason := selectLayer(tc.capL, tc.bwL, tc.present, tc.live)
		if got != tc.want || reason != tc.reason {
			t.Errorf("%s: selectLayer = %d %q, want %d %q", tc.name, got, reason, tc.want, tc.reason)
		}
	}
}

// TestAllocScratch: a subscriber's reused scratch answers as Allocate and
// AllocateWithHold do, round after round with the track count changing,
// and allocates nothing once grown (an allocation round runs twice a
// second per subscriber).
func TestAllocScratch(t *testing.T) {
	three := [MaxLayers]uint64{150_000, 500_000, 1_500_000}
	var s AllocScratch
	for round := range 200 {
		n := 1 + round%7
		demands := make([]Demand, n)
		for i := range demands {
			demands[i] = Demand{Priority: (round + i) % 3, Cap: int8((round * (i + 1)) % 3), Costs: three, Current: int8((round+i)%4) - 1}
			if i%4 == 3 {
				demands[i].Costs = [MaxLayers]uint64{0, 0, 900_000}
			}
		}
		budget := uint64(100_000 + round*37_000)
		hold, plain := s.WithHold(budget, 15, demands), s.Allocate(budget*2, demands)
		if want := AllocateWithHold(budget, 15, demands); !reflect.DeepEqual(hold, want) {
			t.Fatalf("round %d: WithHold %v, AllocateWithHold %v", round, hold, want)
		}
		if want := Allocate(budget*2, demands); !reflect.DeepEqual(plain, want) {
			t.Fatalf("round %d: Allocate %v, want %v", round, plain, want)
		}
	}
	demands := []Demand{{Priority: 1, Cap: 2, Costs: three}, {Cap: 2, Costs: three, Current: 1}, {Cap: 1, Costs: three}}
	if n := testing.AllocsPerRun(100, func() {
		s.WithHold(1_000_000, 15, demands)
		s.Allocate(1_300_000, demands)
	}); n != 0 {
		t.Fatalf("%.1f allocations per allocation round", n)
	}
}

package sfu

import (
	"reflect"
	"testing"
)

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

package sfu

import (
	"cmp"
	"slices"
)

// Demand is one video down track's claim on a subscriber's downlink.
type Demand struct {
	Priority int               // higher is served first: screen share, active speaker, bigger tiles
	Cap      int8              // highest layer the subscriber accepts
	Costs    [MaxLayers]uint64 // bits/s of each layer; 0 = the publisher has no such layer
	Current  int8              // layer forwarded now (-1 = none): among equals, the higher keeps its place
}

// Allocate splits a downlink budget (bits/s) over video tracks: first the
// lowest layer of each track in priority order, so as many tracks as
// possible play, then upgrades in priority order, each to the highest layer
// within its cap that the rest of the budget pays for. A track that cannot
// have even its lowest layer gets -1 (paused for bandwidth, and told so).
//
// Among tracks of equal priority the one forwarding the higher layer now
// comes first, then the earlier in demands: the same budget gives the same
// answer every round, so bandwidth does not hop between equal tracks (each
// hop is a layer switch and a keyframe on two of them).
func Allocate(budget uint64, demands []Demand) []int8 {
	return allocateInto(make([]int8, len(demands)), make([]int, len(demands)), budget, demands)
}

// allocateInto is Allocate writing into out and using order as scratch
// (both len(demands) long). The order is sorted with a generic stable
// sort: sort.SliceStable's reflection-based swapper allocated on every
// call, three calls per allocation round, two rounds a second per
// subscriber (issue 18: congestion control must allocate nothing that
// grows with the traffic).
func allocateInto(out []int8, order []int, budget uint64, demands []Demand) []int8 {
	for i := range demands {
		out[i] = -1
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		da, db := &demands[a], &demands[b]
		if da.Priority != db.Priority {
			return cmp.Compare(db.Priority, da.Priority)
		}
		return cmp.Compare(db.Current, da.Current)
	})
	left := budget
	for _, i := range order {
		if l := lowestLayer(&demands[i]); l >= 0 && demands[i].Costs[l] <= left {
			out[i] = l
			left -= demands[i].Costs[l]
		}
	}
	for _, i := range order {
		d := &demands[i]
		cur := out[i]
		if cur < 0 {
			continue
		}
		for l := min(d.Cap, MaxLayers-1); l > cur; l-- {
			if d.Costs[l] == 0 {
				continue
			}
			if extra := d.Costs[l] - d.Costs[cur]; d.Costs[l] <= d.Costs[cur] || extra <= left {
				if d.Costs[l] > d.Costs[cur] {
					left -= extra
				}
				out[i] = l
				break
			}
		}
	}
	return out
}

// AllocateWithHold is Allocate with hysteresis: a track keeps its current
// layer (Demand.Current) while a budget marginPct% larger would keep it. An
// estimate wobbling around a layer's cost would otherwise switch it down and
// up, a keyframe each time; a real drop is bigger than the margin and still
// acts at once.
func AllocateWithHold(budget, marginPct uint64, demands []Demand) []int8 {
	var s AllocScratch
	return s.WithHold(budget, marginPct, demands)
}

// AllocScratch holds an allocation round's slices, reused from round to
// round by one owner (a subscriber's loop): with it, a round allocates
// nothing once the slices have grown to the number of tracks.
type AllocScratch struct {
	out, hold, plain []int8
	order            []int
}

// WithHold is AllocateWithHold. The result is valid until the next
// WithHold on s.
func (s *AllocScratch) WithHold(budget, marginPct uint64, demands []Demand) []int8 {
	s.grow(len(demands))
	out := allocateInto(s.out, s.order, budget, demands)
	hold := allocateInto(s.hold, s.order, budget+budget*marginPct/100, demands)
	for i := range demands {
		if out[i] < demands[i].Current && hold[i] >= demands[i].Current {
			out[i] = demands[i].Current
		}
	}
	return out
}

// Allocate is Allocate. The result is valid until the next Allocate on s
// (WithHold's stays valid).
func (s *AllocScratch) Allocate(budget uint64, demands []Demand) []int8 {
	s.grow(len(demands))
	return allocateInto(s.plain, s.order, budget, demands)
}

func (s *AllocScratch) grow(n int) {
	if cap(s.order) < n {
		s.out, s.hold, s.plain = make([]int8, n), make([]int8, n), make([]int8, n)
		s.order = make([]int, n)
	}
	s.out, s.hold, s.plain, s.order = s.out[:n], s.hold[:n], s.plain[:n], s.order[:n]
}

// lowestLayer is the first layer the publisher has, or -1.
func lowestLayer(d *Demand) int8 {
	for l := int8(0); l < MaxLayers; l++ {
		if d.Costs[l] > 0 {
			return l
		}
	}
	return -1
}

// DefaultLayerCost estimates a layer's bitrate before it is measured (or
// while the publisher has switched it off): about 0.1 bit per pixel at 30
// fps, within sane bounds, or by quality rank when the size is unknown.
func DefaultLayerCost(layer int8, width, height int) uint64 {
	if width > 0 && height > 0 {
		c := uint64(width*height) * 3
		return max(100_000, min(c, 4_000_000))
	}
	return [MaxLayers]uint64{150_000, 500_000, 1_500_000}[max(0, min(int(layer), MaxLayers-1))]
}

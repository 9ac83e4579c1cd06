package mixer

import (
	"cmp"
	"math"
	"slices"

	"github.com/starling-rtc/starling/sfu"
)

// A track whose publisher sends no RFC 6464 audio level (the room's
// activeSpeakers never ranks it) is decoded every frame and ranked by its
// own decoded level, with the same detector (thresholds, smoothing,
// hysteresis) the room uses, and merged into the room's ranking. It costs
// a decode per frame while it sends; browsers always send levels.

// measureFrames is the ranking tick for measured inputs: 100 ms, as the
// room's speakers tick.
const measureFrames = 5

// observeLevel adds this frame's level (-dBov of the decoded audio, or
// silence) to the input's tick.
func (in *input) observeLevel(played bool) {
	db := float64(sfu.SpeakerSilenceDB)
	if played {
		var sum float64
		for _, v := range in.pcm[:frameSamples] {
			sum += float64(v) * float64(v)
		}
		if rms := math.Sqrt(sum / frameSamples); rms > 0 {
			db = math.Min(sfu.SpeakerSilenceDB, math.Max(0, -20*math.Log10(rms)))
		}
	}
	in.dbSum += db
	in.dbN++
}

// rankMeasured feeds the measured inputs' levels to the detector every
// measureFrames frames and keeps its ranking for mergeMeasured.
func (m *Mixer) rankMeasured(now int64) {
	w := &m.work
	some := false
	for _, in := range w.inputs {
		some = some || in.measure
	}
	if !some {
		w.measured = w.measured[:0]
		return
	}
	if w.measureN++; w.measureN < measureFrames {
		return
	}
	w.measureN = 0
	if w.det == nil {
		w.det = sfu.NewSpeakerDetector()
	}
	for _, in := range w.inputs {
		if !in.measure || in.dbN == 0 {
			continue
		}
		w.det.Observe(in.owner, in.dbSum/float64(in.dbN), now)
		in.dbSum, in.dbN = 0, 0
	}
	w.measured = append(w.measured[:0], w.det.Tick(now)...)
}

// mergeMeasured adds the measured speakers to the room's ranking, loudest
// first.
func (w *workState) mergeMeasured() {
	if len(w.measured) == 0 {
		return
	}
	w.rank = append(w.rank, w.measured...)
	slices.SortStableFunc(w.rank, func(a, b sfu.SpeakerLevel) int { return cmp.Compare(b.Level, a.Level) })
}

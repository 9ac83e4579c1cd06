package mixer

// limiter keeps a mix's peaks under limitCeiling by lowering its gain, so
// that voices summed past full scale are turned down rather than clipped,
// and never wrap around (an int16 sum that overflows turns a loud peak into
// a full-scale click of the other sign). It sees a whole 20 ms frame at
// once, so it knows the frame's peak before it applies the gain.
type limiter struct {
	gain float32 // current gain, 0 < gain <= 1
}

const (
	// limitCeiling is the highest peak let through (-0.45 dBFS), leaving the
	// Opus encoder's own overshoot some room.
	limitCeiling = 0.95
	// attackSamples: a lower gain is reached within 2 ms; samples in that
	// ramp that would still exceed full scale are clamped.
	attackSamples = 96
	// releaseCoef: a higher gain comes back with a 100 ms time constant, so
	// the level does not pump between words.
	releaseCoef = 1.0 / 4800
)

// process applies the limiter to one frame in place.
func (l *limiter) process(x []float32) {
	if l.gain <= 0 {
		l.gain = 1
	}
	var peak float32
	for _, v := range x {
		if v < 0 {
			v = -v
		}
		peak = max(peak, v)
	}
	target := float32(1)
	if peak > limitCeiling {
		target = limitCeiling / peak
	}
	g := l.gain
	if target < g {
		step := (target - g) / attackSamples
		for i := range x {
			if i < attackSamples {
				g += step
			} else {
				g = target
			}
			x[i] = clamp(x[i] * g)
		}
	} else {
		for i := range x {
			g += (target - g) * releaseCoef
			x[i] = clamp(x[i] * g)
		}
	}
	l.gain = g
}

func clamp(v float32) float32 {
	return max(-1, min(1, v))
}

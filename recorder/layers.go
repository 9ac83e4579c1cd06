package recorder

import (
	"time"

	"github.com/starling-rtc/starling/sfu"
)

// Layer selection for simulcast tracks (issue 17, defect 6): a recording
// starts on the first keyframe of any layer, moves up at the top layer's
// next keyframe and leaves a layer silent for layerTimeout; video frames
// are held back by one so that a switch's keyframe replaces the old
// layer's picture of the same instant.

func highestLayer(mask uint8) int8 {
	for i := sfu.MaxLayers - 1; i > 0; i-- {
		if mask&(1<<i) != 0 {
			return int8(i)
		}
	}
	return 0
}

// switchLayer moves recording to p's layer: the old layer's frames are
// written, and the new layer's timestamps are mapped onto the timeline.
func (t *TrackRecorder) switchLayer(p *pkt) {
	old := t.wLayer
	t.dropBuilder(false)
	t.wLayer = p.layer
	t.haveLast = false
	if !t.started {
		return
	}
	t.needKey = true
	// Map the new layer's RTP time onto the timeline through both layers'
	// sender reports (one NTP clock), else through both layers' clocks on
	// this process's (layerclock.go), else through the arrival time.
	outMs := t.lastOutMs + (p.arrival-t.lastArr)/int64(time.Millisecond)
	if old >= 0 {
		now := monoNow()
		atOld, ok1 := t.clocks[old].capture(t.tsLast, now, t.ci.clock)
		atNew, ok2 := t.clocks[p.layer].capture(p.Timestamp, now, t.ci.clock)
		if ok1 && ok2 {
			outMs = t.lastOutMs + (atNew-atOld)/int64(time.Millisecond)
		}
	}
	t.srMu.Lock()
	var so, sn *SenderReport
	if old >= 0 {
		so = t.srLatest[old]
	}
	sn = t.srLatest[p.layer]
	t.srMu.Unlock()
	if so != nil && sn != nil {
		oldMs := t.offsetMs + (t.tsExt+int64(int32(so.RTP-t.tsLast)))*1000/int64(t.ci.clock)
		atNew := sn.Time().Add(time.Duration(int64(int32(p.Timestamp-sn.RTP)) * int64(time.Second) / int64(t.ci.clock)))
		outMs = oldMs + atNew.Sub(so.Time()).Milliseconds()
	}
	if outMs <= t.lastOutMs {
		outMs = t.lastOutMs + 1
	}
	t.offsetMs = outMs
	t.tsLast = p.Timestamp
	t.tsExt = 0
	t.resMu.Lock()
	t.res.LayerSwitches++
	t.resMu.Unlock()
	t.log.Debug("recording switched layer", "from", old, "to", p.layer)
}

// srSettle: the sender report that places a track's first frame must come
// this long after that frame. A report sent with the first frame can still
// map its timestamp to an earlier instant: pion's sender takes a
// timestamp's time from its first packet, and a publisher that sent padding
// (bandwidth probes) before its media sends that padding with the first
// frame's timestamp, so until the second frame its reports put the first
// frame where the padding began (seen as 850 ms in a recording test).
const srSettle = 100 * time.Millisecond

// tick picks the layer to record and notes the first sender report.
func (t *TrackRecorder) tick() {
	now := monoNow()
	if t.started {
		t.srMu.Lock()
		if t.srFirst == nil && t.res.StartLayer >= 0 {
			if sr := t.srLatest[t.res.StartLayer]; sr != nil && sr.Arrived.After(t.res.FirstArrival.Add(srSettle)) {
				t.srFirst = sr
			}
		}
		t.srMu.Unlock()
	}
	if t.w != nil {
		_ = t.w.FlushIfDue() // an error: run() sees w.Err()
	}
	if d := t.drops.Load(); d > t.loggedDrop {
		t.log.Warn("recorder dropped packets: writer too slow", "drops", d-t.loggedDrop)
		t.loggedDrop = d
	}
	if !t.ci.video {
		return
	}
	best := int8(-1)
	present := t.src.Layers()
	for i := int8(0); i < sfu.MaxLayers; i++ {
		if present&(1<<i) != 0 && now-t.lastSeen[i].Load() < int64(layerTimeout) {
			best = i
		}
	}
	if best < 0 {
		return
	}
	t.target.Store(int32(best))
	if int8(t.cur.Load()) != best && time.Since(t.switchReq[best]) > switchKeyEvery {
		t.switchReq[best] = time.Now()
		t.src.RequestKeyframe(best)
	}
	if t.started && t.needKey && time.Since(t.lastKeyReq) > time.Second {
		t.lastKeyReq = time.Now()
		t.src.RequestKeyframe(t.wLayer)
	}
	if !t.started && time.Since(t.lastKeyReq) > time.Second {
		t.lastKeyReq = time.Now()
		t.src.RequestKeyframe(int8(t.cur.Load()))
	}
}

// writePending writes the held-back frame, if any.
func (t *TrackRecorder) writePending() {
	if !t.pend.ok || t.w == nil {
		return
	}
	p := t.pend
	t.pend = pendingFrame{}
	_ = t.w.WriteFrame(p.ms, p.dur, p.key, p.data) // an error: run() sees w.Err()
}

func (t *TrackRecorder) noteWritten() {
	t.resMu.Lock()
	t.res.Frames = t.w.Frames()
	t.res.Duration = t.w.Duration()
	t.resMu.Unlock()
}

// sameInstantMs: two frames of different layers closer than this show the
// same capture instant (half a frame at 60 fps, above the jitter of the
// layer timestamp mapping).
const sameInstantMs = 12

// pendingFrame is the video frame held back by one (see emit).
type pendingFrame struct {
	ok      bool
	key     bool
	layer   int8
	ms, dur int64
	data    []byte
}

package recorder

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4/pkg/media"
	"github.com/pion/webrtc/v4/pkg/media/samplebuilder"
)

// The TrackRecorder's writer goroutine (track.go has the sink side that
// feeds it): it reorders the queued packets into frames, starts on a
// keyframe, follows simulcast layers, and writes the file.

func (t *TrackRecorder) run() {
	defer close(t.done)
	every := 250 * time.Millisecond
	if t.ci.video {
		every = tickEvery
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case p := <-t.queue:
			t.handle(p)
		case <-tick.C:
			t.tick()
		case <-t.stop:
			for {
				select {
				case p := <-t.queue:
					t.handle(p)
					continue
				default:
				}
				break
			}
			t.finish(nil)
			return
		}
		if t.w != nil && t.w.Err() != nil {
			t.fail(t.w.Err())
			return
		}
		if t.res.Err != nil { // set by a failed file creation
			t.fail(nil)
			return
		}
	}
}

// fail stops the recording after a write error, leaving the file playable.
func (t *TrackRecorder) fail(err error) {
	t.closed.Store(true)
	t.src.RemoveSink(t) // takes the source's lock briefly; never held while it calls sinks
	t.finish(err)
	t.once.Do(func() { close(t.stop) })
}

func (t *TrackRecorder) release(p *pkt) {
	if h, ok := t.held[p.SequenceNumber]; ok && h == p {
		delete(t.held, p.SequenceNumber)
	}
	select {
	case t.free <- p:
	default:
	}
}

func (t *TrackRecorder) newBuilder() {
	t.sb = samplebuilder.New(t.ci.maxLate, t.ci.newDepak(), t.ci.clock,
		samplebuilder.WithRTPHeaders(true),
		samplebuilder.WithMaxTimeDelay(time.Second),
		samplebuilder.WithPacketReleaseHandler(func(rp *rtp.Packet) {
			if p, ok := t.held[rp.SequenceNumber]; ok && &p.Packet == rp {
				t.release(p)
			}
		}))
}

// dropBuilder empties the jitter buffer (writing complete frames unless
// discard) and reclaims every buffer it held.
//
// It does not call the samplebuilder's Flush: in pion v4.2.26, when the last
// frame held has exactly two packets, Flush walks its whole 65536-slot ring
// again at every step, 1-3 s of CPU per track (BenchmarkSampleBuilderFlush);
// ten tracks stopping at once took both cores for 5 s and cost forwarding
// 3-5% loss. The builder releases a complete frame once the packet after it
// is there, so a one-packet sentinel after the newest packet releases the
// last frame instead; what is lost against Flush is a frame still missing a
// packet at the very end.
func (t *TrackRecorder) dropBuilder(discard bool) {
	if t.sb == nil {
		return
	}
	if !discard && t.pushed {
		t.sb.Push(&rtp.Packet{
			Header:  rtp.Header{Version: 2, SequenceNumber: t.maxSeq + 1, Timestamp: t.maxTS + 1},
			Payload: []byte{0},
		})
	}
	t.pushed = false
	for s := t.sb.Pop(); s != nil; s = t.sb.Pop() {
		if !discard {
			t.writeSample(s)
		}
	}
	for _, p := range t.held {
		select {
		case t.free <- p:
		default:
		}
	}
	clear(t.held)
	t.sb = nil
}

func (t *TrackRecorder) handle(p *pkt) {
	if p.switchL && p.layer != t.wLayer {
		t.switchLayer(p)
	} else if p.layer != t.wLayer {
		if t.wLayer >= 0 {
			t.release(p) // late packet of a layer we left
			return
		}
		t.wLayer = p.layer // first packets: the layer chosen at start
	}
	if t.sb == nil {
		t.newBuilder()
	}
	if _, dup := t.held[p.SequenceNumber]; dup {
		t.release(p)
		return
	}
	t.noteArrival(p.Timestamp, p.arrival)
	t.held[p.SequenceNumber] = p
	if !t.pushed || int16(p.SequenceNumber-t.maxSeq) > 0 {
		t.pushed, t.maxSeq, t.maxTS = true, p.SequenceNumber, p.Timestamp
	}
	t.sb.Push(&p.Packet)
	for s := t.sb.Pop(); s != nil; s = t.sb.Pop() {
		t.writeSample(s)
	}
}

func (t *TrackRecorder) noteArrival(ts uint32, arr int64) {
	last := &t.arrivals[(t.arrN+len(t.arrivals)-1)%len(t.arrivals)]
	if t.arrN > 0 && last.ts == ts {
		return
	}
	t.arrivals[t.arrN%len(t.arrivals)] = struct {
		ts  uint32
		arr int64
	}{ts, arr}
	t.arrN++
}

func (t *TrackRecorder) arrivalOf(ts uint32) int64 {
	for _, a := range t.arrivals {
		if a.ts == ts && a.arr != 0 {
			return a.arr
		}
	}
	return monoNow()
}

// writeSample checks a reassembled frame and writes it.
func (t *TrackRecorder) writeSample(s *media.Sample) {
	hdrs := s.RTPHeaders
	if len(hdrs) == 0 {
		return
	}
	first, last := hdrs[0].SequenceNumber, hdrs[len(hdrs)-1].SequenceNumber
	complete := int(last-first) == len(hdrs)-1
	if t.ci.video && !hdrs[len(hdrs)-1].Marker {
		complete = false
	}
	gap := s.PrevDroppedPackets > 0 || (t.haveLast && first != t.lastSeq+1)
	t.haveLast, t.lastSeq = true, last
	if !t.ci.video {
		if complete {
			t.emit(s, frameInfo{keyframe: true})
		}
		return
	}
	if gap || !complete {
		t.needKey = true
	}
	var fi frameInfo
	if complete {
		fi = inspectFrame(t.ci.kind, s.Data)
	}
	if t.needKey {
		if !complete || !fi.keyframe {
			t.resMu.Lock()
			t.res.DroppedFrames++
			t.resMu.Unlock()
			if time.Since(t.lastKeyReq) > 500*time.Millisecond {
				t.lastKeyReq = time.Now()
				t.src.RequestKeyframe(t.wLayer)
			}
			return
		}
		t.needKey = false
	}
	t.emit(s, fi)
}

func (t *TrackRecorder) emit(s *media.Sample, fi frameInfo) {
	ts := s.PacketTimestamp
	if !t.started {
		if err := t.createFile(fi); err != nil {
			t.resMu.Lock()
			t.res.Err = err
			t.resMu.Unlock()
			return
		}
		t.started = true
		t.startTS = ts
		t.tsLast = ts
		t.tsExt = 0
		t.offsetMs = 0
		arr := t.arrivalOf(ts)
		t.resMu.Lock()
		t.res.FirstArrival = monoTime(arr)
		t.res.FirstRTP = ts
		t.res.StartLayer = t.wLayer
		t.resMu.Unlock()
		// after the start is known, so that a manifest written now places
		// the file on the room clock
		if t.opts.OnFileCreated != nil {
			t.opts.OnFileCreated(t.path)
		}
	}
	t.tsExt += int64(int32(ts - t.tsLast))
	t.tsLast = ts
	outMs := t.offsetMs + t.tsExt*1000/int64(t.ci.clock)
	if outMs < t.lastOutMs {
		outMs = t.lastOutMs
	}
	dur := s.Duration.Milliseconds()
	if dur <= 0 || dur > 1000 {
		dur = 20
		if t.ci.video {
			dur = 33
		}
	}
	// Video frames are held back by one: after an up-switch the new
	// layer's keyframe usually shows the same instant as the old layer's
	// last frame, and two frames of one instant (1 ms apart) confuse
	// constant-rate muxers downstream; the new picture replaces the old.
	if t.pend.ok && t.pend.layer != t.wLayer && fi.keyframe && outMs-t.pend.ms < sameInstantMs {
		outMs = t.pend.ms
		t.pend.ok = false
	}
	t.writePending()
	if t.ci.video {
		t.pend = pendingFrame{ok: true, ms: outMs, dur: dur, key: fi.keyframe, data: s.Data, layer: t.wLayer}
	} else if err := t.w.WriteFrame(outMs, dur, fi.keyframe, s.Data); err != nil {
		return // run() sees w.Err()
	}
	t.lastOutMs = outMs
	t.lastArr = t.arrivalOf(ts)
	t.noteWritten()
}

func (t *TrackRecorder) createFile(fi frameInfo) error {
	if err := os.MkdirAll(t.opts.Dir, 0o755); err != nil {
		return fmt.Errorf("recording directory: %w", err)
	}
	path := filepath.Join(t.opts.Dir, t.opts.Name+t.ci.ext)
	te := trackEntry(t.ci, t.opts.Title, int(t.codec.Channels), fi)
	w, err := newMKVWriter(path, t.ci.docType, te, time.Now())
	if err != nil {
		return fmt.Errorf("creating %s: %w", path, err)
	}
	t.w, t.path = w, path
	t.resMu.Lock()
	t.res.File = path
	if te.Video != nil {
		t.res.Width, t.res.Height = int(te.Video.PixelWidth), int(te.Video.PixelHeight)
	}
	t.resMu.Unlock()
	t.log.Info("recording track", "file", path, "codec", t.codec.MimeType)
	return nil
}

// finish writes what the jitter buffer still holds and finalises the file.
func (t *TrackRecorder) finish(cause error) {
	if t.w != nil && t.w.Err() == nil && cause == nil {
		t.dropBuilder(false)
		t.writePending()
	} else {
		t.dropBuilder(true)
	}
	t.srMu.Lock()
	if t.srFirst == nil && t.res.StartLayer >= 0 {
		if sr := t.srLatest[t.res.StartLayer]; sr != nil {
			t.srFirst = sr
		}
	}
	t.srMu.Unlock()
	var err error
	if t.w != nil {
		err = t.w.Close()
	}
	t.resMu.Lock()
	if t.w != nil {
		t.res.Frames = t.w.Frames()
		t.res.Duration = t.w.Duration()
	}
	if cause != nil && t.res.Err == nil {
		t.res.Err = fmt.Errorf("writing %s: %w", t.path, cause)
	} else if err != nil && t.res.Err == nil {
		t.res.Err = fmt.Errorf("finalising %s: %w", t.path, err)
	}
	res := t.res
	t.resMu.Unlock()
	if res.Err != nil {
		t.log.Error("track recording stopped", "err", res.Err, "file", res.File, "frames", res.Frames)
	} else {
		t.log.Info("track recording finished", "file", res.File, "frames", res.Frames, "duration", res.Duration, "drops", t.drops.Load())
	}
	if t.opts.OnDone != nil {
		t.opts.OnDone(t.Result())
	}
}

package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/auth"
	"github.com/starling-rtc/starling/client"
)

// participant is one simulated client.
type participant struct {
	room, name string
	url        string // the node it joins through (spread)
	index      int    // among the room's publishers
	publish    bool
	receive    bool

	c        *client.Client
	joinTime time.Duration
	senders  []*sender

	mu      sync.Mutex
	streams []*stream
}

func (p *participant) addStream(s *stream) {
	p.mu.Lock()
	p.streams = append(p.streams, s)
	p.mu.Unlock()
}

func (p *participant) streamList() []*stream {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*stream(nil), p.streams...)
}

type runner struct {
	cfg   Config
	api   *webrtc.API
	parts []*participant

	joined, failed atomic.Int64
	phase          atomic.Value // string
	mediaStart     atomic.Int64 // monoNow when publishing began
	startedAt      time.Time
	rec            *recordings // nil without Config.Record
	win            *window     // the measurement window, for delivery by send time
}

// Run joins the participants, sends media for cfg.Duration and returns what
// was measured over the part after cfg.Warmup. Cancelling ctx ends the run
// early; the summary then covers what ran.
func Run(ctx context.Context, cfg Config) (*Summary, error) {
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	// Its publishers' RTX carries repaired-rid (client/rtxrid.go). pion's
	// default interceptors minus the stats one, which costs a mutex and
	// bookkeeping per received packet for GetStats, which nothing here reads.
	api, err := client.LoopbackAPIWith(nil, lightInterceptors)
	if err != nil {
		return nil, err
	}
	r := &runner{cfg: cfg, api: api, startedAt: time.Now(), win: newWindow()}
	if cfg.Record {
		if r.rec, err = newRecordings(&r.cfg); err != nil {
			return nil, err
		}
	}
	r.phase.Store("joining")
	runID := strconv.FormatInt(time.Now().UnixNano()%1e6, 36)
	var rooms []string
	for room := 0; room < cfg.Rooms; room++ {
		name := fmt.Sprintf("load-%s-%d", runID, room)
		rooms = append(rooms, name)
		for i := 0; i < cfg.Publishers; i++ {
			r.parts = append(r.parts, &participant{room: name, name: fmt.Sprintf("pub-%d-%d", room, i), index: i,
				publish: true, receive: cfg.publishersReceive()})
		}
		for i := 0; i < cfg.Subscribers; i++ {
			r.parts = append(r.parts, &participant{room: name, name: fmt.Sprintf("sub-%d-%d", room, i), receive: true})
		}
	}
	spread(cfg.urls(), r.parts, cfg.PinRooms)

	start := r.sample()
	progressDone := make(chan struct{})
	stopProgress := make(chan struct{})
	go func() {
		defer close(progressDone)
		r.progress(stopProgress)
	}()
	defer func() {
		if r.rec != nil {
			r.rec.stop() // after an error; a no-op once stopped
		}
		close(stopProgress)
		<-progressDone
		r.closeAll()
	}()

	r.joinAll(ctx)
	if r.joined.Load() == 0 {
		return nil, errors.New("no participant could join (is the server running at " + cfg.URL + "?)")
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("interrupted while joining: %w", ctx.Err())
	}

	if r.rec != nil {
		// Before any media: the recorder attaches to tracks as they are
		// published and starts each file on the first keyframe.
		r.phase.Store("recording")
		if err := r.rec.start(ctx, rooms); err != nil {
			return nil, err
		}
	}

	r.phase.Store("publishing")
	mediaCtx, stopMedia := context.WithCancel(context.Background())
	var media sync.WaitGroup
	defer func() {
		stopMedia()
		media.Wait()
	}()
	mediaStart := time.Now()
	r.mediaStart.Store(monoNow())
	r.publishAll(ctx, mediaCtx, &media)

	var recStopped chan []RecordingStats
	if r.rec != nil && cfg.RecordStopAfter > 0 {
		recStopped = make(chan []RecordingStats, 1)
		go func() {
			wait(ctx, time.Until(mediaStart.Add(cfg.RecordStopAfter)))
			fmt.Fprintf(orDiscard(cfg.Progress), "%5.0fs  stopping the recordings\n", time.Since(r.startedAt).Seconds())
			recStopped <- r.rec.stop()
		}()
	}

	r.phase.Store("warming up")
	first := r.snapshot()
	a := first
	measured := false
	if wait(ctx, time.Until(mediaStart.Add(cfg.Warmup))) {
		if cfg.StartWait > 0 {
			r.phase.Store("waiting for every stream to start")
			r.awaitStreams(ctx, cfg.StartWait)
		}
		r.win.start.Store(monoNow())
		a = r.snapshot()
		r.phase.Store("measuring")
		measured = wait(ctx, cfg.Duration-cfg.Warmup)
	}
	r.win.end.Store(monoNow())
	b := r.snapshot()
	if measured {
		r.phase.Store("receiving the window's last packets")
		r.awaitInFlight(ctx)
	}
	r.phase.Store("stopping")
	sum := r.summarize(start, a, b)
	if recStopped != nil {
		sum.Recordings = <-recStopped
	} else if r.rec != nil {
		sum.Recordings = r.rec.stop()
	}
	return sum, nil
}

// awaitStreams waits (at most max) until every receiver has had a packet of
// every track it should get: the figures then measure a running call, not
// a slow machine's late start.
func (r *runner) awaitStreams(ctx context.Context, max time.Duration) {
	for end := time.Now().Add(max); time.Now().Before(end); {
		if _, missing := r.notStarted(r.liveCounts()); missing == 0 {
			return
		}
		if !wait(ctx, 50*time.Millisecond) {
			return
		}
	}
}

// liveCounts is the part of a snapshot notStarted reads: each stream's
// packet count now.
func (r *runner) liveCounts() snapshot {
	s := snapshot{streams: map[*stream]streamSnap{}}
	for _, p := range r.parts {
		for _, st := range p.streamList() {
			s.streams[st] = streamSnap{packets: st.packets.Load()}
		}
	}
	return s
}

// awaitInFlight waits for the packets sent inside the window that are still
// on their way: until no stream's count of them grew for 300 ms (3 s at
// most), so a delivery ratio never counts a delayed packet as lost.
func (r *runner) awaitInFlight(ctx context.Context) {
	total := func() (n uint64) {
		for _, p := range r.parts {
			for _, st := range p.streamList() {
				n += st.inWindow.Load()
			}
		}
		return n
	}
	last, still := total(), 0
	for end := time.Now().Add(3 * time.Second); still < 3 && time.Now().Before(end); {
		if !wait(ctx, 100*time.Millisecond) {
			return
		}
		if n := total(); n != last {
			last, still = n, 0
		} else {
			still++
		}
	}
}

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

// wait sleeps for d unless ctx ends first; it reports whether it slept.
func wait(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// forEach runs f for every participant, n at a time, stopping early when ctx ends.
func forEach(ctx context.Context, parts []*participant, n int, f func(*participant)) {
	sem := make(chan struct{}, n)
	var wg sync.WaitGroup
	for _, p := range parts {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			f(p)
		}()
	}
	wg.Wait()
}

func (r *runner) joinAll(ctx context.Context) {
	forEach(ctx, r.parts, r.cfg.JoinConcurrency, func(p *participant) {
		// Viewers never publish: their publisher connection is never
		// opened, as a receive-only app would do (client.Options).
		opts := client.Options{Name: p.name, API: r.api, Logger: r.cfg.Logger, LazyPublisher: !p.publish,
			AudioMix: r.cfg.Mix && p.receive}
		tok, err := r.cfg.mintToken(p.name, auth.Grants{Room: p.room})
		if err != nil {
			r.failed.Add(1)
			r.cfg.Logger.Warn("join token", "participant", p.name, "err", err)
			return
		}
		opts.Token = tok
		if !p.receive {
			off := false
			opts.AutoSubscribe = &off
		}
		jctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		t0 := time.Now()
		c, err := client.Dial(jctx, p.url, p.room, opts)
		if err != nil {
			r.failed.Add(1)
			r.cfg.Logger.Warn("join failed", "participant", p.name, "err", err)
			return
		}
		p.joinTime = time.Since(t0)
		if p.receive {
			// Nothing is published before every participant has joined, so
			// no track can arrive before this handler is set.
			c.OnTrack(func(rt *client.RemoteTrack) {
				video := rt.Track.Kind() == webrtc.RTPCodecTypeVideo
				codec := ""
				if video {
					codec = codecOf(rt.Track.Codec().MimeType)
				}
				s := newStream(rt.TrackID, video, codec)
				s.win = r.win
				s.mix = rt.ParticipantID == "mix" // the server's audio mix (Config.Mix)
				p.addStream(s)
				go s.read(rt.Track)
				go drainRTCP(rt.Receiver)
			})
		}
		p.c = c
		r.joined.Add(1)
	})
}
func (r *runner) closeAll() {
	forEach(context.Background(), r.parts, 16, func(p *participant) {
		if p.c == nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = p.c.Leave(ctx) // closes the client even when leave fails
	})
}

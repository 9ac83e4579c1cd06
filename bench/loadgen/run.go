package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/auth"
	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/protocol"
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
	spread(cfg.urls(), r.parts)

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

// codecOf maps a video MIME type to the codecs whose keyframe sizes the
// subscribers read; "" for others.
func codecOf(mime string) string {
	switch strings.ToLower(mime) {
	case strings.ToLower(webrtc.MimeTypeVP8):
		return CodecVP8
	case strings.ToLower(webrtc.MimeTypeH264):
		return CodecH264
	}
	return ""
}

// videoCodec is the capability the publishers' video tracks carry.
func (c *Config) videoCodec() webrtc.RTPCodecCapability {
	if c.Codec == CodecH264 {
		return webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: H264Fmtp}
	}
	return webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}
}

// newVideoSender makes a publisher's video track: one layer, or three
// simulcast layers with their sizes announced to the server.
func (r *runner) newVideoSender(name string) (*sender, client.LocalTrack, error) {
	vp := VideoParams{Bitrate: r.cfg.VideoBitrate, FPS: r.cfg.FPS, Width: r.cfg.Width, Height: r.cfg.Height,
		KeyframeInterval: r.cfg.KeyframeInterval}
	s := &sender{video: true, codec: r.cfg.Codec}
	lt := client.LocalTrack{Source: protocol.SourceCamera, Name: "camera"}
	if !r.cfg.simulcast() {
		t, err := webrtc.NewTrackLocalStaticRTP(r.cfg.videoCodec(), "video", name)
		if err != nil {
			return nil, lt, err
		}
		s.track = t
		s.layers = []*videoLayer{{params: vp}}
		lt.Track = t
		lt.OnKeyframeRequest = s.layers[0].requestKeyframe
		return s, lt, nil
	}
	sim, err := client.NewSimulcastTrack(r.cfg.videoCodec(), "video", name, SimulcastRIDs[:]...)
	if err != nil {
		return nil, lt, err
	}
	s.sim = sim
	for i, lp := range layerParams(vp) {
		s.layers = append(s.layers, &videoLayer{rid: SimulcastRIDs[i], params: lp})
		lt.Layers = append(lt.Layers, protocol.LayerHint{RID: SimulcastRIDs[i], Width: lp.Width, Height: lp.Height})
	}
	lt.Simulcast = sim
	// The client reads the RTCP of the first encoding (pion's
	// RTPSender.ReadRTCP); the others are read by readLayerRTCP.
	lt.OnKeyframeRequest = s.layers[0].requestKeyframe
	return s, lt, nil
}

// readLayerRTCP reads one simulcast encoding's RTCP until the sender stops:
// keyframe requests for that layer (NACKs reach pion's responder only when
// the RTCP is read).
func readLayerRTCP(snd *webrtc.RTPSender, l *videoLayer) {
	buf := make([]byte, 1500)
	for {
		n, _, err := snd.ReadSimulcast(buf, l.rid)
		if err != nil {
			return
		}
		pkts, err := rtcp.Unmarshal(buf[:n])
		if err != nil {
			continue
		}
		for _, p := range pkts {
			switch p.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				l.requestKeyframe()
			}
		}
	}
}

func (r *runner) publishAll(ctx, mediaCtx context.Context, media *sync.WaitGroup) {
	var pubs []*participant
	for _, p := range r.parts {
		if p.publish && p.c != nil {
			pubs = append(pubs, p)
		}
	}
	var seq atomic.Uint64
	forEach(ctx, pubs, r.cfg.JoinConcurrency, func(p *participant) {
		var tracks []client.LocalTrack
		byCID := map[string]*sender{}
		if r.cfg.Video {
			s, lt, err := r.newVideoSender(p.name)
			if err != nil {
				r.cfg.Logger.Warn("video track", "err", err)
				return
			}
			byCID["video"] = s
			tracks = append(tracks, lt)
		}
		if r.cfg.Audio {
			t, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", p.name)
			if err != nil {
				r.cfg.Logger.Warn("audio track", "err", err)
				return
			}
			byCID["audio"] = &sender{track: t}
			tracks = append(tracks, client.LocalTrack{Track: t, Source: protocol.SourceMicrophone, Name: "mic"})
		}
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		published, err := p.c.Publish(pctx, tracks...)
		if err != nil {
			r.cfg.Logger.Warn("publish failed", "participant", p.name, "err", err)
			return
		}
		for _, pub := range published {
			s := byCID[pub.CID]
			if s == nil {
				continue
			}
			s.serverID = pub.ID
			if !s.video && p.index >= r.cfg.Speakers {
				// A listener on stage: microphone muted, track still sending.
				err := p.c.Call(pctx, protocol.MethodMute, protocol.MuteParams{TrackID: pub.ID, Muted: true}, nil)
				if err != nil {
					r.cfg.Logger.Warn("mute failed", "participant", p.name, "err", err)
				} else {
					s.muted = true
				}
			}
			p.senders = append(p.senders, s)
			if s.sim != nil {
				for _, l := range s.layers[1:] {
					go readLayerRTCP(pub.Sender, l)
				}
			}
			if !s.video && !s.muted && r.cfg.Mix {
				s.levelID = audioLevelID(pub.Sender) // the mixer mixes the loudest by this level
			}
			seed := uint64(time.Now().UnixNano()) ^ seq.Add(0x9e3779b97f4a7c15)
			media.Add(1)
			go func() {
				defer media.Done()
				if s.video {
					s.runVideo(mediaCtx, seed)
				} else {
					s.runAudio(mediaCtx, r.cfg.AudioBitrate, seed)
				}
			}()
		}
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

// procPair is the server's and this process's usage at one instant.
type procPair struct {
	server, self     ProcSample   // server: summed over the nodes
	nodes            []ProcSample // each server process, in Config.serverPIDs order
	serverOK, selfOK bool
	machine          MachineSample
	machineOK        bool
}

func (r *runner) sample() procPair {
	var s procPair
	var err error
	if pids := r.cfg.serverPIDs(); len(pids) > 0 {
		s.serverOK = true
		for _, pid := range pids {
			n, err := ReadProc(pid)
			s.serverOK = s.serverOK && err == nil
			s.nodes = append(s.nodes, n)
			s.server.At, s.server.Ticks, s.server.RSSKB = n.At, s.server.Ticks+n.Ticks, s.server.RSSKB+n.RSSKB
		}
	}
	s.self, err = ReadProc(0)
	s.selfOK = err == nil
	s.machine, err = ReadMachine()
	s.machineOK = err == nil
	return s
}

// snapshot is every counter at one instant.
type snapshot struct {
	at      time.Time
	procs   procPair
	streams map[*stream]streamSnap
	sent    map[*sender]senderSnap

	serverUDP, selfUDP     UDPSample
	serverUDPOK, selfUDPOK bool

	metrics   metricsSample // the servers' /metrics (servermetrics.go)
	metricsOK bool

	layerChanges map[*participant]layerCount
}

// layerCount counts the subscriptionUpdated notifications a participant got:
// the server changing which layer it forwards, or pausing the track.
type layerCount struct{ changes, paused uint64 }

func countLayerChanges(c *client.Client) layerCount {
	var n layerCount
	for _, e := range c.Events() {
		if e.Method != protocol.NotifySubscriptionUpdated {
			continue
		}
		n.changes++
		var p protocol.SubscriptionUpdatedParams
		if json.Unmarshal(e.Params, &p) == nil && p.Layer == protocol.QualityPaused {
			n.paused++
		}
	}
	return n
}

// senderSnap is a sender's counters; layers for video, low to high.
type senderSnap struct {
	packets, bytes uint64
	layers         []layerSnap
}

type layerSnap struct{ packets, bytes, frames, keyframes, keyReqs, skipped uint64 }

func (sd *sender) snapshot() senderSnap {
	s := senderSnap{packets: sd.packets.Load(), bytes: sd.bytes.Load()}
	for _, l := range sd.layers {
		s.layers = append(s.layers, layerSnap{l.packets.Load(), l.bytes.Load(), l.frames.Load(),
			l.keyframes.Load(), l.keyReqs.Load(), l.skipped.Load()})
	}
	return s
}

func (r *runner) snapshot() snapshot {
	s := snapshot{at: time.Now(), streams: map[*stream]streamSnap{}, sent: map[*sender]senderSnap{},
		layerChanges: map[*participant]layerCount{}}
	for _, p := range r.parts {
		if p.c != nil && p.receive {
			s.layerChanges[p] = countLayerChanges(p.c)
		}
		for _, st := range p.streamList() {
			s.streams[st] = st.snapshot()
		}
		for _, sd := range p.senders {
			s.sent[sd] = sd.snapshot()
		}
	}
	s.procs = r.sample()
	s.metrics, s.metricsOK = r.scrapeMetrics()
	var err error
	if pids := r.cfg.serverPIDs(); len(pids) > 0 {
		s.serverUDPOK = true
		for _, pid := range pids {
			u, err := ReadUDP(pid)
			s.serverUDPOK = s.serverUDPOK && err == nil
			s.serverUDP.Drops += u.Drops
			s.serverUDP.RxQueued += u.RxQueued
		}
	}
	s.selfUDP, err = ReadUDP(0)
	s.selfUDPOK = err == nil
	return s
}

// progress prints one line per second until stop is closed.
func (r *runner) progress(stop <-chan struct{}) {
	if r.cfg.Progress == nil {
		<-stop
		return
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	prev := r.sample()
	prevAt, prevPkts := time.Now(), uint64(0)
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		now := time.Now()
		var pkts uint64
		started, streams := 0, 0
		for _, p := range r.parts {
			for _, s := range p.streamList() {
				streams++
				n := s.packets.Load()
				pkts += n
				if n > 0 {
					started++
				}
			}
		}
		cur := r.sample()
		line := fmt.Sprintf("%5.0fs  %-10s joined %d/%d", now.Sub(r.startedAt).Seconds(), r.phase.Load(),
			r.joined.Load(), len(r.parts))
		if f := r.failed.Load(); f > 0 {
			line += fmt.Sprintf(" (%d failed)", f)
		}
		line += fmt.Sprintf("  streams %d/%d  rx %.0f pkt/s", started, streams,
			float64(pkts-prevPkts)/now.Sub(prevAt).Seconds())
		if cur.serverOK && prev.serverOK {
			line += fmt.Sprintf("  server CPU %.0f%% RSS %.0f MB", CPUPercent(prev.server, cur.server), float64(cur.server.RSSKB)/1024)
		}
		if cur.selfOK && prev.selfOK {
			line += fmt.Sprintf("  gen CPU %.0f%%", CPUPercent(prev.self, cur.self))
		}
		if cur.machineOK && prev.machineOK {
			line += fmt.Sprintf("  machine %.0f%%", MachinePercent(prev.machine, cur.machine))
		}
		if r.rec != nil {
			if n, ok := r.rec.bytesSoFar(); ok {
				line += fmt.Sprintf("  recorded %.1f MB", float64(n)/1e6)
			}
		}
		fmt.Fprintln(r.cfg.Progress, line)
		prev, prevAt, prevPkts = cur, now, pkts
	}
}

// lightInterceptors registers what a WebRTC endpoint needs on the wire (NACK
// both ways, sender and receiver reports, simulcast header extensions,
// transport-wide congestion control feedback) and nothing for local
// statistics.
func lightInterceptors(m *webrtc.MediaEngine, ir *interceptor.Registry) error {
	// The RFC 6464 audio level, as browsers send it (Config.Mix uses it).
	if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: audioLevelURI}, webrtc.RTPCodecTypeAudio); err != nil {
		return err
	}
	if err := webrtc.ConfigureNack(m, ir); err != nil {
		return err
	}
	if err := webrtc.ConfigureRTCPReports(ir); err != nil {
		return err
	}
	if err := webrtc.ConfigureSimulcastExtensionHeaders(m); err != nil {
		return err
	}
	// Starling's client's feedback, not pion's twcc.SenderInterceptor: a
	// goroutine hand-off and four allocations per packet received, which at
	// 300 viewers took the two cores from the server being measured
	// (client/twcc.go, docs/congestion.md).
	return client.ConfigureTWCCFeedback(m, ir)
}

const audioLevelURI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"

// audioLevelID is the negotiated id of the audio level extension (0 = none).
func audioLevelID(sender *webrtc.RTPSender) uint8 {
	for _, e := range sender.GetParameters().HeaderExtensions {
		if e.URI == audioLevelURI && e.ID > 0 && e.ID < 15 {
			return uint8(e.ID)
		}
	}
	return 0
}

package recorder

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/room"
)

// RoomOptions configure a RoomRecorder.
type RoomOptions struct {
	// Dir is the recording's own folder (created; must not hold a manifest).
	Dir     string
	ID      string // recording id; default: the folder's name
	Room    string
	RoomSID string
	// TrackID, if set, records only that track (a track recording).
	TrackID string
	// Continues is the id of the recording this one takes over in a
	// cluster (that recording's node lost the room's claim; claim.go).
	Continues string
	Logger    *slog.Logger
	// OnEvent receives started/finished/failed events; it must not block.
	OnEvent func(Event)
}

// Event is a recording lifecycle event (for webhooks and logs).
type Event struct {
	Type        string    `json:"type"` // see the Event* constants
	RecordingID string    `json:"recording_id"`
	Room        string    `json:"room"`
	TrackID     string    `json:"track_id,omitempty"`
	Dir         string    `json:"dir"`
	Manifest    string    `json:"manifest"`
	Files       []string  `json:"files,omitempty"`
	Error       string    `json:"error,omitempty"`
	Time        time.Time `json:"time"`
}

// Event types.
const (
	EventStarted  = "recording_started"
	EventFinished = "recording_finished"
	EventFailed   = "recording_failed"
	// With Config.Compose: composition of a finished room recording.
	EventComposeStarted = "composition_started"
	EventComposed       = "composition_finished" // Files = [the composed file]
	EventComposeFailed  = "composition_failed"
)

type roomTrack struct {
	pt      room.PublishedTrack
	rec     *TrackRecorder
	res     TrackResult
	done    bool
	removed bool
	part    int // 1, or 2... for a track recorded again (RoomRecorder.tracks)
}

// RoomRecorder records every track of a room (or one track) into one
// folder: one file per track and a manifest.json rewritten as tracks come
// and go, final when the recording stops.
type RoomRecorder struct {
	opts    RoomOptions
	log     *slog.Logger
	started time.Time

	mu sync.Mutex
	// tracks are the tracks by id, each its latest recorded part; order
	// lists every part in the order they started (a track that ended and
	// came back with the same id, a cluster node's returning after a cut,
	// is recorded again into a new file: a second part).
	tracks   map[string]*roomTrack
	order    []*roomTrack
	people   map[string]*ManifestParticipant
	pOrder   []string
	status   string
	err      error
	ended    time.Time
	stopping bool
	wg       sync.WaitGroup
	done     chan struct{}
	manMu    sync.Mutex     // serialises manifest writes
	saves    sync.WaitGroup // background manifest writes, awaited by Stop
}

// NewRoomRecorder creates the folder and the initial manifest. An
// unwritable directory fails here, with the path in the error.
func NewRoomRecorder(opts RoomOptions) (*RoomRecorder, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.ID == "" {
		opts.ID = filepath.Base(opts.Dir)
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("recording directory %s: %w", opts.Dir, err)
	}
	if _, err := os.Stat(filepath.Join(opts.Dir, ManifestFile)); err == nil {
		return nil, fmt.Errorf("recording directory %s already holds a recording", opts.Dir)
	}
	r := &RoomRecorder{
		opts: opts, log: opts.Logger.With("recording", opts.ID, "room", opts.Room),
		started: time.Now(), tracks: map[string]*roomTrack{}, people: map[string]*ManifestParticipant{},
		status: "recording", done: make(chan struct{}),
	}
	if err := writeManifest(opts.Dir, r.Manifest()); err != nil {
		return nil, fmt.Errorf("recording directory %s: %w", opts.Dir, err)
	}
	r.log.Info("recording started", "dir", opts.Dir)
	r.emit(Event{Type: EventStarted})
	go r.manifestLoop()
	return r, nil
}

// manifestEvery is how often the manifest is rewritten while recording, so
// that after a crash it lists every file with its start on the room clock
// and frame counts at most this old (`starling recover` completes them).
const manifestEvery = 2 * time.Second

func (r *RoomRecorder) manifestLoop() {
	tick := time.NewTicker(manifestEvery)
	defer tick.Stop()
	for {
		select {
		case <-r.done:
			return
		case <-tick.C:
			r.mu.Lock()
			stopping := r.stopping
			r.mu.Unlock()
			if stopping {
				return
			}
			if err := r.saveManifest(); err != nil {
				r.log.Warn("manifest not updated", "err", err)
			}
		}
	}
}

// ID is the recording id.
func (r *RoomRecorder) ID() string { return r.opts.ID }

// Dir is the recording folder.
func (r *RoomRecorder) Dir() string { return r.opts.Dir }

// Room is the recorded room's name.
func (r *RoomRecorder) Room() string { return r.opts.Room }

// RoomSID is the recorded room instance.
func (r *RoomRecorder) RoomSID() string { return r.opts.RoomSID }

// Done is closed when the recording has stopped and its files are final.
func (r *RoomRecorder) Done() <-chan struct{} { return r.done }

func (r *RoomRecorder) emit(e Event) {
	if r.opts.OnEvent == nil {
		return
	}
	e.RecordingID, e.Room, e.TrackID, e.Dir = r.opts.ID, r.opts.Room, r.opts.TrackID, r.opts.Dir
	e.Manifest = filepath.Join(r.opts.Dir, ManifestFile)
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	r.opts.OnEvent(e)
}

// fileName makes "<participant>_<track>" safe for any file system.
func fileName(pt room.PublishedTrack) string {
	if pt.Track.Source == protocol.SourceMix {
		return "mix" // the room's live audio mix: mix.webm
	}
	who := pt.ParticipantName
	if who == "" {
		who = pt.Identity
	}
	var b strings.Builder
	for _, c := range who {
		switch {
		case c < 128 && (unicode.IsLetter(c) || unicode.IsDigit(c)), c == '-':
			b.WriteRune(c)
		case b.Len() > 0 && b.Len() < 32:
			b.WriteByte('-')
		}
		if b.Len() >= 32 {
			break
		}
	}
	name := strings.Trim(b.String(), "-")
	if name == "" {
		return pt.Track.ID
	}
	return name + "_" + pt.Track.ID
}

// AddTrack starts recording a published track; a track being recorded, or
// one not selected by TrackID, is ignored. A track whose recording ended
// (its media gone) is recorded again into a new file. It never blocks on
// I/O.
func (r *RoomRecorder) AddTrack(pt room.PublishedTrack) error {
	if r.opts.TrackID != "" && pt.Track.ID != r.opts.TrackID {
		return nil
	}
	r.mu.Lock()
	if r.stopping {
		r.mu.Unlock()
		return errors.New("recording stopped")
	}
	name := fileName(pt)
	part := 1
	if prev, ok := r.tracks[pt.Track.ID]; ok {
		// A removed part counts as ended though its stop, on its own
		// goroutine, may not have finished: a track handed over (its
		// participant moved here, room/handover.go) is removed and added
		// again at once with its new source, which was ignored as a
		// repeat and never recorded.
		if !prev.done && !prev.removed {
			r.mu.Unlock()
			return nil
		}
		part = prev.part + 1
		name = fmt.Sprintf("%s-%d", name, part)
	}
	rt := &roomTrack{pt: pt, part: part}
	r.tracks[pt.Track.ID] = rt
	r.order = append(r.order, rt)
	if pt.ParticipantID != "" { // the mix belongs to nobody
		p := r.people[pt.ParticipantID]
		if p == nil {
			p = &ManifestParticipant{ID: pt.ParticipantID, Name: pt.ParticipantName, Identity: pt.Identity}
			r.people[pt.ParticipantID] = p
			r.pOrder = append(r.pOrder, pt.ParticipantID)
		}
		if part == 1 {
			p.Tracks = append(p.Tracks, pt.Track.ID)
		}
	}
	r.wg.Add(1)
	r.mu.Unlock()

	rec, err := NewTrackRecorder(pt.Source, TrackOptions{
		Dir: r.opts.Dir, Name: name, Title: pt.ParticipantName + " " + pt.Track.Kind,
		Logger: r.log,
		OnDone: func(res TrackResult) { r.trackDone(rt, res) },
		OnFileCreated: func(string) {
			r.saveManifestLater()
		},
	})
	if err != nil {
		r.log.Warn("track not recorded", "track", pt.Track.ID, "err", err)
		r.trackDone(rt, TrackResult{TrackID: pt.Track.ID, Kind: pt.Track.Kind, Codec: pt.Track.Codec, Err: err})
		return err
	}
	r.mu.Lock()
	if !rt.done { // a recorder that failed at once is already forgotten
		rt.rec = rec
	}
	// Stop may have run since the track was counted above: it closed the
	// recorders it found, not this one, and waits for this track to end.
	// RemoveTrack too found no recorder to stop.
	late := r.stopping || rt.removed
	r.mu.Unlock()
	if late {
		rec.src.RemoveSink(rec)
		rec.Close()
	}
	return nil
}

// RemoveTrack stops recording a track that was unpublished; its file is
// finalised in the background.
func (r *RoomRecorder) RemoveTrack(trackID string) {
	r.mu.Lock()
	rt := r.tracks[trackID]
	var rec *TrackRecorder
	if rt != nil {
		rt.removed = true
		rec = rt.rec
	}
	r.mu.Unlock()
	if rec != nil {
		go rec.Stop()
	}
}

func (r *RoomRecorder) trackDone(rt *roomTrack, res TrackResult) {
	r.mu.Lock()
	if rt.done {
		r.mu.Unlock()
		return
	}
	// Forget the finished recorder and the track's source: they hold the
	// packet buffers (~0.8 MB for video), the receiver and its connection,
	// and the manager keeps finished recordings listed (the soak found
	// every recorded track and its publisher's connection retained).
	rt.done, rt.res, rt.rec = true, res, nil
	rt.pt.Source = nil // the receiver, its packet caches and connection
	unsupported := errors.Is(res.Err, errUnsupportedCodec)
	fatal := res.Err != nil && !unsupported && r.err == nil
	if fatal {
		r.err = res.Err
	}
	r.mu.Unlock()
	if r.opts.TrackID != "" && !fatal {
		go r.Stop() // a track recording ends with its track
	} else if fatal {
		// A write failure (disk full, I/O error) stops the whole recording:
		// every other file is finalised as it stands.
		r.log.Error("recording failed", "err", res.Err)
		go r.Stop()
	} else {
		r.saveManifestLater()
	}
	r.wg.Done()
}

// Stop stops every track, finalises every file and the manifest, and
// returns the manifest. It is idempotent; later calls wait for the first.
func (r *RoomRecorder) Stop() *Manifest {
	r.mu.Lock()
	if r.stopping {
		r.mu.Unlock()
		<-r.done
		return r.Manifest()
	}
	r.stopping = true
	recs := make([]*TrackRecorder, 0, len(r.tracks))
	for _, rt := range r.tracks {
		if rt.rec != nil {
			recs = append(recs, rt.rec)
		}
	}
	r.mu.Unlock()
	for _, rec := range recs {
		rec.src.RemoveSink(rec)
		rec.Close()
	}
	r.wg.Wait()
	r.saves.Wait() // every track is done: no more are started
	r.mu.Lock()
	r.ended = time.Now()
	if r.err != nil {
		r.status = "failed"
	} else {
		r.status = "finished"
	}
	err := r.err
	r.mu.Unlock()
	m := r.Manifest()
	if werr := r.saveManifest(); werr != nil && err == nil {
		err = werr
		r.mu.Lock()
		r.err, r.status = werr, "failed"
		r.mu.Unlock()
		m = r.Manifest()
	}
	files := make([]string, 0, len(m.Tracks))
	for _, t := range m.Tracks {
		if t.File != "" {
			files = append(files, filepath.Join(r.opts.Dir, t.File))
		}
	}
	if err != nil {
		r.log.Error("recording stopped by an error", "err", err, "files", len(files))
		r.emit(Event{Type: EventFailed, Files: files, Error: err.Error()})
	} else {
		r.log.Info("recording finished", "files", len(files), "duration", time.Duration(m.DurationMS)*time.Millisecond)
		r.emit(Event{Type: EventFinished, Files: files})
	}
	close(r.done)
	return m
}

// StopWithError stops the recording as Stop does, as failed with err,
// and reports whether it did so: false when it was stopping already (a
// cluster node that lost the room's claim).
func (r *RoomRecorder) StopWithError(err error) bool {
	r.mu.Lock()
	ok := !r.stopping && r.err == nil
	if ok {
		r.err = err
	}
	r.mu.Unlock()
	r.Stop()
	return ok
}

// Err is the error that stopped the recording, if any.
func (r *RoomRecorder) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// saveManifestLater saves the manifest in the background. Stop waits for
// these, so nothing writes into the recording's directory once it returned
// (seen: a test's temporary directory removed while a late save wrote).
func (r *RoomRecorder) saveManifestLater() {
	r.saves.Add(1)
	go func() {
		defer r.saves.Done()
		_ = r.saveManifest()
	}()
}

func (r *RoomRecorder) saveManifest() error {
	r.manMu.Lock()
	defer r.manMu.Unlock()
	return writeManifest(r.opts.Dir, r.Manifest())
}

// Manifest describes the recording now (final once Done is closed).
func (r *RoomRecorder) Manifest() *Manifest {
	r.mu.Lock()
	m := &Manifest{
		Version: 1, ID: r.opts.ID, Kind: "room", Room: r.opts.Room, RoomSID: r.opts.RoomSID,
		Status: r.status, StartedAt: r.started, Participants: []ManifestParticipant{}, Tracks: []ManifestTrack{},
		Continues: r.opts.Continues,
	}
	if r.opts.TrackID != "" {
		m.Kind = "track"
	}
	if r.err != nil {
		m.Error = r.err.Error()
	}
	end := time.Now()
	if !r.ended.IsZero() {
		end = r.ended
		e := r.ended
		m.EndedAt = &e
	}
	m.DurationMS = end.Sub(r.started).Milliseconds()
	for _, id := range r.pOrder {
		p := *r.people[id]
		p.Tracks = append([]string(nil), p.Tracks...)
		m.Participants = append(m.Participants, p)
	}
	type item struct {
		pt  room.PublishedTrack
		res TrackResult
		rec bool
	}
	items := make([]item, 0, len(r.order))
	for _, rt := range r.order {
		it := item{pt: rt.pt, res: rt.res}
		if !rt.done && rt.rec != nil {
			it.res, it.rec = rt.rec.Result(), true
		}
		items = append(items, it)
	}
	r.mu.Unlock()

	// One clock offset per participant: its tracks share the sender's clock.
	offsets := map[string]time.Duration{}
	for _, it := range items {
		if d, ok := senderOffset(it.res); ok {
			if cur, seen := offsets[it.pt.ParticipantID]; !seen || d < cur {
				offsets[it.pt.ParticipantID] = d
			}
		}
	}
	for _, it := range items {
		mt := ManifestTrack{
			ID: it.pt.Track.ID, ParticipantID: it.pt.ParticipantID, ParticipantName: it.pt.ParticipantName,
			Kind: it.pt.Track.Kind, Source: it.pt.Track.Source, Name: it.pt.Track.Name, Codec: it.res.Codec,
			Frames: it.res.Frames, Width: it.res.Width, Height: it.res.Height, Drops: it.res.Drops,
			DroppedFrames: it.res.DroppedFrames, LayerSwitches: it.res.LayerSwitches, Recording: it.rec,
			DurationMS: it.res.Duration.Milliseconds(),
		}
		if mt.Codec == "" {
			mt.Codec = it.pt.Track.Codec
		}
		if it.res.File != "" {
			mt.File = filepath.Base(it.res.File)
			off, ok := offsets[it.pt.ParticipantID]
			mt.StartMS, mt.ClockSource = trackTiming(it.res, off, ok, r.started)
			mt.EndMS = mt.StartMS + mt.DurationMS
		}
		if it.res.Err != nil {
			mt.Error = it.res.Err.Error()
		}
		m.Tracks = append(m.Tracks, mt)
	}
	sort.SliceStable(m.Tracks, func(i, j int) bool {
		if (m.Tracks[i].File == "") != (m.Tracks[j].File == "") {
			return m.Tracks[i].File != ""
		}
		return m.Tracks[i].StartMS < m.Tracks[j].StartMS
	})
	return m
}

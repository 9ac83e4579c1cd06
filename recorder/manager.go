package recorder

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/room"
)

// Config configures a Manager.
type Config struct {
	// Dir holds one folder per recording (default ./recordings).
	Dir string
	// AutoRecord lists room name patterns (path.Match syntax: "*",
	// "class-*", "demo") whose rooms are recorded from their first track.
	AutoRecord []string
	// AutoMix adds the room's live audio mix (mix.webm) to auto-recorded rooms.
	AutoMix bool
	Logger  *slog.Logger
	// OnEvent receives every recording's events; it must not block.
	OnEvent func(Event)
	// Compose renders each finished room recording into composed.mp4 in
	// its folder (see Compose), in the background.
	Compose bool
	// ComposeOptions are used for automatic composition (Manifest and
	// Output are set per recording).
	ComposeOptions ComposeOptions
}

// Info is a recording as the control API shows it.
type Info struct {
	ID        string     `json:"id"`
	Kind      string     `json:"kind"` // room or track
	Room      string     `json:"room"`
	TrackID   string     `json:"track_id,omitempty"`
	Status    string     `json:"status"` // recording, finished, failed
	Error     string     `json:"error,omitempty"`
	Dir       string     `json:"dir"`
	Manifest  string     `json:"manifest"`
	StartedAt time.Time  `json:"started_at"`
	EndedAt   *time.Time `json:"ended_at,omitempty"`
	Files     []string   `json:"files"`
	Tracks    int        `json:"tracks"` // tracks recorded (or being recorded)
	Auto      bool       `json:"auto,omitempty"`
	// Composed is the composed file, once automatic composition finished.
	Composed string `json:"composed,omitempty"`
	// Node is the cluster node that runs the recording: its disk holds
	// the files (cluster.go); empty on a single node.
	Node string `json:"node,omitempty"`
	// Continues is the recording of the room this one took over in a
	// cluster: its node lost the room's claim (died or cut off; claim.go).
	Continues string `json:"continues,omitempty"`
}

// Errors of the control API.
var (
	ErrRoomNotFound      = errors.New("room not found")
	ErrTrackNotFound     = errors.New("track not found")
	ErrNotFound          = errors.New("recording not found")
	ErrAlreadyRecording  = errors.New("already recording")
	ErrClosed            = errors.New("recorder is shut down")
	ErrInvalidRecordName = errors.New("invalid room name for a recording")
	// ErrCutOff: this cluster node hears fewer than a majority of the
	// cluster's nodes, so it may not record a room now (lease.go).
	ErrCutOff = errors.New("this node is cut off from most of the cluster: it cannot record the room now")
)

type recording struct {
	rr       *RoomRecorder
	auto     bool
	composed string // guarded by Manager.mu
	// claimed: the room's cluster-wide recording claim is this
	// recording's (claim.go); stopped: stopped through the API.
	claimed, stopped bool
	lost             bool          // its claim's lease ran out (lease.go)
	mix              bool          // records the room's mix too (kept in the claim)
	released         chan struct{} // closed once reaped and the claim released
	holding          chan struct{} // closed when the claim's renewals ended (claim.go)
}

// Manager runs the recordings of one node: started by the control API or
// automatically for rooms matching Config.AutoRecord. It observes the
// room manager, so tracks published later join a running room recording.
type Manager struct {
	cfg   Config
	rooms *room.Manager
	log   *slog.Logger
	stop  func()

	mu     sync.Mutex
	active map[string]*recording // by recording id, running
	ended  []*recording          // finished this process, newest last (bounded)
	noAuto map[string]bool       // room SIDs whose recording was stopped by the API
	// pending are the room recordings claiming their room in the cluster
	// (claim.go), by id: they count as running.
	pending map[string]Info
	// pendingDone closes when the pending start of that id has its answer.
	pendingDone map[string]chan struct{}
	// releasing are ended recordings whose claim is being released: the
	// claim still counts as theirs until then.
	releasing map[string]*recording
	// autoTrying are the room instances (SIDs) whose auto recording is
	// being started, or tried again (claim.go autoStart); true when
	// asked again meanwhile.
	autoTrying map[string]bool
	closed     bool

	cl clusterState // cluster.go

	composeCtx    context.Context
	composeCancel context.CancelFunc
	composeWG     sync.WaitGroup
}

const keepEnded = 100

// NewManager registers a manager as an observer of rooms.
func NewManager(rooms *room.Manager, cfg Config) (*Manager, error) {
	if cfg.Dir == "" {
		cfg.Dir = "./recordings"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	for _, p := range cfg.AutoRecord {
		if _, err := path.Match(p, ""); err != nil {
			return nil, fmt.Errorf("recordings.auto_record pattern %q: %w", p, err)
		}
	}
	m := &Manager{cfg: cfg, rooms: rooms, log: cfg.Logger.With("component", "recorder"), active: map[string]*recording{}, noAuto: map[string]bool{}, pending: map[string]Info{}, pendingDone: map[string]chan struct{}{}, releasing: map[string]*recording{}, autoTrying: map[string]bool{}}
	m.composeCtx, m.composeCancel = context.WithCancel(context.Background())
	if rooms != nil {
		m.stop = rooms.AddObserver(observer{m})
	}
	return m, nil
}

// Dir is the recordings folder.
func (m *Manager) Dir() string { return m.cfg.Dir }

func (m *Manager) autoMatch(roomName string) bool {
	for _, p := range m.cfg.AutoRecord {
		if ok, _ := path.Match(p, roomName); ok {
			return true
		}
	}
	return false
}

// StartRoom starts recording every track of a live room, including tracks
// published later. One room recording per room at a time.
func (m *Manager) StartRoom(roomName string) (Info, error) {
	return m.start(roomName, "", false, false)
}

// StartRoomMix is StartRoom with the room's live audio mix recorded too,
// as mix.webm.
func (m *Manager) StartRoomMix(roomName string) (Info, error) {
	return m.start(roomName, "", false, true)
}

// StartTrack starts recording one published track of a room. In a cluster
// the track must be published on this node (else an error wrapping
// ErrTrackNotFound names its node).
func (m *Manager) StartTrack(roomName, trackID string) (Info, error) {
	if trackID == "" {
		return Info{}, ErrTrackNotFound
	}
	return m.start(roomName, trackID, false, false)
}

func (m *Manager) start(roomName, trackID string, auto, mix bool) (Info, error) {
	if roomName == "" {
		return Info{}, ErrInvalidRecordName
	}
	if m.rooms == nil {
		return Info{}, ErrRoomNotFound
	}
	rm := m.rooms.Room(roomName)
	if rm == nil {
		return Info{}, fmt.Errorf("%w: %q", ErrRoomNotFound, roomName)
	}
	if trackID != "" {
		found, node := false, ""
		for _, t := range rm.ObservedTracks() {
			if t.Track.ID == trackID {
				found, node = true, t.Node
			}
		}
		if !found {
			return Info{}, fmt.Errorf("%w: %q in room %q", ErrTrackNotFound, trackID, roomName)
		}
		if node != "" {
			// A track recording records the track where it is published
			// (a node records only its own tracks for it): that node
			// holds the media, and its check below refuses a second
			// recording of the track, from whichever node it is asked.
			return Info{}, &trackElsewhere{track: trackID, node: node}
		}
	}
	c := m.cluster()
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return Info{}, ErrClosed
	}
	for _, r := range m.active {
		if r.rr.Room() == roomName && r.rr.opts.TrackID == trackID {
			m.mu.Unlock()
			return m.info(r), fmt.Errorf("%w: recording %s", ErrAlreadyRecording, r.rr.ID())
		}
	}
	for id, in := range m.pending {
		if in.Room == roomName && trackID == "" {
			done := m.pendingDone[id]
			m.mu.Unlock()
			if in.Auto && !auto && done != nil {
				// An auto start still claiming the room may be refused
				// (stopped through the API, or someone records it): its
				// answer decides this start's, not its attempt.
				<-done
				return m.start(roomName, trackID, auto, mix)
			}
			return in, fmt.Errorf("%w: recording %s", ErrAlreadyRecording, in.ID)
		}
	}
	node := ""
	if c != nil {
		node = c.NodeID()
	}
	id := recordingID(roomName, node, trackID, time.Now())
	claimed := c != nil && trackID == ""
	if claimed && !c.HearsMajority() {
		// The others may declare this node dead and take the room: it
		// must not start recording it (lease.go).
		m.mu.Unlock()
		return Info{}, ErrCutOff
	}
	var won claimWon
	if claimed {
		// One room recording in the cluster (claim.go): claim the room
		// first, counted as running here meanwhile.
		m.pending[id] = Info{ID: id, Kind: "room", Room: roomName, Status: "recording", StartedAt: time.Now(), Auto: auto, Node: node, Files: []string{}}
		done := make(chan struct{})
		m.pendingDone[id] = done
		m.mu.Unlock()
		var in Info
		var err error
		won, in, err = m.claimRoom(c, roomName, rm.SID(), id, auto, mix)
		m.mu.Lock()
		delete(m.pending, id)
		delete(m.pendingDone, id)
		close(done)
		if err != nil {
			m.mu.Unlock()
			return in, err
		}
		if m.closed {
			m.mu.Unlock()
			go m.releaseClaim(c, roomName, id, false)
			return Info{}, ErrClosed
		}
	}
	rr, err := NewRoomRecorder(RoomOptions{
		Dir: filepath.Join(m.cfg.Dir, id), ID: id, Room: roomName, RoomSID: rm.SID(), TrackID: trackID,
		Continues: won.continues, Logger: m.cfg.Logger, OnEvent: m.onEvent,
	})
	if err != nil {
		m.mu.Unlock()
		if claimed {
			m.releaseClaim(c, roomName, id, false)
		}
		m.log.Error("cannot start recording", "room", roomName, "err", err)
		return Info{}, err
	}
	rec := &recording{rr: rr, auto: auto, claimed: claimed, mix: mix && trackID == "", released: make(chan struct{}), holding: make(chan struct{})}
	m.active[id] = rec
	m.mu.Unlock()
	if claimed {
		go m.holdClaim(c, rec, won) // renews the claim's lease while recording
	} else {
		close(rec.holding)
	}
	go m.reap(rec)
	if rec.whole() {
		// In a cluster the room's tracks on other nodes are imported here
		// and recorded too (the observer gets them when their media is
		// there).
		release := rm.AcquireRemoteMedia()
		go func() { <-rr.Done(); release() }()
	}
	// Listed after registering, so a track published meanwhile is added
	// by the observer or here (AddTrack ignores repeats).
	for _, t := range rm.ObservedTracks() {
		if t.Node == "" || rec.whole() {
			_ = rr.AddTrack(t)
		}
	}
	if mix && trackID == "" {
		src, mixID := rm.AcquireMix()
		go func() { <-rr.Done(); rm.ReleaseMix() }()
		_ = rr.AddTrack(room.PublishedTrack{
			Room: roomName, RoomSID: rm.SID(), ParticipantName: "mix", Source: src,
			Track: protocol.Track{ID: mixID, Kind: "audio", Source: protocol.SourceMix, Name: "mix", Codec: "audio/opus"},
		})
	}
	return m.info(rec), nil
}

// whole: the recording records every track of the room, those published
// on other nodes of a cluster too. On a single node every room recording
// does; an auto recording without a cluster claim (none is made on a
// single node) records the node's own tracks.
func (r *recording) whole() bool {
	return r.rr.opts.TrackID == "" && (!r.auto || r.claimed)
}

// reap moves a recording to the ended list when it stops (also when a
// fault stopped it), and releases its room's cluster claim.
func (m *Manager) reap(r *recording) {
	<-r.rr.Done()
	c := m.cluster()
	m.mu.Lock()
	if _, ok := m.active[r.rr.ID()]; !ok {
		m.mu.Unlock()
		<-r.released // reaped by another caller: wait for it
		return
	}
	// A claim whose lease ran out stays for the recording that continues
	// it (lease.go).
	release, stopped := r.claimed && c != nil && !r.lost, r.stopped
	if release {
		m.releasing[r.rr.ID()] = r
	}
	m.reapLocked(r)
	m.mu.Unlock()
	<-r.holding // no renewal of the claim races its release
	if release {
		// Before Stop returns: a start elsewhere must not see the claim
		// free (and an API stop not marked) once the stop answered.
		m.releaseClaim(c, r.rr.Room(), r.rr.ID(), stopped)
		m.mu.Lock()
		delete(m.releasing, r.rr.ID())
		m.mu.Unlock()
	}
	close(r.released)
}

// reapLocked moves r to the ended list; m.mu held.
func (m *Manager) reapLocked(r *recording) {
	delete(m.active, r.rr.ID())
	m.ended = append(m.ended, r)
	if len(m.ended) > keepEnded {
		m.ended = m.ended[len(m.ended)-keepEnded:]
	}
	if m.cfg.Compose && r.rr.opts.TrackID == "" && !m.closed {
		m.composeWG.Add(1)
		go m.compose(r)
	}
}

func (m *Manager) onEvent(e Event) {
	if m.cfg.OnEvent != nil {
		m.cfg.OnEvent(e)
	}
}

// Stop stops a recording by id and waits for its files to be final.
func (m *Manager) Stop(id string) (Info, error) {
	m.mu.Lock()
	r := m.findLocked(id)
	if r != nil && r.rr.opts.TrackID == "" && r.rr.RoomSID() != "" {
		// stopped on purpose: do not auto-record this room instance again
		m.noAuto[r.rr.RoomSID()] = true
		r.stopped = true
	}
	m.mu.Unlock()
	if r == nil {
		return Info{}, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	r.rr.Stop()
	m.reap(r)
	return m.info(r), nil
}

// findLocked finds a recording by id, running or among the last ended
// (the latest of those); nil if none. The caller holds m.mu.
func (m *Manager) findLocked(id string) *recording {
	if r := m.active[id]; r != nil {
		return r
	}
	for i := len(m.ended) - 1; i >= 0; i-- {
		if m.ended[i].rr.ID() == id {
			return m.ended[i]
		}
	}
	return nil
}

// Active is the number of recordings running (the starling_recordings
// gauge).
func (m *Manager) Active() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.active)
}

// StopRoom stops every running recording of a room.
func (m *Manager) StopRoom(roomName string) []Info {
	var out []Info
	for _, in := range m.List(roomName) {
		if in.Status == "recording" {
			if info, err := m.Stop(in.ID); err == nil {
				out = append(out, info)
			}
		}
	}
	return out
}

// Get returns one recording.
func (m *Manager) Get(id string) (Info, bool) {
	m.mu.Lock()
	r := m.findLocked(id)
	m.mu.Unlock()
	if r == nil {
		return Info{}, false
	}
	return m.info(r), true
}

// List returns the recordings of a room ("" = all) known to this process:
// running ones and the last finished ones, oldest first.
func (m *Manager) List(roomName string) []Info {
	m.mu.Lock()
	all := make([]*recording, 0, len(m.active)+len(m.ended))
	all = append(all, m.ended...)
	for _, r := range m.active {
		all = append(all, r)
	}
	m.mu.Unlock()
	out := []Info{}
	for _, r := range all {
		if roomName == "" || r.rr.Room() == roomName {
			out = append(out, m.info(r))
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].StartedAt.Before(out[j].StartedAt) })
	return out
}

// info describes r; call it without m.mu held.
func (m *Manager) info(r *recording) Info {
	man := r.rr.Manifest()
	in := Info{
		ID: man.ID, Kind: man.Kind, Room: man.Room, TrackID: r.rr.opts.TrackID, Status: man.Status, Error: man.Error,
		Dir: r.rr.Dir(), Manifest: filepath.Join(r.rr.Dir(), ManifestFile), StartedAt: man.StartedAt,
		EndedAt: man.EndedAt, Files: []string{}, Auto: r.auto, Tracks: len(man.Tracks), Node: m.nodeID(),
		Continues: man.Continues,
	}
	m.mu.Lock()
	in.Composed = r.composed
	m.mu.Unlock()
	for _, t := range man.Tracks {
		if t.File != "" {
			in.Files = append(in.Files, filepath.Join(r.rr.Dir(), t.File))
		}
	}
	return in
}

// Close stops every recording and finalises their files (server shutdown),
// waiting at most until ctx ends. No recording starts afterwards.
func (m *Manager) Close(ctx context.Context) error {
	m.mu.Lock()
	m.closed = true
	recs := make([]*recording, 0, len(m.active))
	for _, r := range m.active {
		recs = append(recs, r)
	}
	m.mu.Unlock()
	if m.stop != nil {
		m.stop()
	}
	done := make(chan struct{})
	go func() {
		var wg sync.WaitGroup
		for _, r := range recs {
			wg.Add(1)
			go func() { defer wg.Done(); r.rr.Stop() }()
		}
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		m.composeCancel()
		return fmt.Errorf("recordings not finalised: %w", ctx.Err())
	}
	m.composeCancel() // running compositions are abandoned (partial output removed)
	m.composeWG.Wait()
	return nil
}

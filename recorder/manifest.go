package recorder

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ManifestFile is the manifest's name inside a recording folder.
const ManifestFile = "manifest.json"

// Manifest describes one room (or track) recording: who was there, which
// files hold which tracks, and where each track starts on one room clock.
//
// The room clock is milliseconds since StartedAt. A track's StartMS is the
// capture time of its first frame: from the publisher's RTCP sender reports
// (NTP↔RTP, the same clock for all of a publisher's tracks, so its audio and
// video line up) shifted to this server's clock by the smallest observed
// sender-report transit; without a sender report, the arrival time here.
type Manifest struct {
	Version int    `json:"version"`
	ID      string `json:"id"`
	Kind    string `json:"kind"` // "room" or "track"
	Room    string `json:"room"`
	RoomSID string `json:"room_sid,omitempty"`
	Status  string `json:"status"` // recording, finished, failed
	Error   string `json:"error,omitempty"`
	// Continues is the recording this one continues in a cluster (its
	// node lost the room's recording claim; docs/recording.md).
	Continues    string                `json:"continues,omitempty"`
	StartedAt    time.Time             `json:"started_at"`
	EndedAt      *time.Time            `json:"ended_at,omitempty"`
	DurationMS   int64                 `json:"duration_ms"`
	Participants []ManifestParticipant `json:"participants"`
	Tracks       []ManifestTrack       `json:"tracks"`
}

// ManifestParticipant is one publisher seen during the recording.
type ManifestParticipant struct {
	ID       string   `json:"id"`
	Name     string   `json:"name"`
	Identity string   `json:"identity,omitempty"`
	Tracks   []string `json:"tracks"`
}

// ManifestTrack is one recorded track and its file.
type ManifestTrack struct {
	ID              string `json:"id"`
	ParticipantID   string `json:"participant_id"`
	ParticipantName string `json:"participant_name"`
	Kind            string `json:"kind"`
	Source          string `json:"source,omitempty"`
	Name            string `json:"name,omitempty"`
	Codec           string `json:"codec"`
	File            string `json:"file,omitempty"` // relative to the manifest's folder
	StartMS         int64  `json:"start_ms"`       // on the room clock
	EndMS           int64  `json:"end_ms"`
	DurationMS      int64  `json:"duration_ms"`
	ClockSource     string `json:"clock_source,omitempty"` // rtcp-sr or arrival
	Frames          int    `json:"frames"`
	Width           int    `json:"width,omitempty"`
	Height          int    `json:"height,omitempty"`
	Drops           uint64 `json:"dropped_packets,omitempty"`
	DroppedFrames   uint64 `json:"dropped_frames,omitempty"`
	LayerSwitches   int    `json:"layer_switches,omitempty"`
	Recording       bool   `json:"recording,omitempty"` // still being written
	Error           string `json:"error,omitempty"`
}

// ReadManifest loads a manifest file.
func ReadManifest(path string) (*Manifest, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &m, nil
}

// manifestReserve is the size manifest.json is padded to (with trailing
// whitespace, which JSON allows), so that the final manifest can still be
// written in place when the disk is full.
const manifestReserve = 32 << 10

// writeManifest writes m into dir atomically (temp file + rename). If that
// fails (a full disk), it overwrites the existing, padded manifest in place,
// which needs no new space.
func writeManifest(dir string, m *Manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	size := (len(b)/manifestReserve + 1) * manifestReserve
	padded := make([]byte, size)
	copy(padded, b)
	for i := len(b); i < size; i++ {
		padded[i] = ' '
	}
	padded[size-1] = '\n'
	path := filepath.Join(dir, ManifestFile)
	tmp := filepath.Join(dir, "."+ManifestFile+".tmp")
	err = os.WriteFile(tmp, padded, 0o644)
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		return nil
	}
	_ = os.Remove(tmp)
	if ierr := overwriteInPlace(path, b); ierr != nil {
		return fmt.Errorf("writing manifest: %w", err)
	}
	return nil
}

// overwriteInPlace writes b over the start of an existing file at least as
// long, blanking the rest with spaces.
func overwriteInPlace(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.Size() < int64(len(b)) {
		return fmt.Errorf("manifest grew past its reserved %d bytes", st.Size())
	}
	buf := make([]byte, st.Size())
	copy(buf, b)
	for i := len(b); i < len(buf); i++ {
		buf[i] = ' '
	}
	if _, err := f.WriteAt(buf, 0); err != nil {
		return err
	}
	return f.Sync()
}

// trackTiming places a track's first frame on the room clock. offsets holds,
// per participant, the smallest (arrival − sender NTP time) over all its
// sender reports: the sender's clock relative to ours plus the shortest
// transit.
func trackTiming(res TrackResult, offset time.Duration, haveOffset bool, start time.Time) (ms int64, source string) {
	if res.SR != nil && haveOffset && res.ClockRate > 0 {
		d := time.Duration(int64(int32(res.FirstRTP-res.SR.RTP)) * int64(time.Second) / int64(res.ClockRate))
		capture := res.SR.Time().Add(d).Add(offset)
		return capture.Sub(start).Milliseconds(), "rtcp-sr"
	}
	return res.FirstArrival.Sub(start).Milliseconds(), "arrival"
}

// senderOffset is the smallest arrival − NTP over a track's sender reports.
func senderOffset(res TrackResult) (time.Duration, bool) {
	return res.SenderOffset, res.HaveSenderOffset
}

// recordingID makes a sortable, unique, file-system-safe folder name:
// <room>-<UTC time>[-<node>][-<track>]. In a cluster the node id keeps two
// nodes' recordings of a room started in the same millisecond apart.
func recordingID(roomName, node, trackID string, now time.Time) string {
	name := safeName(roomName)
	if name == "" {
		name = "room"
	}
	id := name + "-" + now.UTC().Format("20060102T150405.000Z")
	if node = safeName(node); node != "" {
		id += "-" + node
	}
	if trackID != "" {
		id += "-" + trackID
	}
	return id
}

// safeName keeps the file-system-safe characters of s (others become _),
// at most 64 bytes, no leading dot.
func safeName(s string) string {
	var b strings.Builder
	for _, c := range s {
		if c < 128 && (c == '-' || c == '_' || c == '.' || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9')) {
			b.WriteRune(c)
		} else {
			b.WriteByte('_')
		}
		if b.Len() >= 64 {
			break
		}
	}
	return strings.TrimLeft(b.String(), ".")
}

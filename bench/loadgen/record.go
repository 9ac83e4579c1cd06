package loadgen

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/starling-rtc/starling/auth"
)

// RecordingStats is one room recording the generator started (--record):
// what the server answered and what it wrote.
type RecordingStats struct {
	Room        string `json:"room"`
	ID          string `json:"id,omitempty"`
	StartStatus int    `json:"startStatus"`          // HTTP status of POST /v1/rooms/{room}/recordings
	StopStatus  int    `json:"stopStatus,omitempty"` // HTTP status of DELETE .../recordings/{id}
	// Status is the server's last word: recording, finished or failed.
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
	// Dir is the folder as the server named it; LocalDir where this
	// process found it ("" = not found: Bytes and the manifest figures are
	// unknown).
	Dir      string `json:"dir,omitempty"`
	LocalDir string `json:"localDir,omitempty"`
	Tracks   int    `json:"tracks"`
	Files    int    `json:"files"` // media files the server listed
	// Bytes is the size of everything in the folder (-1 = unknown).
	Bytes int64 `json:"bytes"`
	// From the final manifest (when LocalDir is known).
	VideoFrames    int     `json:"videoFrames"`
	AudioFrames    int     `json:"audioFrames"`
	DroppedPackets uint64  `json:"droppedPackets"` // recorder queue full
	DroppedFrames  uint64  `json:"droppedFrames"`  // incomplete frames not written
	DurationMs     int64   `json:"durationMs"`
	StartMs        float64 `json:"startMs"` // how long the start request took
	StopMs         float64 `json:"stopMs"`  // how long stopping (finalising the files) took
}

// OK says whether the recording ran and wrote something.
func (r *RecordingStats) OK() bool {
	return r.StartStatus/100 == 2 && r.Status == "finished" && r.Files > 0 && r.Bytes != 0
}

// recordingInfo is the part of the server's recording object
// (recorder.Info, docs/recording.md) the generator uses.
type recordingInfo struct {
	ID     string   `json:"id"`
	Status string   `json:"status"`
	Error  string   `json:"error"`
	Dir    string   `json:"dir"`
	Files  []string `json:"files"`
	Tracks int      `json:"tracks"`
}

// recordingManifest is the part of manifest.json the summary reports.
type recordingManifest struct {
	DurationMs int64 `json:"duration_ms"`
	Tracks     []struct {
		Kind          string `json:"kind"`
		Frames        int    `json:"frames"`
		Drops         uint64 `json:"dropped_packets"`
		DroppedFrames uint64 `json:"dropped_frames"`
	} `json:"tracks"`
}

// NewKeys returns one fresh API key with a random secret, for a server the
// generator starts.
func NewKeys() auth.Keys {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return auth.Keys{"starling-load": hex.EncodeToString(b)}
}

// FormatKeys is keys in the STARLING_KEYS syntax.
func FormatKeys(k auth.Keys) string {
	items := make([]string, 0, len(k))
	for _, n := range k.Names() {
		items = append(items, n+":"+k[n])
	}
	return strings.Join(items, ",")
}

// mintToken signs a token with the first of the configured keys; "" when
// there are none (an open server).
func (c *Config) mintToken(identity string, g auth.Grants) (string, error) {
	if len(c.Keys) == 0 {
		return "", nil
	}
	key := c.Keys.Names()[0]
	ttl := c.Duration + 15*time.Minute
	return auth.Issue(key, c.Keys[key], auth.Claims{Grants: g, RegisteredClaims: jwt.RegisteredClaims{Subject: identity}}, ttl)
}

// apiBase is the server's HTTP base URL: the (first) signaling URL's
// scheme and host.
func (c *Config) apiBase() (string, error) {
	if c.APIURL != "" {
		return strings.TrimRight(c.APIURL, "/"), nil
	}
	urls := c.urls()
	if len(urls) == 0 {
		return "", errors.New("no server URL")
	}
	u, err := url.Parse(urls[0])
	if err != nil {
		return "", err
	}
	switch u.Scheme {
	case "ws":
		u.Scheme = "http"
	case "wss":
		u.Scheme = "https"
	}
	return u.Scheme + "://" + u.Host, nil
}

// recordings drives the recording API for the run.
type recordings struct {
	cfg  *Config
	base string
	hc   *http.Client

	stopMu sync.Mutex // serialises stop
	mu     sync.Mutex // guards list and its elements
	list   []*RecordingStats
}

func newRecordings(cfg *Config) (*recordings, error) {
	base, err := cfg.apiBase()
	if err != nil {
		return nil, fmt.Errorf("recording API URL: %w", err)
	}
	return &recordings{cfg: cfg, base: base, hc: &http.Client{Timeout: 30 * time.Second}}, nil
}

func (rs *recordings) token(room string) (string, error) {
	if rs.cfg.RecordToken != "" {
		return rs.cfg.RecordToken, nil
	}
	return rs.cfg.mintToken("starling-load-recorder", auth.Grants{Room: room, Record: true})
}

// call sends one request to the recording API and decodes a 2xx answer
// into out; other answers become errors quoting the server.
func (rs *recordings) call(ctx context.Context, method, room, id string, out any) (int, error) {
	path := "/v1/rooms/" + url.PathEscape(room) + "/recordings"
	if id != "" {
		path += "/" + url.PathEscape(id)
	}
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader("{}")
	}
	req, err := http.NewRequestWithContext(ctx, method, rs.base+path, body)
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	tok, err := rs.token(room)
	if err != nil {
		return 0, err
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := rs.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		msg := strings.TrimSpace(string(raw))
		if len(msg) > 300 {
			msg = msg[:300] + "…"
		}
		return resp.StatusCode, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, msg)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return resp.StatusCode, fmt.Errorf("%s %s: %s: decoding %q: %w", method, path, resp.Status, raw, err)
	}
	return resp.StatusCode, nil
}

// start begins a room recording of every room; the first failure stops
// the ones already started and is returned.
func (rs *recordings) start(ctx context.Context, rooms []string) error {
	for _, room := range rooms {
		st := &RecordingStats{Room: room, Bytes: -1}
		var in recordingInfo
		t0 := time.Now()
		code, err := rs.call(ctx, http.MethodPost, room, "", &in)
		st.StartMs = ms(time.Since(t0))
		st.StartStatus = code
		if err != nil {
			rs.stop()
			return fmt.Errorf("starting the recording of room %s: %w", room, err)
		}
		st.ID, st.Status, st.Dir, st.Tracks = in.ID, in.Status, in.Dir, in.Tracks
		st.LocalDir = rs.localDir(in.Dir)
		rs.mu.Lock()
		rs.list = append(rs.list, st)
		rs.mu.Unlock()
	}
	return nil
}

// localDir finds the server's recording folder from this process: as
// given when absolute, else relative to the server's working directory
// (/proc/PID/cwd) or this one's.
func (rs *recordings) localDir(dir string) string {
	if dir == "" {
		return ""
	}
	var cands []string
	if filepath.IsAbs(dir) {
		cands = append(cands, dir)
	} else {
		if rs.cfg.ServerPID > 0 {
			if cwd, err := os.Readlink("/proc/" + strconv.Itoa(rs.cfg.ServerPID) + "/cwd"); err == nil {
				cands = append(cands, filepath.Join(cwd, dir))
			}
		}
		cands = append(cands, dir)
	}
	for _, c := range cands {
		if st, err := os.Stat(c); err == nil && st.IsDir() {
			if abs, err := filepath.Abs(c); err == nil {
				return abs
			}
			return c
		}
	}
	return ""
}

// stop stops every started recording (DELETE, which returns once the
// files are final) and measures what was written. It is idempotent and
// safe to call from several goroutines.
func (rs *recordings) stop() []RecordingStats {
	rs.stopMu.Lock()
	defer rs.stopMu.Unlock()
	rs.mu.Lock()
	list := append([]*RecordingStats(nil), rs.list...)
	rs.mu.Unlock()
	out := make([]RecordingStats, 0, len(list))
	for _, st := range list {
		rs.mu.Lock()
		todo := st.StopStatus == 0 && st.ID != ""
		room, id, local := st.Room, st.ID, st.LocalDir
		rs.mu.Unlock()
		if todo {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			var in recordingInfo
			t0 := time.Now()
			code, err := rs.call(ctx, http.MethodDelete, room, id, &in)
			cancel()
			took := ms(time.Since(t0))
			if err == nil && local == "" {
				local = rs.localDir(in.Dir)
			}
			done := RecordingStats{Bytes: -1, LocalDir: local}
			if local != "" {
				done.Bytes, _ = dirSize(local)
				done.readManifest()
			}
			rs.mu.Lock()
			st.StopMs, st.StopStatus, st.LocalDir, st.Bytes = took, code, local, done.Bytes
			st.DurationMs, st.VideoFrames, st.AudioFrames = done.DurationMs, done.VideoFrames, done.AudioFrames
			st.DroppedPackets, st.DroppedFrames = done.DroppedPackets, done.DroppedFrames
			if err != nil {
				st.Error = err.Error()
			} else {
				st.Status, st.Error, st.Tracks, st.Files = in.Status, in.Error, in.Tracks, len(in.Files)
			}
			rs.mu.Unlock()
		}
		rs.mu.Lock()
		out = append(out, *st)
		rs.mu.Unlock()
	}
	return out
}

// bytesSoFar is what the running recordings have written (progress line);
// ok is false when no folder is visible from here.
func (rs *recordings) bytesSoFar() (n int64, ok bool) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	for _, st := range rs.list {
		if st.LocalDir == "" {
			continue
		}
		if b, err := dirSize(st.LocalDir); err == nil {
			n += b
			ok = true
		}
	}
	return n, ok
}

func (st *RecordingStats) readManifest() {
	raw, err := os.ReadFile(filepath.Join(st.LocalDir, "manifest.json"))
	if err != nil {
		return
	}
	var m recordingManifest
	if json.Unmarshal(bytes.TrimSpace(raw), &m) != nil {
		return
	}
	st.DurationMs = m.DurationMs
	for _, t := range m.Tracks {
		if t.Kind == "video" {
			st.VideoFrames += t.Frames
		} else {
			st.AudioFrames += t.Frames
		}
		st.DroppedPackets += t.Drops
		st.DroppedFrames += t.DroppedFrames
	}
}

// dirSize is the total size of the regular files under dir.
func dirSize(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // a manifest being replaced
			}
			return err
		}
		if d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n, err
}

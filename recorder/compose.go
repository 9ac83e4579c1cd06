package recorder

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/starling-rtc/starling/protocol"
)

// ComposeOptions configure Compose.
type ComposeOptions struct {
	Manifest string // path of manifest.json
	Output   string // output file; default <folder>/composed.mp4
	Width    int    // output size; default 1280x720
	Height   int
	FPS      int    // default 30
	FFmpeg   string // ffmpeg binary; default "ffmpeg" from PATH
	// FontFile draws participant names on tiles; "" = find DejaVu Sans or
	// fc-match's sans; NoNames turns names off.
	FontFile string
	NoNames  bool
	// Progress receives human-readable progress lines (nil = none).
	Progress io.Writer
}

// ComposePlan is what Compose will render.
type ComposePlan struct {
	Args     []string      // ffmpeg arguments
	Duration time.Duration // output duration
	Cols     int
	Rows     int
	Tiles    []ComposeTile
	Audio    int    // audio tracks mixed
	Font     string // font used for names, "" if none
	Note     string // e.g. why names are not drawn
}

// ComposeTile is one video tile and when it shows.
type ComposeTile struct {
	Name       string
	File       string
	X, Y, W, H int
	Start, End time.Duration // on the output's clock
}

// fontCandidates are tried in order when no font file is given.
var fontCandidates = []string{
	"/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
	"/usr/share/fonts/dejavu/DejaVuSans.ttf",
	"/usr/share/fonts/TTF/DejaVuSans.ttf",
}

func findFont() string {
	for _, f := range fontCandidates {
		if _, err := os.Stat(f); err == nil {
			return f
		}
	}
	if out, err := exec.Command("fc-match", "-f", "%{file}", "sans").Output(); err == nil {
		if f := strings.TrimSpace(string(out)); f != "" {
			if _, err := os.Stat(f); err == nil {
				return f
			}
		}
	}
	return ""
}

// escapeFilterPath quotes a path for an ffmpeg filter option value.
func escapeFilterPath(p string) string {
	r := strings.NewReplacer(`\`, `\\\\`, `'`, `'\\\''`, `:`, `\\:`)
	return "'" + r.Replace(p) + "'"
}

// PlanCompose builds the ffmpeg command for a manifest: a grid with one tile
// per video track at a fixed place, shown from the track's start to its end
// on the room clock (tiles appear and leave as people do), names drawn on
// tiles, and every audio track mixed with its start offset.
func PlanCompose(m *Manifest, dir string, o ComposeOptions, tmpDir string) (*ComposePlan, error) {
	if o.Width <= 0 || o.Height <= 0 {
		o.Width, o.Height = 1280, 720
	}
	if o.FPS <= 0 {
		o.FPS = 30
	}
	type in struct {
		t    ManifestTrack
		path string
	}
	var videos, audios []in
	t0, tEnd := int64(math.MaxInt64), int64(0)
	for _, t := range m.Tracks {
		if t.File == "" || t.Frames == 0 || t.Source == protocol.SourceMix {
			continue // the live mix would double every voice: the tracks are mixed here
		}
		p := filepath.Join(dir, t.File)
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("track %s: %w", t.ID, err)
		}
		if t.StartMS < t0 {
			t0 = t.StartMS
		}
		if t.EndMS > tEnd {
			tEnd = t.EndMS
		}
		if t.Kind == "video" {
			videos = append(videos, in{t, p})
		} else {
			audios = append(audios, in{t, p})
		}
	}
	if len(videos)+len(audios) == 0 {
		return nil, errors.New("the manifest lists no recorded file")
	}
	plan := &ComposePlan{Duration: time.Duration(tEnd-t0) * time.Millisecond, Audio: len(audios)}
	if !o.NoNames {
		plan.Font = o.FontFile
		if plan.Font == "" {
			plan.Font = findFont()
		}
		if plan.Font == "" {
			plan.Note = "no font found (install fonts-dejavu-core): names are not drawn"
		}
	}
	n := len(videos)
	cols := int(math.Ceil(math.Sqrt(float64(n))))
	if cols == 0 {
		cols = 1
	}
	rows := (n + cols - 1) / cols
	if rows == 0 {
		rows = 1
	}
	plan.Cols, plan.Rows = cols, rows
	tw, th := (o.Width/cols)&^1, (o.Height/rows)&^1
	dur := plan.Duration.Seconds()

	args := []string{"-nostdin", "-hide_banner", "-y"}
	var fg strings.Builder
	for i, v := range videos {
		start := float64(v.t.StartMS-t0) / 1000
		end := float64(v.t.EndMS-t0) / 1000
		x, y := (i%cols)*tw, (i/cols)*th
		// center a short last row
		if last := n - (n/cols)*cols; last > 0 && i/cols == rows-1 {
			x += (cols - last) * tw / 2
		}
		name := v.t.ParticipantName
		if name == "" {
			name = v.t.ParticipantID
		}
		plan.Tiles = append(plan.Tiles, ComposeTile{Name: name, File: v.path, X: x, Y: y, W: tw, H: th,
			Start: time.Duration(start * float64(time.Second)), End: time.Duration(end * float64(time.Second))})
	}
	// The background is an input, not a source filter in the graph: a
	// frame size change inside a file (recorder layer switch, the sender
	// scaling or rotating) makes ffmpeg rebuild the video graph, and a
	// source filter would restart at t=0 then, which blanked every tile
	// from the first switch on. Likewise each input is placed on the room
	// clock with -itsoffset at the demuxer (setpts=PTS-STARTPTS would
	// restart too). Each frame is scaled and padded to its tile whatever
	// its size; the tile's grey box is drawn on the background while the
	// tile shows.
	args = append(args, "-f", "lavfi", "-i", fmt.Sprintf("color=c=black:s=%dx%d:r=%d:d=%.3f", o.Width, o.Height, o.FPS, dur))
	fg.WriteString("[0:v]null")
	for _, tile := range plan.Tiles {
		fmt.Fprintf(&fg, ",drawbox=x=%d:y=%d:w=%d:h=%d:color=0x202020:t=fill:enable='between(t,%.3f,%.3f)'",
			tile.X, tile.Y, tile.W, tile.H, tile.Start.Seconds(), tile.End.Seconds())
	}
	fg.WriteString("[base0];")
	input := 1
	for i, v := range videos {
		tile := plan.Tiles[i]
		start, end := tile.Start.Seconds(), tile.End.Seconds()
		args = append(args, "-itsoffset", fmt.Sprintf("%.3f", start), "-i", v.path)
		fmt.Fprintf(&fg, "[%d:v]fps=%d,scale=%d:%d:force_original_aspect_ratio=decrease,"+
			"pad=%d:%d:(ow-iw)/2:(oh-ih)/2:color=0x202020,format=yuv420p", input, o.FPS, tile.W, tile.H, tile.W, tile.H)
		if plan.Font != "" {
			tf := filepath.Join(tmpDir, fmt.Sprintf("name%d.txt", i))
			if err := os.WriteFile(tf, []byte(tile.Name), 0o644); err != nil {
				return nil, err
			}
			size := tile.H / 12
			if size < 12 {
				size = 12
			}
			fmt.Fprintf(&fg, ",drawtext=fontfile=%s:textfile=%s:fontcolor=white:fontsize=%d:box=1:boxcolor=black@0.5:boxborderw=6:x=10:y=h-th-12",
				escapeFilterPath(plan.Font), escapeFilterPath(tf), size)
		}
		fmt.Fprintf(&fg, "[v%d];[base%d][v%d]overlay=x=%d:y=%d:eof_action=pass:enable='between(t,%.3f,%.3f)'[base%d];",
			i, i, i, tile.X, tile.Y, start, end, i+1)
		input++
	}
	vout := fmt.Sprintf("base%d", len(videos))
	// Audio gets its own graph, so that a rebuild of the video graph
	// does not restart the delays and the mix.
	var ag strings.Builder
	var amix string
	for j, a := range audios {
		args = append(args, "-i", a.path)
		delay := a.t.StartMS - t0
		fmt.Fprintf(&ag, "[%d:a]aresample=48000:async=1,aformat=sample_rates=48000:channel_layouts=stereo,adelay=delays=%d:all=1[a%d];", input, delay, j)
		amix += fmt.Sprintf("[a%d]", j)
		input++
	}
	args = append(args, "-filter_complex", strings.TrimSuffix(fg.String(), ";"))
	if len(audios) > 0 {
		fmt.Fprintf(&ag, "%samix=inputs=%d:duration=longest:normalize=0,apad[aout]", amix, len(audios))
		args = append(args, "-filter_complex", ag.String())
	}
	args = append(args, "-map", "["+vout+"]")
	if len(audios) > 0 {
		args = append(args, "-map", "[aout]", "-c:a", "aac", "-b:a", "128k")
	}
	args = append(args, "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p",
		"-r", strconv.Itoa(o.FPS), "-t", fmt.Sprintf("%.3f", dur), "-movflags", "+faststart",
		"-progress", "pipe:1", "-nostats", o.Output)
	plan.Args = args
	return plan, nil
}

// Compose renders a recording into one playable file (H.264 + AAC in MP4
// by default) with ffmpeg, reporting progress. It returns the plan used.
func Compose(ctx context.Context, o ComposeOptions) (*ComposePlan, error) {
	m, err := ReadManifest(o.Manifest)
	if err != nil {
		return nil, err
	}
	dir := filepath.Dir(o.Manifest)
	if o.Output == "" {
		o.Output = filepath.Join(dir, "composed.mp4")
	}
	bin := o.FFmpeg
	if bin == "" {
		bin = "ffmpeg"
	}
	if _, err := exec.LookPath(bin); err != nil {
		return nil, fmt.Errorf("ffmpeg is needed to compose (apt-get install ffmpeg): %w", err)
	}
	tmp, err := os.MkdirTemp("", "starling-compose-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	say := func(format string, args ...any) {
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, format+"\n", args...)
		}
	}
	// A recording cut by a crash: its manifest's counts are up to a few
	// seconds old; the files say how far they go.
	if n := probeUnfinished(m, dir); n > 0 {
		say("compose: %d track(s) still marked as recording (the server stopped without finalising?): using what the files hold; `starling recover %s` repairs the folder", n, dir)
	}
	plan, err := PlanCompose(m, dir, o, tmp)
	if err != nil {
		return nil, err
	}
	if plan.Note != "" {
		say("compose: %s", plan.Note)
	}
	say("compose: %d video tile(s) in a %dx%d grid, %d audio track(s), %.1f s -> %s",
		len(plan.Tiles), plan.Cols, plan.Rows, plan.Audio, plan.Duration.Seconds(), o.Output)
	cmd := exec.CommandContext(ctx, bin, plan.Args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr strings.Builder
	cmd.Stderr = &limitedWriter{w: &stderr, n: 64 << 10}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(stdout)
	lastPct := -1
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		switch k {
		case "out_time_us", "out_time_ms": // both are microseconds
			us, err := strconv.ParseInt(v, 10, 64)
			if err != nil || plan.Duration <= 0 {
				continue
			}
			pct := int(float64(us) / float64(plan.Duration.Microseconds()) * 100)
			if pct > 100 {
				pct = 100
			}
			if pct/5 != lastPct/5 {
				lastPct = pct
				say("compose: %3d%% (%.1f of %.1f s)", pct, float64(us)/1e6, plan.Duration.Seconds())
			}
		case "progress":
			if v == "end" && lastPct < 100 {
				lastPct = 100
				say("compose: 100%% (%.1f s)", plan.Duration.Seconds())
			}
		}
	}
	if err := cmd.Wait(); err != nil {
		return plan, fmt.Errorf("ffmpeg: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	say("compose: wrote %s", o.Output)
	return plan, nil
}

type limitedWriter struct {
	w io.Writer
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := len(p)
		if k > l.n {
			k = l.n
		}
		_, _ = l.w.Write(p[:k])
		l.n -= k
	}
	return len(p), nil
}

// compose renders a finished room recording into composed.mp4 beside its
// manifest, with events; a server stop cancels it (rerun it with
// `starling compose`).
func (m *Manager) compose(r *recording) {
	defer m.composeWG.Done()
	man := r.rr.Manifest()
	hasFile := false
	for _, t := range man.Tracks {
		hasFile = hasFile || (t.File != "" && t.Frames > 0)
	}
	if !hasFile {
		return
	}
	o := m.cfg.ComposeOptions
	o.Manifest = filepath.Join(r.rr.Dir(), ManifestFile)
	o.Output = filepath.Join(r.rr.Dir(), "composed.mp4")
	r.rr.emit(Event{Type: EventComposeStarted})
	start := time.Now()
	if _, err := Compose(m.composeCtx, o); err != nil {
		_ = os.Remove(o.Output)
		m.log.Error("composing recording", "recording", r.rr.ID(), "err", err)
		r.rr.emit(Event{Type: EventComposeFailed, Error: err.Error()})
		return
	}
	m.mu.Lock()
	r.composed = o.Output
	m.mu.Unlock()
	m.log.Info("recording composed", "recording", r.rr.ID(), "file", o.Output, "took", time.Since(start).Round(time.Millisecond))
	r.rr.emit(Event{Type: EventComposed, Files: []string{o.Output}})
}

package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/internal/testutil"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/recorder"
)

// clipFrames reads the recorder's test clip: VP8 frames and Opus packets.
func clipFrames(t *testing.T) (video, audio [][]byte) {
	t.Helper()
	dir := filepath.Join("..", "..", "recorder", "testdata")
	return testutil.ReadIVF(t, filepath.Join(dir, "video.ivf")), testutil.ReadOgg(t, filepath.Join(dir, "audio.ogg"))
}

type probed struct {
	frames   int
	duration float64
	errors   string
}

func probeFile(t *testing.T, path string) probed {
	t.Helper()
	return probeFiles(t, path)[0]
}

// probeFiles probes the files at once (each ffprobe and ffmpeg decode is
// a process of its own: one after another they were seconds of waiting).
func probeFiles(t *testing.T, paths ...string) []probed {
	t.Helper()
	res := make([]probed, len(paths))
	errs := make([]error, len(paths))
	var wg sync.WaitGroup
	for i, path := range paths {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i], errs[i] = probe(path)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return res
}

func probe(path string) (probed, error) {
	out, err := exec.Command("ffprobe", "-v", "error", "-count_frames", "-show_entries",
		"stream=nb_read_frames:format=duration", "-of", "json", path).Output()
	if err != nil {
		return probed{}, fmt.Errorf("ffprobe %s: %v", path, err)
	}
	var r struct {
		Streams []struct {
			N string `json:"nb_read_frames"`
		} `json:"streams"`
		Format struct {
			Duration string `json:"duration"`
		} `json:"format"`
	}
	if err := json.Unmarshal(out, &r); err != nil || len(r.Streams) == 0 {
		return probed{}, fmt.Errorf("ffprobe %s: %s", path, out)
	}
	var p probed
	p.frames, _ = strconv.Atoi(r.Streams[0].N)
	p.duration, _ = strconv.ParseFloat(r.Format.Duration, 64)
	e, _ := exec.Command("ffmpeg", "-nostdin", "-v", "error", "-i", path, "-f", "null", "-").CombinedOutput()
	p.errors = strings.TrimSpace(string(e))
	return p, nil
}

// Chaos (issue 17): the real server, recording a room, is killed with
// SIGKILL while media flows. Every file written up to the crash plays
// (ffprobe decodes it without error and reports a duration), `starling
// compose` renders the unfinished recording, and `starling recover` makes
// the files final and the manifest complete. What is lost is at most the
// last second or so before the kill.
func TestKill9DuringRecording(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	parallelUnlessRace(t)
	testutil.RequireFFmpeg(t)
	bin := buildStarling(t)
	recDir := t.TempDir()
	n := startNode(t, bin, "starling", cleanEnv(), 0,
		"--bind", "127.0.0.1:0", "--udp-port", "0", "--tcp-port", "0", "--media-bind-ip", "127.0.0.1",
		"--log-format", "json", "--recordings-dir", recDir, "--auto-record", "crash-*")
	addr := n.log.listenAddr(t, 30*time.Second)
	waitHealthy(t, "http://"+addr+"/healthz", 10*time.Second)

	api, err := client.LoopbackAPI()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, "ws://"+addr+"/v1/rtc", "crash-room", client.Options{Name: "alice", API: api})
	if err != nil {
		t.Fatalf("join: %v", err)
	}
	defer c.Close()
	vt, _ := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "cam", "alice")
	at, _ := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "mic", "alice")
	var restart atomic.Bool // a keyframe request restarts the clip at its keyframe
	if _, err := c.Publish(ctx,
		client.LocalTrack{Track: vt, Source: protocol.SourceCamera, Name: "camera", OnKeyframeRequest: func() { restart.Store(true) }},
		client.LocalTrack{Track: at, Source: protocol.SourceMicrophone, Name: "mic"}); err != nil {
		t.Fatalf("publish: %v", err)
	}
	video, audio := clipFrames(t)

	// play in real time until stopped; count what was sent
	var sentV, sentA atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	start := time.Now()
	go func() {
		defer wg.Done()
		for i, k := 0, 0; ; i, k = i+1, k+1 {
			select {
			case <-stop:
				return
			case <-time.After(time.Until(start.Add(time.Duration(i) * time.Second / 30))):
			}
			if restart.Swap(false) {
				k = 0
			}
			if vt.WriteSample(media.Sample{Data: video[k%len(video)], Duration: time.Second / 30}) == nil {
				sentV.Add(1)
			}
		}
	}()
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(time.Until(start.Add(time.Duration(i) * 20 * time.Millisecond))):
			}
			if at.WriteSample(media.Sample{Data: audio[i%len(audio)], Duration: 20 * time.Millisecond}) == nil {
				sentA.Add(1)
			}
		}
	}()

	// wait until the manifest lists both files, then record 3 s more
	var folder string
	deadline := time.Now().Add(20 * time.Second)
	for folder == "" {
		if time.Now().After(deadline) {
			close(stop)
			wg.Wait()
			t.Fatal("the recording's manifest never listed two files")
		}
		time.Sleep(100 * time.Millisecond)
		ms, _ := filepath.Glob(filepath.Join(recDir, "*", recorder.ManifestFile))
		for _, mp := range ms {
			if m, err := recorder.ReadManifest(mp); err == nil {
				n := 0
				for _, tr := range m.Tracks {
					if tr.File != "" {
						n++
					}
				}
				if n == 2 {
					folder = filepath.Dir(mp)
				}
			}
		}
	}
	time.Sleep(4 * time.Second) // media keeps flowing meanwhile: this is the recording's length
	v0, a0 := sentV.Load(), sentA.Load()
	killAt := time.Now()
	if err := n.cmd.Process.Signal(os.Kill); err != nil {
		t.Fatal(err)
	}
	<-n.exited
	close(stop)
	wg.Wait()
	t.Logf("killed after %.1f s of media: %d video frames, %d audio packets sent", time.Since(start).Seconds(), v0, a0)

	m, err := recorder.ReadManifest(filepath.Join(folder, recorder.ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	if m.Status != "recording" {
		t.Errorf("manifest status %q after a crash, want \"recording\"", m.Status)
	}
	// every file plays as the crash left it, and compose reads the
	// unfinished recording (both only read it: at once)
	out := filepath.Join(t.TempDir(), "crash.mp4")
	var so, se bytes.Buffer
	ccmd := exec.Command(bin, "compose", "-o", out, "-no-names", filepath.Join(folder, recorder.ManifestFile))
	ccmd.Stdout, ccmd.Stderr = &so, &se
	composed := make(chan error, 1)
	go func() { composed <- ccmd.Run() }()
	var paths []string
	for _, tr := range m.Tracks {
		paths = append(paths, filepath.Join(folder, tr.File))
	}
	probes := probeFiles(t, paths...)
	crashed := map[string]probed{}
	for i, tr := range m.Tracks {
		p := probes[i]
		crashed[tr.File] = p
		if p.errors != "" || p.frames == 0 || p.duration < 2 {
			t.Errorf("%s (%s) as the crash left it: %d frames, %.3f s, errors %q", tr.File, tr.Kind, p.frames, p.duration, p.errors)
		}
		t.Logf("%s (%s) as left: %d frames, duration %.3f s, manifest %d frames", tr.File, tr.Kind, p.frames, p.duration, tr.Frames)
	}
	if err := <-composed; err != nil {
		t.Fatalf("compose of the crashed recording: %v\n%s%s", err, so.String(), se.String())
	}
	if p := probeFile(t, out); p.errors != "" || p.duration < 2.5 {
		t.Errorf("composed crashed recording: %.3f s, errors %q", p.duration, p.errors)
	}
	if !strings.Contains(so.String(), "still marked as recording") {
		t.Errorf("compose did not say the recording was unfinished:\n%s", so.String())
	}
	// recover makes everything final
	rcmd := exec.Command(bin, "recover", folder)
	so.Reset()
	se.Reset()
	rcmd.Stdout, rcmd.Stderr = &so, &se
	if err := rcmd.Run(); err != nil {
		t.Fatalf("recover: %v\n%s%s", err, so.String(), se.String())
	}
	t.Logf("starling recover:\n%s", so.String())
	m, err = recorder.ReadManifest(filepath.Join(folder, recorder.ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	if m.Status != "failed" || !strings.Contains(m.Error, "interrupted") || m.EndedAt == nil {
		t.Errorf("manifest after recover: status %q error %q", m.Status, m.Error)
	}
	paths = paths[:0]
	for _, tr := range m.Tracks {
		paths = append(paths, filepath.Join(folder, tr.File))
	}
	probes = probeFiles(t, paths...)
	for i, tr := range m.Tracks {
		p := probes[i]
		if p.errors != "" || p.frames != tr.Frames || p.frames < crashed[tr.File].frames-1 || tr.Recording {
			t.Errorf("%s after recover: %d frames (manifest %d, before %d), errors %q", tr.File, p.frames, tr.Frames, crashed[tr.File].frames, p.errors)
		}
		// what the kill lost: the track's first frame is at start_ms on the
		// room clock (this machine's clock): media from there to the kill
		// that is not in the file
		sent := killAt.Sub(m.StartedAt.Add(time.Duration(tr.StartMS) * time.Millisecond)).Seconds()
		lost := sent - p.duration
		t.Logf("%s: %.3f s in the file, %.3f s from its first frame to the kill: lost %.3f s", tr.File, p.duration, sent, lost)
		if lost > 2.0 {
			t.Errorf("%s: %.3f s of media before the kill are missing (want about a second at most)", tr.File, lost)
		}
	}
}

package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media/h264writer"
	"github.com/pion/webrtc/v4/pkg/media/ivfwriter"
	"github.com/pion/webrtc/v4/pkg/media/oggwriter"
	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/internal/testutil"
	"github.com/starling-rtc/starling/protocol"
)

// A foreign WebRTC stack on the WebSocket signaling: aiortc (Python, Debian's
// python3-aiortc) joins, publishes, subscribes and exchanges data messages
// with a Go client through the server, following docs/PROTOCOL.md on its own
// (testdata/aiortc_client.py). aiortc does not trickle, uses its own SDP
// (its codec list and order, BUNDLE from a balanced policy, rtcp-mux), its
// own ICE (aioice) and SCTP.

const aiortcScript = "testdata/aiortc_client.py"

// requireAiortc skips outside CI when aiortc is missing (.ci/run installs
// it) and fails inside CI.
func requireAiortc(t *testing.T) {
	t.Helper()
	testutil.RequirePython(t, aiortcScript, "aiortc", "python3-aiortc python3-websockets")
}

// aiortcCounts is what aiortc_client.py reports in its met and summary events.
type aiortcCounts struct {
	Met         bool              `json:"met"`
	VideoFrames int               `json:"video_frames"`
	AudioFrames int               `json:"audio_frames"`
	Sizes       []string          `json:"sizes"`
	Data        []json.RawMessage `json:"data"`
	DataCount   int               `json:"data_count"`
	SentData    int               `json:"sent_data"`
	ICE         map[string]string `json:"ice"` // gst_ws.py: each connection's ICE transport
}

// aiortcPeer is one running aiortc_client.py --until-eof.
type aiortcPeer struct {
	joined chan string       // its participant id, once joined
	met    chan aiortcCounts // its counts, once its wants are met
	done   chan struct{}     // closed when the process has exited
	stdin  io.Closer
	// After done:
	summary aiortcCounts
	out     string
	err     error
}

// startAiortc runs one aiortc participant; it leaves once release is called
// (its standard input closes) after its wants are met.
func startAiortc(ctx context.Context, args ...string) (*aiortcPeer, error) {
	return startPyPeer(ctx, aiortcScript, args...)
}

// startPyPeer runs a Python participant script that prints joined, met and
// summary events (aiortc_client.py, gst_ws.py).
func startPyPeer(ctx context.Context, script string, args ...string) (*aiortcPeer, error) {
	p := &aiortcPeer{joined: make(chan string, 1), met: make(chan aiortcCounts, 1), done: make(chan struct{})}
	cmd := exec.CommandContext(ctx, "/usr/bin/python3", append([]string{script, "run", "--until-eof"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		defer close(p.done)
		var out strings.Builder
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			out.WriteString(line + "\n")
			var ev struct {
				Event         string `json:"event"`
				ParticipantID string `json:"participantId"`
			}
			if json.Unmarshal([]byte(line), &ev) != nil {
				continue
			}
			var c aiortcCounts
			switch ev.Event {
			case "joined":
				p.joined <- ev.ParticipantID
			case "met":
				_ = json.Unmarshal([]byte(line), &c)
				p.met <- c
			case "summary":
				_ = json.Unmarshal([]byte(line), &p.summary)
			}
		}
		p.err = cmd.Wait()
		// aiortc's and libav's own log lines, useful when it fails.
		p.out = out.String() + lastLines(stderr.String(), 30)
	}()
	return p, nil
}

// release lets it leave and waits for it to exit.
func (p *aiortcPeer) release() {
	_ = p.stdin.Close()
	<-p.done
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// trackFiles records remote tracks to files ffprobe reads: IVF for VP8,
// Annex B for H.264, Ogg for Opus.
type trackFiles struct {
	dir     string
	mu      sync.Mutex
	files   map[string]string // kind -> path (one track per kind here)
	mimes   map[string]string
	packets map[string]*atomic.Int64
	wg      sync.WaitGroup
}

func newTrackFiles(dir string) *trackFiles {
	return &trackFiles{dir: dir, files: map[string]string{}, mimes: map[string]string{},
		packets: map[string]*atomic.Int64{"video": {}, "audio": {}}}
}

func (s *trackFiles) record(t *testing.T, tr *webrtc.TrackRemote) {
	kind := tr.Kind().String()
	mime := tr.Codec().MimeType
	var w interface {
		WriteRTP(*rtp.Packet) error
		Close() error
	}
	var err error
	path := filepath.Join(s.dir, kind)
	switch {
	case strings.EqualFold(mime, webrtc.MimeTypeH264):
		path += ".h264"
		w, err = h264writer.New(path)
	case kind == "video":
		path += ".ivf"
		w, err = ivfwriter.New(path, ivfwriter.WithCodec(mime))
	default:
		path += ".ogg"
		w, err = oggwriter.New(path, 48000, 2)
	}
	if err != nil {
		t.Errorf("writer for %s: %v", mime, err)
		return
	}
	s.mu.Lock()
	s.files[kind], s.mimes[kind] = path, mime
	n := s.packets[kind]
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer w.Close()
		for {
			pkt, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			if len(pkt.Payload) == 0 {
				continue // padding probes
			}
			_ = w.WriteRTP(pkt)
			n.Add(1)
		}
	}()
}

func (s *trackFiles) count(kind string) int64 { return s.packets[kind].Load() }

// TestAiortcCallVP8: aiortc with its default codecs (VP8 first) and a Go
// client publish to each other; both decode what they get, and data
// messages go both ways.
func TestAiortcCallVP8(t *testing.T) { aiortcCall(t, "vp8") }

// TestAiortcCallH264: the same with H.264 on both sides (aiortc prefers it
// with setCodecPreferences; the Go client publishes baseline H.264): the
// server offers aiortc the H.264 profiles it has, aiortc's answer picks
// one, and each side decodes the other's H.264.
func TestAiortcCallH264(t *testing.T) { aiortcCall(t, "h264") }

func aiortcCall(t *testing.T, codec string) {
	// aiortc encodes and decodes in Python, and every step is awaited with
	// deadlines of tens of seconds: nothing is judged on time.
	parallelUnlessRace(t)
	requireAiortc(t)
	m := makeTestMedia(t) // ffmpeg and ffprobe too
	var h264File string
	if codec == "h264" {
		h264File = h264Media(t)
	}
	srv := startServer(t, func(c *config.Config) {
		// a Python peer on a busy machine may take seconds to answer
		c.Room.NegotiationTimeout = config.Duration(30 * time.Second)
	})
	roomName := "aiortc-" + codec
	goPeer := join(t, srv, roomName, "go")
	files := newTrackFiles(t.TempDir())
	goPeer.OnTrack(func(rt *client.RemoteTrack) { files.record(t, rt.Track) })
	var dataMu sync.Mutex
	var fromAiortc []protocol.DataMessage
	goPeer.OnData(func(dm protocol.DataMessage) {
		dataMu.Lock()
		fromAiortc = append(fromAiortc, dm)
		dataMu.Unlock()
	})
	heardFrom := func(id string) int {
		dataMu.Lock()
		defer dataMu.Unlock()
		n := 0
		for _, dm := range fromAiortc {
			if dm.From == id && strings.HasPrefix(dm.Payload, "aiortc says ") {
				n++
			}
		}
		return n
	}

	// The Go client publishes real media: VP8 (or H.264) and Opus.
	videoCap := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}
	if codec == "h264" {
		videoCap = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
			SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"}
	}
	video, err := webrtc.NewTrackLocalStaticSample(videoCap, "video", "go")
	if err != nil {
		t.Fatal(err)
	}
	_, audio := mediaTracks(t, "go")
	if _, err := goPeer.Publish(ctxT(t, 10*time.Second),
		client.LocalTrack{Track: video, Source: protocol.SourceCamera, Name: "go camera"},
		client.LocalTrack{Track: audio, Source: protocol.SourceMicrophone, Name: "go mic"}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var senders sync.WaitGroup
	if codec == "h264" {
		silent, _ := mediaTracks(t, "unused")
		senders.Add(2)
		go func() { defer senders.Done(); sendH264(h264File, video, stop) }()
		go func() { defer senders.Done(); sendMedia(t, m, silent, audio, stop).Wait() }()
	} else {
		senders.Add(1)
		go func() { defer senders.Done(); sendMedia(t, m, video, audio, stop).Wait() }()
	}
	defer func() { close(stop); senders.Wait() }()

	// aiortc joins, publishes and subscribes; it reports once it decoded
	// 30 video and 50 audio frames from the Go client and got a data message.
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	ai, err := startAiortc(ctx, srv.SignalingURL(), roomName, "--name", "aiortc", "--video-codec", codec,
		"--seconds", "60", "--want-video", "30", "--want-audio", "50", "--want-data", "1")
	if err != nil {
		t.Fatal(err)
	}
	defer ai.release()
	fail := func(format string, args ...any) {
		t.Helper()
		_ = ai.stdin.Close()
		<-ai.done
		t.Fatalf(format+"\naiortc_client.py (%v):\n%s", append(args, ai.err, ai.out)...)
	}
	var aiortcID string
	select {
	case aiortcID = <-ai.joined:
	case <-ai.done:
		fail("aiortc never joined")
	}
	// The Go client keeps talking to aiortc until it has heard it.
	talk := time.NewTicker(500 * time.Millisecond)
	defer talk.Stop()
	var s aiortcCounts
	for n, met := 1, false; !met; n++ {
		select {
		case s = <-ai.met:
			met = true
		case <-ai.done:
			fail("aiortc ended before it got the Go client's media and data")
		case <-talk.C:
			_ = goPeer.SendData(ctxT(t, 5*time.Second), fmt.Sprintf("go says %d", n))
		}
	}
	if len(s.Sizes) == 0 || s.Sizes[0] != "320x240" {
		t.Errorf("aiortc decoded video of sizes %v, want 320x240", s.Sizes)
	}
	var first protocol.DataMessage
	if err := json.Unmarshal(s.Data[0], &first); err != nil || first.From != goPeer.ParticipantID() || !strings.HasPrefix(first.Payload, "go says ") {
		t.Errorf("aiortc's first data message is %s, want {from: %s, payload: go says ...}", s.Data[0], goPeer.ParticipantID())
	}

	// And the other way: what aiortc publishes reaches the Go client.
	deadline := time.After(30 * time.Second)
	for files.count("video") < 60 || files.count("audio") < 50 || heardFrom(aiortcID) == 0 {
		select {
		case <-deadline:
			fail("the Go client got %d video and %d audio packets and %d data messages from aiortc, want 60, 50 and 1",
				files.count("video"), files.count("audio"), heardFrom(aiortcID))
		case <-ai.done:
			fail("aiortc ended early")
		case <-time.After(100 * time.Millisecond):
		}
	}
	ai.release()
	t.Logf("aiortc_client.py:\n%s", ai.out)
	if ai.err != nil || !ai.summary.Met {
		t.Fatalf("aiortc_client.py: %v (summary %+v)", ai.err, ai.summary)
	}
	goPeer.Close()
	files.wg.Wait()
	if want := map[string]string{"vp8": webrtc.MimeTypeVP8, "h264": webrtc.MimeTypeH264}[codec]; !strings.EqualFold(files.mimes["video"], want) {
		t.Errorf("the Go client got aiortc's video as %s, want %s", files.mimes["video"], want)
	}
	if n := testutil.DecodedFrames(t, files.files["video"]); n < 20 {
		t.Errorf("ffprobe decoded %d frames of aiortc's video, want >= 20", n)
	} else {
		t.Logf("ffprobe decoded %d frames of aiortc's %s video", n, files.mimes["video"])
	}
	if n := testutil.DecodedFrames(t, files.files["audio"]); n < 40 {
		t.Errorf("ffprobe decoded %d frames of aiortc's audio, want >= 40", n)
	}
}

package server_test

import (
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media/ivfwriter"
	"github.com/pion/webrtc/v4/pkg/media/oggwriter"
	"github.com/starling-rtc/starling/internal/testutil"
	"github.com/starling-rtc/starling/server"
)

// The WHIP and WHEP tests use plain pion and net/http, as any third-party
// client would: no Starling client code on that side.

// plainAPI is a stock pion API on loopback. vanish, when set, is a socket
// filter: once it reads true the peer goes silent without a goodbye.
// first are interceptors nearest the network (a test's throttle).
func plainAPI(t testing.TB, vanish *atomic.Bool, first ...interceptor.Factory) *webrtc.API {
	t.Helper()
	if vanish == nil {
		return testutil.PlainAPI(t, first, nil)
	}
	udp, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = udp.Close() })
	return testutil.PlainAPI(t, first, func(se *webrtc.SettingEngine) {
		se.SetICEUDPMux(webrtc.NewICEUDPMux(nil, &silentConn{PacketConn: udp, off: vanish}))
	})
}

// silentConn drops every datagram both ways once off is true: a client
// whose network vanished (no DTLS close, no ICE goodbye).
type silentConn struct {
	net.PacketConn
	off *atomic.Bool
}

func (c *silentConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if c.off.Load() {
		return len(p), nil
	}
	return c.PacketConn.WriteTo(p, addr)
}

func (c *silentConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(p)
		if err != nil || !c.off.Load() {
			return n, addr, err
		}
	}
}

// httpResult is one WHIP/WHEP HTTP exchange.
type httpResult struct {
	status int
	header http.Header
	body   string
}

// httpDo sends one request with an optional bearer token and headers.
func httpDo(t testing.TB, method, url, contentType, token, body string, headers ...string) httpResult {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	client := &http.Client{Timeout: 20 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return httpResult{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// offerGathered makes pc's offer with every candidate in it: WHIP clients
// without trickle send it so.
func offerGathered(t testing.TB, pc *webrtc.PeerConnection) string {
	t.Helper()
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	select {
	case <-gathered:
	case <-time.After(10 * time.Second):
		t.Fatal("ICE gathering did not complete")
	}
	return pc.LocalDescription().SDP
}

// whipSession is a plain pion client's WHIP or WHEP session.
type whipSession struct {
	pc       *webrtc.PeerConnection
	location string // absolute URL of the session resource
	etag     string
	answer   string
	res      httpResult
}

// postOffer POSTs pc's offer to url and applies the answer; it fails the
// test unless the server says 201 Created.
func postOffer(t testing.TB, srv *server.Server, path, token string, pc *webrtc.PeerConnection) *whipSession {
	t.Helper()
	res := httpDo(t, http.MethodPost, "http://"+srv.Addr()+path, "application/sdp", token, offerGathered(t, pc))
	if res.status != http.StatusCreated {
		t.Fatalf("POST %s: %d %s", path, res.status, res.body)
	}
	if ct := res.header.Get("Content-Type"); ct != "application/sdp" {
		t.Fatalf("answer Content-Type %q", ct)
	}
	loc := res.header.Get("Location")
	if !strings.HasPrefix(loc, "/v1/rooms/") {
		t.Fatalf("Location %q", loc)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: res.body}); err != nil {
		t.Fatalf("applying the answer: %v\n%s", err, res.body)
	}
	return &whipSession{pc: pc, location: "http://" + srv.Addr() + loc, etag: res.header.Get("ETag"), answer: res.body, res: res}
}

// testMedia is a few seconds of real VP8 video and Opus audio made by ffmpeg.
type testMedia struct{ ivf, ogg string }

// makeTestMedia encodes the test media once per test binary; without
// ffmpeg the test is skipped outside CI and fails inside it.
func makeTestMedia(t testing.TB) testMedia {
	t.Helper()
	ivf, ogg := testutil.TestMedia(t)
	return testMedia{ivf: ivf, ogg: ogg}
}

// sendMedia loops the test media into the tracks in real time until stop
// is closed.
func sendMedia(_ testing.TB, m testMedia, video, audio *webrtc.TrackLocalStaticSample, stop <-chan struct{}) *sync.WaitGroup {
	return testutil.SendMedia(m.ivf, m.ogg, video, audio, stop)
}

// mediaTracks makes a VP8 and an Opus sample track.
func mediaTracks(t testing.TB, stream string) (video, audio *webrtc.TrackLocalStaticSample) {
	t.Helper()
	return testutil.MediaTracks(t, "video", "audio", stream)
}

// mediaSink writes what a receiver gets to IVF and Ogg files for ffprobe.
type mediaSink struct {
	dir          string
	videoPackets atomic.Int64
	videoFrames  atomic.Int64 // video packets that end a frame (marker bit)
	audioPackets atomic.Int64
	mu           sync.Mutex
	files        []string
	wg           sync.WaitGroup
}

// start records tr on a goroutine of its own.
func (s *mediaSink) start(t testing.TB, tr *webrtc.TrackRemote) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.receive(t, tr)
	}()
}

// filesOf waits until every recorded track has ended (its connection
// closed, so the files are complete) and lists the files of one kind.
func (s *mediaSink) filesOf(kind string) []string {
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, f := range s.files {
		if strings.HasPrefix(filepath.Base(f), kind) {
			out = append(out, f)
		}
	}
	return out
}

// receive records one remote track until it ends; the file name gets a
// suffix so a second track of the same kind goes to its own file.
func (s *mediaSink) receive(t testing.TB, tr *webrtc.TrackRemote) {
	s.mu.Lock()
	n := len(s.files)
	var path string
	var w interface {
		WriteRTP(*rtp.Packet) error
		Close() error
	}
	var err error
	if tr.Kind() == webrtc.RTPCodecTypeVideo {
		path = filepath.Join(s.dir, "video"+strconv.Itoa(n)+".ivf")
		w, err = ivfwriter.New(path, ivfwriter.WithCodec(tr.Codec().MimeType))
	} else {
		path = filepath.Join(s.dir, "audio"+strconv.Itoa(n)+".ogg")
		w, err = oggwriter.New(path, 48000, 2)
	}
	s.files = append(s.files, path)
	s.mu.Unlock()
	if err != nil {
		t.Errorf("writer: %v", err)
		return
	}
	defer w.Close()
	for {
		pkt, _, err := tr.ReadRTP()
		if err != nil {
			return
		}
		if len(pkt.Payload) == 0 {
			continue
		}
		if tr.Kind() == webrtc.RTPCodecTypeVideo {
			s.videoPackets.Add(1)
			if pkt.Marker {
				s.videoFrames.Add(1)
			}
		} else {
			s.audioPackets.Add(1)
		}
		if err := w.WriteRTP(pkt); err != nil {
			return
		}
	}
}

// plainPC is a peer of api (see plainAPI), closed when the test ends.
func plainPC(t testing.TB, api *webrtc.API, cfg webrtc.Configuration) *webrtc.PeerConnection {
	t.Helper()
	pc, err := api.NewPeerConnection(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	return pc
}

// sendingPC is a plain peer with sendonly VP8 and Opus tracks of stream
// (see mediaTracks).
func sendingPC(t testing.TB, api *webrtc.API, cfg webrtc.Configuration, stream string) (pc *webrtc.PeerConnection, video, audio *webrtc.TrackLocalStaticSample) {
	t.Helper()
	pc = plainPC(t, api, cfg)
	video, audio = mediaTracks(t, stream)
	for _, tr := range []webrtc.TrackLocal{video, audio} {
		if _, err := pc.AddTransceiverFromTrack(tr, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
			t.Fatal(err)
		}
	}
	return pc, video, audio
}

// receivingPC is a plain peer with a recvonly video and a recvonly audio
// section, as a WHEP viewer offers.
func receivingPC(t testing.TB, api *webrtc.API, cfg webrtc.Configuration) *webrtc.PeerConnection {
	t.Helper()
	pc := plainPC(t, api, cfg)
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
	return pc
}

package cluster_test

import (
	"encoding/binary"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/internal/testutil"
	"github.com/starling-rtc/starling/protocol"
)

// sender publishes synthetic VP8 (30 fps, a keyframe when asked) and Opus
// (50 packets/s whose payload counts up) until the test ends.
type sender struct {
	video, audio *webrtc.TrackLocalStaticRTP
	wantKey      atomic.Bool
	stop         chan struct{}
	wg           sync.WaitGroup
	published    []client.Published
}

func publishMedia(t *testing.T, c *client.Client, withVideo bool) *sender {
	t.Helper()
	s := &sender{stop: make(chan struct{})}
	s.wantKey.Store(true)
	s.audio = testutil.OpusRTPTrack(t)
	tracks := []client.LocalTrack{{Track: s.audio, Source: protocol.SourceMicrophone, Name: "mic"}}
	if withVideo {
		s.video = testutil.VP8RTPTrack(t)
		tracks = append(tracks, client.LocalTrack{Track: s.video, Source: protocol.SourceCamera, Name: "cam",
			OnKeyframeRequest: func() { s.wantKey.Store(true) }})
	}
	var err error
	if s.published, err = c.Publish(ctxT(t, 15*time.Second), tracks...); err != nil {
		t.Fatalf("publish: %v", err)
	}
	s.wg.Add(1)
	go s.run()
	t.Cleanup(func() { close(s.stop); s.wg.Wait() })
	return s
}

func (s *sender) run() {
	defer s.wg.Done()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	aseq, vseq, pid := uint16(1), uint16(60000), uint16(1)
	var ats, vts uint32 = 1000, 4294960000
	for n := 0; ; n++ {
		select {
		case <-s.stop:
			return
		case <-tick.C:
		}
		payload := make([]byte, 40)
		payload[0] = 0x78
		binary.BigEndian.PutUint32(payload[1:], uint32(n))
		_ = s.audio.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: aseq, Timestamp: ats}, Payload: payload})
		aseq++
		ats += 960
		if s.video == nil || n%2 == 1 {
			continue
		}
		key := s.wantKey.Swap(false)
		for part := 0; part < 2; part++ {
			b := []byte{0x80, 0x80, 0x80 | byte(pid>>8), byte(pid)}
			if part == 0 {
				b[0] |= 0x10
				if key {
					b = append(b, 0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01)
				} else {
					b = append(b, 0x11, 0x00, 0x00)
				}
			}
			b = append(b, make([]byte, 200)...)
			_ = s.video.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, Marker: part == 1, SequenceNumber: vseq, Timestamp: vts}, Payload: b})
			vseq++
		}
		pid = (pid + 1) & 0x7fff
		vts += 3000
	}
}

// received counts the RTP packets a client receives, by participant and kind.
type received struct {
	mu     sync.Mutex
	n      map[string]int // participant id + "/" + kind
	tracks map[string]int // remote tracks received, by the same key
	gaps   gaps           // under mu
}

func countMedia(c *client.Client) *received {
	r := &received{n: map[string]int{}, tracks: map[string]int{}}
	c.OnTrack(func(rt *client.RemoteTrack) {
		key := rt.ParticipantID + "/" + rt.Track.Kind().String()
		r.mu.Lock()
		r.tracks[key]++
		r.mu.Unlock()
		go func() {
			for {
				pkt, _, err := rt.Track.ReadRTP()
				if err != nil {
					return
				}
				r.mu.Lock()
				r.n[key]++
				r.gaps.saw(key, pkt, time.Now()) // gap_test.go
				r.mu.Unlock()
			}
		}()
	})
	return r
}

// trackCount is how many tracks of a participant's kind arrived.
func (r *received) trackCount(participant, kind string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.tracks[participant+"/"+kind]
}

func (r *received) count(participant, kind string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n[participant+"/"+kind]
}

// Media crosses nodes both ways, and each track crosses to an edge node
// once however many subscribers it has there.
func TestMediaAcrossNodes(t *testing.T) {
	parallel(t)
	srvs := startCluster(t, 3, nil)
	a := join(t, srvs[0], "media", "a")
	b1 := join(t, srvs[1], "media", "b1")
	b2 := join(t, srvs[1], "media", "b2")
	c := join(t, srvs[2], "media", "c")
	rb1, rb2, rc, ra := countMedia(b1), countMedia(b2), countMedia(c), countMedia(a)
	seeEachOther(t, a, b1, b2, c)
	sa := publishMedia(t, a, true)
	publishMedia(t, c, false)

	eventually(t, 30*time.Second, "a's audio and video reach b1, b2 (n1) and c (n2); c's audio reaches a (n0)", func() bool {
		for _, r := range []*received{rb1, rb2, rc} {
			if r.count(a.ParticipantID(), "audio") < 50 || r.count(a.ParticipantID(), "video") < 30 {
				return false
			}
		}
		return ra.count(c.ParticipantID(), "audio") >= 50
	})
	// a's two tracks cross to n1 and to n2 once each; c's audio to n0 and n1.
	if s := srvs[0].Cluster().RelayStats(); s.Exports != 2+2 {
		t.Errorf("n0 exports %d streams, want 4 (2 tracks x 2 edge nodes)", s.Exports)
	}
	if s := srvs[1].Cluster().RelayStats(); s.Imports != 3 {
		t.Errorf("n1 imports %d streams, want 3 (a's two, c's one) for its two subscribers", s.Imports)
	}
	t.Logf("n0 relay: %+v", srvs[0].Cluster().RelayStats())
	resp, err := http.Get(srvs[0].BaseURL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"starling_cluster_nodes 3", `starling_cluster_relayed_tracks{direction="out"} 4`, `starling_cluster_relayed_tracks{direction="in"} 1`} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("n0's /metrics lacks %q", want)
		}
	}

	// A mute through n2's admin API reaches a on n0; b1 on n1 is told.
	var audioID string
	for _, p := range sa.published {
		if p.Kind == "audio" {
			audioID = p.ID
		}
	}
	body := strings.NewReader(`{"trackId":"` + audioID + `","muted":true}`)
	resp, err = http.Post(srvs[2].BaseURL()+"/v1/rooms/media/participants/"+a.ParticipantID()+"/mute", "application/json", body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("mute through n2: %v %v", err, resp)
	}
	resp.Body.Close()
	if _, err := b1.WaitEvent(ctxT(t, 10*time.Second), protocol.NotifyTrackUpdated, func(raw json.RawMessage) bool {
		var p protocol.TrackParams
		return json.Unmarshal(raw, &p) == nil && p.Track.ID == audioID && p.Track.Muted
	}); err != nil {
		t.Fatalf("b1 (n1) not told a's audio was muted through n2: %v", err)
	}
}

package server_test

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/server"
)

// whipSimulcastRIDs publishes simLayers over WHIP as whipSimulcast does,
// under the rid names given and with the offer rewritten by munge; rids
// over 16 bytes go in two-byte header extensions (RFC 8285). It returns
// the POST's answer.
func whipSimulcastRIDs(t *testing.T, srv *server.Server, path string, rids []string, munge func(string) string) httpResult {
	t.Helper()
	pc, err := plainAPI(t, nil).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	tracks := map[string]*webrtc.TrackLocalStaticRTP{}
	var tr *webrtc.RTPTransceiver
	for _, rid := range rids {
		track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "cam", "obs", webrtc.WithRTPStreamID(rid))
		if err != nil {
			t.Fatal(err)
		}
		tracks[rid] = track
		if tr == nil {
			if tr, err = pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
				t.Fatal(err)
			}
		} else if err := tr.Sender().AddEncoding(track); err != nil {
			t.Fatal(err)
		}
	}
	offer := munge(offerGathered(t, pc))
	res := httpDo(t, http.MethodPost, "http://"+srv.Addr()+path, "application/sdp", "", offer)
	if res.status != http.StatusCreated {
		return res
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: res.body}); err != nil {
		t.Fatalf("answer: %v", err)
	}
	var midID, ridID uint8
	for _, e := range tr.Sender().GetParameters().HeaderExtensions {
		switch e.URI {
		case sdp.SDESMidURI:
			midID = uint8(e.ID)
		case sdp.SDESRTPStreamIDURI:
			ridID = uint8(e.ID)
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(33 * time.Millisecond)
		defer tick.Stop()
		seq := [3]uint16{10, 20000, 40000}
		ts := [3]uint32{1, 1 << 20, 1 << 30}
		var pid [3]uint16
		for frame := 0; ; frame++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			key := frame%30 == 0
			for i, l := range simLayers { // a fourth rid is offered, never sent
				for part := 0; part < 2; part++ {
					pkt := &rtp.Packet{Header: rtp.Header{Version: 2, Marker: part == 1, SequenceNumber: seq[i], Timestamp: ts[i]},
						Payload: simPayload(pid[i], part == 0, key, l.w, l.h, false)}
					if len(rids[i]) > 16 {
						pkt.Header.Extension, pkt.Header.ExtensionProfile = true, 0x1000
					}
					_ = pkt.Header.SetExtension(midID, []byte(tr.Mid()))
					_ = pkt.Header.SetExtension(ridID, []byte(rids[i]))
					_ = tracks[rids[i]].WriteRTP(pkt)
					seq[i]++
				}
				pid[i] = (pid[i] + 1) & 0x7fff
				ts[i] += 3000
			}
		}
	}()
	t.Cleanup(func() { close(stop); wg.Wait() })
	return res
}

var answerRID = regexp.MustCompile(`a=rid:(\S+) recv`)

// Simulcast offers as clients other than browsers may write them (RFC 8851
// and 8853 allow each): rid names long enough for two-byte header
// extensions, with dots, a rid paused with "~", rids without an
// a=simulcast line or listed in another order there. Each publishes one
// track with three layers that a subscriber can switch between. A rid
// declared twice is refused in words (it was answered twice, and the track
// had two layers of one encoding); a fourth rid is left out of the answer
// (it was answered, and the client sent an encoding the server dropped).
func TestOutsiderSimulcastRIDs(t *testing.T) {
	parallel(t)
	srv := startServer(t, nil)
	same := func(s string) string { return s }
	for _, c := range []struct {
		name  string
		rids  []string
		munge func(string) string
	}{
		{"long", []string{strings.Repeat("a", 40), strings.Repeat("b", 40), strings.Repeat("c", 40)}, same},
		{"dots", []string{"r.1", "r.2", "r.3"}, same},
		{"paused", []string{"q", "h", "f"}, func(s string) string {
			return strings.Replace(s, "a=simulcast:send q;h;f", "a=simulcast:send q;~h;f", 1)
		}},
		{"no-simulcast-line", []string{"q", "h", "f"}, func(s string) string { return strings.Replace(s, "a=simulcast:send q;h;f\r\n", "", 1) }},
		{"reversed", []string{"q", "h", "f"}, func(s string) string {
			return strings.Replace(s, "a=simulcast:send q;h;f", "a=simulcast:send f;h;q", 1)
		}},
		{"four", []string{"q", "h", "f", "x"}, same},
	} {
		room := "rids-" + c.name
		watcher := join(t, srv, room, "watcher")
		v := watchVideo(watcher)
		res := whipSimulcastRIDs(t, srv, "/v1/rooms/"+room+"/whip", c.rids, c.munge)
		if res.status != http.StatusCreated {
			t.Fatalf("%s: POST %d %s", c.name, res.status, res.body)
		}
		if got := answerRID.FindAllStringSubmatch(res.body, -1); len(got) != 3 || got[0][1] != c.rids[0] || got[2][1] != c.rids[2] {
			t.Errorf("%s: the answer's rids %v, want the first three offered", c.name, got)
		}
		ev, err := watcher.WaitEvent(ctxT(t, 20*time.Second), protocol.NotifyTrackPublished, nil)
		if err != nil {
			t.Fatalf("%s: no trackPublished: %v", c.name, err)
		}
		var tp protocol.TrackParams
		_ = json.Unmarshal(ev.Params, &tp)
		if !tp.Track.Simulcast || len(tp.Track.Layers) != 3 {
			t.Fatalf("%s: the track as the room sees it: %+v", c.name, tp.Track)
		}
		v.waitHeight(t, 15*time.Second, 720)
		setSub(t, watcher, protocol.SetSubscriptionParams{TrackID: tp.Track.ID, Quality: ptr(protocol.QualityLow)})
		v.waitHeight(t, 15*time.Second, 180)
	}

	dup := whipSimulcastRIDs(t, srv, "/v1/rooms/rids-dup/whip", []string{"q", "h", "f"}, func(s string) string {
		return strings.Replace(s, "a=rid:h send", "a=rid:q send", 1)
	})
	if dup.status != http.StatusBadRequest || !strings.Contains(dup.body, `rid "q"`) {
		t.Errorf("a rid declared twice: %d %s, want 400 naming the rid", dup.status, dup.body)
	}
}

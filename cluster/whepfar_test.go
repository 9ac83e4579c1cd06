package cluster_test

import (
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/client"
)

// TestWHEPFromNodeWithoutTheRoom: clustering changes nothing for clients,
// and a WHEP player is a client: it may watch a room through any node. A
// player asking a node where nobody of the room is connected got 404
// "room does not exist: nothing to watch" while the room was live on
// another node. Here a plain pion player (no Starling code) watches a
// publisher of node 0 through node 1, and decodes its packets.
func TestWHEPFromNodeWithoutTheRoom(t *testing.T) {
	parallel(t)
	srvs := startCluster(t, 3, nil)
	pub := join(t, srvs[0], "far-whep", "camera")
	publishMedia(t, pub, true)

	pc := whepPlayer(t)
	var video atomic.Int64
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			if _, _, err := tr.ReadRTP(); err != nil {
				return
			}
			if tr.Kind() == webrtc.RTPCodecTypeVideo {
				video.Add(1)
			}
		}
	})
	resp, err := http.Post(srvs[1].BaseURL()+"/v1/rooms/far-whep/whep", "application/sdp", strings.NewReader(pc.LocalDescription().SDP))
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("WHEP through a node without the room's participants: %s %s", resp.Status, answer)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(answer)}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the publisher's video at the WHEP player", func() bool { return video.Load() >= 30 })

	// Through a third node, ?participant= naming nobody of the room is
	// 404 as on one node (checked once the join brought the room's
	// participants there), and leaves nobody behind.
	resp, err = http.Post(srvs[2].BaseURL()+"/v1/rooms/far-whep/whep?participant=nobody", "application/sdp", strings.NewReader(pc.LocalDescription().SDP))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("WHEP of ?participant=nobody through a third node: %s, want 404", resp.Status)
	}
	eventually(t, 15*time.Second, "the refused viewer gone from the room", func() bool {
		n, _ := srvs[0].Rooms().Room("far-whep").Counts()
		return n == 2 // the publisher and the first player
	})

	// A name that is nowhere in the cluster is still 404.
	resp, err = http.Post(srvs[1].BaseURL()+"/v1/rooms/no-such-room/whep", "application/sdp", strings.NewReader(pc.LocalDescription().SDP))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("WHEP of a room nowhere in the cluster: %s, want 404", resp.Status)
	}
}

// whepPlayer is a plain pion WHEP player (no Starling code): receiving
// audio and video, its offer set and its candidates gathered.
func whepPlayer(t *testing.T) *webrtc.PeerConnection {
	t.Helper()
	return offeringPeer(t, webrtc.RTPTransceiverDirectionRecvonly)
}

// offeringPeer is a loopback peer with its complete offer (every candidate
// gathered) set as local description: an audio and a video transceiver in
// direction dir.
func offeringPeer(t *testing.T, dir webrtc.RTPTransceiverDirection) *webrtc.PeerConnection {
	api, err := client.LoopbackAPI()
	if err != nil {
		t.Fatal(err)
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: dir}); err != nil {
			t.Fatal(err)
		}
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	return pc
}

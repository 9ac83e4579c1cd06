package server_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/protocol"
)

// TestClientWithoutTrickle: a client that puts its candidates in its SDP
// (it waits for gathering to complete), never sends `candidate` and ignores
// the server's, publishes video and exchanges data messages like any other
// (docs/PROTOCOL.md, "Candidates in the SDP").
func TestClientWithoutTrickle(t *testing.T) {
	parallel(t)
	srv := startServer(t, nil)
	viewer := join(t, srv, "no-trickle", "viewer")
	rec := record(viewer)
	viewerIn := inbox(viewer)

	p := dialRaw(t, srv)
	_, resp := p.request(protocol.MethodJoin, `{"room":"no-trickle","name":"plain"}`)
	var joined protocol.JoinResult
	if resp.Error != nil || json.Unmarshal(resp.Result, &joined) != nil {
		t.Fatalf("join: %s", msgString(resp))
	}
	api, err := client.LoopbackAPI()
	if err != nil {
		t.Fatal(err)
	}
	// gathered applies a local description and waits for every candidate
	// to be in it.
	gathered := func(pc *webrtc.PeerConnection, d webrtc.SessionDescription) string {
		done := webrtc.GatheringCompletePromise(pc)
		if err := pc.SetLocalDescription(d); err != nil {
			t.Fatal(err)
		}
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("gathering never completed")
		}
		sdp := pc.LocalDescription().SDP
		if !strings.Contains(sdp, "a=candidate:") {
			t.Fatalf("no candidate in the client's SDP: nothing tested")
		}
		return sdp
	}

	// Subscriber connection: answer the server's offer, candidates inside.
	offer, ok := p.notification(10*time.Second, protocol.MethodOffer, nil)
	if !ok {
		t.Fatalf("no subscriber offer: %v", p.readErr())
	}
	var offerSDP protocol.SDPParams
	if err := json.Unmarshal(offer.Params, &offerSDP); err != nil {
		t.Fatal(err)
	}
	sub, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	p.pc = sub // closed with the raw peer
	received := make(chan string, 4)
	sub.OnDataChannel(func(dc *webrtc.DataChannel) {
		dc.OnMessage(func(m webrtc.DataChannelMessage) { received <- string(m.Data) })
	})
	if err := sub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offerSDP.SDP}); err != nil {
		t.Fatal(err)
	}
	ans, err := sub.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(protocol.SDPParams{SDP: gathered(sub, ans)})
	p.notify(protocol.MethodAnswer, string(raw))

	// Publisher connection: video and the data channel, candidates inside.
	pub, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pub.Close() })
	video, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "cam", "plain")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.AddTrack(video); err != nil {
		t.Fatal(err)
	}
	dc, err := pub.CreateDataChannel(protocol.DataChannelLabel, nil)
	if err != nil {
		t.Fatal(err)
	}
	pubOffer, err := pub.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	params, _ := json.Marshal(protocol.OfferParams{SDP: gathered(pub, pubOffer),
		Tracks: []protocol.TrackAnnouncement{{TrackID: "cam", Source: protocol.SourceCamera}}})
	_, resp = p.request(protocol.MethodOffer, string(params))
	var res protocol.OfferResult
	if resp.Error != nil || json.Unmarshal(resp.Result, &res) != nil || len(res.Tracks) != 1 {
		t.Fatalf("offer: %s", msgString(resp))
	}
	if err := pub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: res.SDP}); err != nil {
		t.Fatal(err)
	}

	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // keyframes only: no keyframe requests to answer
		defer close(done)
		tick := time.NewTicker(33 * time.Millisecond)
		defer tick.Stop()
		seq, ts := uint16(1), uint32(0)
		for frame := 0; ; frame++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			pkt := &rtp.Packet{Header: rtp.Header{Version: 2, Marker: true, SequenceNumber: seq, Timestamp: ts},
				Payload: vp8Payload(uint16(frame), true, true, frame, 0)}
			_ = video.WriteRTP(pkt)
			seq++
			ts += 3000
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
	waitFor(t, 15*time.Second, "the plain client's video at the viewer", func() bool { return len(rec.payloads(res.Tracks[0].ID)) > 0 })

	waitFor(t, 10*time.Second, "the plain client's data channel", func() bool { return dc.ReadyState() == webrtc.DataChannelStateOpen })
	if err := dc.SendText("no trickle here"); err != nil {
		t.Fatal(err)
	}
	viewerIn.waitAll(t, "the viewer", joined.Participant.ID, []string{"no trickle here"})
	if err := viewer.SendData(ctxT(t, 10*time.Second), "to the plain client"); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-received:
		if !strings.Contains(m, "to the plain client") {
			t.Fatalf("the plain client got %q", m)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the plain client's subscriber data channel never delivered")
	}
}

package sfu

import (
	"net"
	"sync"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/cc"
	"github.com/pion/interceptor/pkg/gcc"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// dropOnce drops chosen incoming media packets the first time they arrive,
// below pion's NACK generator, so they must be repaired by retransmission.
type dropOnce struct {
	interceptor.NoOp
	mu      sync.Mutex
	drop    func(seq uint16) bool
	dropped map[uint16]bool
}

func (d *dropOnce) NewInterceptor(string) (interceptor.Interceptor, error) { return d, nil }

func (d *dropOnce) BindRemoteStream(info *interceptor.StreamInfo, r interceptor.RTPReader) interceptor.RTPReader {
	if info.MimeType != webrtc.MimeTypeVP8 {
		return r
	}
	return interceptor.RTPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		for {
			n, attr, err := r.Read(b, a)
			if err != nil || n < 4 {
				return n, attr, err
			}
			seq := uint16(b[2])<<8 | uint16(b[3])
			d.mu.Lock()
			skip := d.drop(seq) && !d.dropped[seq]
			if skip {
				d.dropped[seq] = true
			}
			d.mu.Unlock()
			if !skip {
				return n, attr, err
			}
		}
	})
}

func loopbackSettings() webrtc.SettingEngine {
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	return se
}

// sendWithLoss sends 400 VP8 packets from a connection with send-side
// bandwidth estimation registered the way the engine does (cc before the
// NACK responder) to one that drops every 25th packet once, and returns how
// many of the dropped packets were repaired.
func sendWithLoss(t *testing.T, wrap bool) (dropped, repaired int) {
	t.Helper()
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	ir := &interceptor.Registry{}
	ccf, err := cc.NewInterceptor(func() (cc.BandwidthEstimator, error) {
		est, err := gcc.NewSendSideBWE(gcc.SendSideBWEInitialBitrate(3_000_000), gcc.SendSideBWEPacer(gcc.NewNoOpPacer()))
		if wrap {
			return withRTXStreams(est, err)
		}
		return est, err
	})
	if err != nil {
		t.Fatal(err)
	}
	ir.Add(ccf)
	if err := webrtc.ConfigureTWCCHeaderExtensionSender(m, ir); err != nil {
		t.Fatal(err)
	}
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		t.Fatal(err)
	}
	se := loopbackSettings()
	sendAPI := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se))

	drop := &dropOnce{drop: func(seq uint16) bool { return seq%25 == 7 && seq < 380 }, dropped: map[uint16]bool{}}
	rm := &webrtc.MediaEngine{}
	if err := rm.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	rir := &interceptor.Registry{}
	rir.Add(drop)
	if err := webrtc.RegisterDefaultInterceptors(rm, rir); err != nil {
		t.Fatal(err)
	}
	recvAPI := webrtc.NewAPI(webrtc.WithMediaEngine(rm), webrtc.WithInterceptorRegistry(rir), webrtc.WithSettingEngine(se))

	tx, err := sendAPI.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	rx, err := recvAPI.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "v", "s")
	if err != nil {
		t.Fatal(err)
	}
	sender, err := tx.AddTrack(track)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			if _, _, err := sender.ReadRTCP(); err != nil {
				return
			}
		}
	}()
	var mu sync.Mutex
	got := map[uint16]bool{}
	rx.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			p, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			mu.Lock()
			got[p.SequenceNumber] = true
			mu.Unlock()
		}
	})
	negotiateGathered(t, tx, rx)
	deadline := time.Now().Add(10 * time.Second)
	for tx.ConnectionState() != webrtc.PeerConnectionStateConnected {
		if time.Now().After(deadline) {
			t.Fatal("peer connections did not connect")
		}
		time.Sleep(10 * time.Millisecond)
	}
	payload := make([]byte, 600)
	payload[0] = 0x10
	for seq := uint16(0); seq < 400; seq++ {
		pkt := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: uint32(seq) * 900}, Payload: payload}
		if err := track.WriteRTP(pkt); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	drop.mu.Lock()
	defer drop.mu.Unlock()
	mu.Lock()
	defer mu.Unlock()
	for seq := range drop.dropped {
		dropped++
		if got[seq] {
			repaired++
		}
	}
	return dropped, repaired
}

// TestRetransmissionsPassBandwidthEstimation: with send-side BWE registered
// before pion's NACK responder, retransmissions are only sent when the
// estimator knows the RTX SSRC (withRTXStreams).
func TestRetransmissionsPassBandwidthEstimation(t *testing.T) {
	if testing.Short() {
		t.Skip("runs two peer connections for about 3 s")
	}
	dropped, repaired := sendWithLoss(t, true)
	t.Logf("with withRTXStreams: %d of %d dropped packets repaired", repaired, dropped)
	if dropped < 10 || repaired != dropped {
		t.Fatalf("repaired %d of %d dropped packets, want all", repaired, dropped)
	}
	dropped, repaired = sendWithLoss(t, false)
	// pion's behaviour without the wrapper, for the record: the pacer drops
	// every RTX packet. Not asserted, so a pion fix does not fail this test.
	t.Logf("without withRTXStreams: %d of %d dropped packets repaired", repaired, dropped)
}

// negotiateGathered runs one offer/answer between two peer connections,
// each description sent once its candidates are all gathered (no trickle).
func negotiateGathered(t *testing.T, offerer, answerer *webrtc.PeerConnection) {
	t.Helper()
	offer, err := offerer.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(offerer)
	if err := offerer.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	if err := answerer.SetRemoteDescription(*offerer.LocalDescription()); err != nil {
		t.Fatal(err)
	}
	answer, err := answerer.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered = webrtc.GatheringCompletePromise(answerer)
	if err := answerer.SetLocalDescription(answer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	if err := offerer.SetRemoteDescription(*answerer.LocalDescription()); err != nil {
		t.Fatal(err)
	}
}

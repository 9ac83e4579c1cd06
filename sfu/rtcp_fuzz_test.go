package sfu

import (
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// FuzzIncomingRTCP: any datagram a peer sends as RTCP goes through what the
// SFU does with it (a subscriber's PLI/FIR, NACK (answered from the cache),
// REMB and receiver reports on a down track; a publisher's sender reports on
// a receiver) without a panic.
func FuzzIncomingRTCP(f *testing.F) {
	for _, p := range [][]rtcp.Packet{
		{&rtcp.PictureLossIndication{MediaSSRC: 77}},
		{&rtcp.TransportLayerNack{MediaSSRC: 77, Nacks: []rtcp.NackPair{{PacketID: 65535, LostPackets: 0xffff}}}},
		{&rtcp.ReceiverEstimatedMaximumBitrate{Bitrate: 1e12, SSRCs: []uint32{77}}},
		{&rtcp.ReceiverReport{Reports: []rtcp.ReceptionReport{{SSRC: 77, FractionLost: 255, TotalLost: 1 << 23}}}},
		{&rtcp.SenderReport{SSRC: 5, NTPTime: ^uint64(0), RTPTime: 1}},
		{&rtcp.FullIntraRequest{FIR: []rtcp.FIREntry{{SSRC: 77}}}},
	} {
		b, err := rtcp.Marshal(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0x80, 0xc8, 0xff, 0xff})
	r := newBenchReceiver(vp8Codec)
	l := r.testLayer(0)
	w := &countingWriter{}
	d := attachDownTrack(f, r, fakeContext{codecs: []webrtc.RTPCodecParameters{vp8Codec}, ssrc: 77, w: w})
	d.fallback = newFallbackEstimator(1_000_000)
	key, delta := benchPackets()
	hdr := &rtp.Header{Version: 2, SequenceNumber: 1, Timestamp: 1}
	r.forward(l, hdr, key)
	for range 100 { // packets in the cache and history for NACKs to name
		hdr.SequenceNumber++
		r.forward(l, hdr, delta)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		pkts, err := rtcp.Unmarshal(raw)
		if err != nil {
			return
		}
		d.handleRTCP(pkts)
		for _, p := range pkts {
			switch p := p.(type) {
			case *rtcp.SenderReport:
				r.observeSR(p.NTPTime, time.Now().UnixNano())
				d.OnSenderReport(0, p.NTPTime, p.RTPTime)
			}
		}
		if est := d.fallback.estimate(time.Now()); est > maxREMB {
			t.Fatalf("absurd estimate %d bit/s", est)
		}
	})
}

package sfu

import (
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// TestReceptionStats: a subscriber's receiver report becomes loss, jitter
// in time units and the round trip from LSR/DLSR against the SFU's clock.
func TestReceptionStats(t *testing.T) {
	r := newBenchReceiver(vp8Codec)
	d := NewDownTrack(r, "PA_rr")
	if _, err := d.Bind(fakeContext{codecs: []webrtc.RTPCodecParameters{vp8Codec}, ssrc: 77, w: &countingWriter{}}); err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, ok := d.ReceptionStats(); ok {
		t.Fatal("stats before any report")
	}
	now := time.Now()
	// The subscriber got our SR 50 ms ago and held it 20 ms: RTT 30 ms.
	lsr := uint32(unixNanosToNTP(now.Add(-50*time.Millisecond).UnixNano()) >> 16)
	dlsr := uint32(20 * 65536 / 1000)
	d.handleRTCP([]rtcp.Packet{&rtcp.ReceiverReport{SSRC: 1, Reports: []rtcp.ReceptionReport{
		{SSRC: 999, FractionLost: 255}, // another stream's block
		{SSRC: 77, FractionLost: 64, TotalLost: 0xffffff, Jitter: 900, LastSenderReport: lsr, Delay: dlsr},
	}}})
	stall := time.Since(now) // a busy machine may pause the test between now and the report's handling
	st, ok := d.ReceptionStats()
	if !ok {
		t.Fatal("no stats after a report")
	}
	if st.FractionLost != 0.25 || st.PacketsLost != -1 || st.Jitter != 10*time.Millisecond {
		t.Fatalf("stats %+v, want 25%% lost, -1 cumulative (duplicates), 10 ms jitter", st)
	}
	if st.RTT < 29*time.Millisecond || st.RTT > 31*time.Millisecond+stall {
		t.Fatalf("RTT %v, want 30 ms (up to %v more: the time the test took to hand the report over)", st.RTT, stall)
	}
	// A report without LSR (no SR received yet) keeps the last RTT.
	d.handleRTCP([]rtcp.Packet{&rtcp.ReceiverReport{Reports: []rtcp.ReceptionReport{{SSRC: 77}}}})
	if st2, _ := d.ReceptionStats(); st2.RTT != st.RTT || st2.FractionLost != 0 {
		t.Fatalf("after a report without LSR: %+v", st2)
	}
	// An LSR from the future (a lying or broken peer) is ignored.
	d.handleRTCP([]rtcp.Packet{&rtcp.ReceiverReport{Reports: []rtcp.ReceptionReport{
		{SSRC: 77, LastSenderReport: uint32(unixNanosToNTP(now.Add(time.Hour).UnixNano()) >> 16)},
	}}})
	if st3, _ := d.ReceptionStats(); st3.RTT != st.RTT {
		t.Fatalf("future LSR changed the RTT to %v", st3.RTT)
	}
}

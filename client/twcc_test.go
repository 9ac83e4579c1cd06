package client

import (
	"encoding/binary"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
)

// feedbackCapture collects the feedback an interceptor sends.
type feedbackCapture struct {
	mu   sync.Mutex
	seqs map[uint16]bool // received, by sequence number
	seen chan struct{}
}

func newFeedbackCapture() *feedbackCapture {
	return &feedbackCapture{seqs: map[uint16]bool{}, seen: make(chan struct{}, 1)}
}

func (c *feedbackCapture) Write(pkts []rtcp.Packet, _ interceptor.Attributes) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range pkts {
		fb, ok := p.(*rtcp.TransportLayerCC)
		if !ok {
			continue
		}
		seq := fb.BaseSequenceNumber
		for _, chunk := range fb.PacketChunks {
			var symbols []uint16
			switch ch := chunk.(type) {
			case *rtcp.RunLengthChunk:
				for range ch.RunLength {
					symbols = append(symbols, ch.PacketStatusSymbol)
				}
			case *rtcp.StatusVectorChunk:
				symbols = ch.SymbolList
			}
			for _, s := range symbols {
				if seq-fb.BaseSequenceNumber < fb.PacketStatusCount {
					c.seqs[seq] = c.seqs[seq] || s != rtcp.TypeTCCPacketNotReceived
				}
				seq++
			}
		}
	}
	select {
	case c.seen <- struct{}{}:
	default:
	}
	return 0, nil
}

// received returns the sequence numbers reported received, and how many
// were reported at all.
func (c *feedbackCapture) received() ([]uint16, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var got []uint16
	for s, ok := range c.seqs {
		if ok {
			got = append(got, s)
		}
	}
	slices.Sort(got)
	return got, len(c.seqs)
}

// twccPacket is an RTP packet with transport-wide sequence number seq
// (extension id 5) and where that number's bytes are.
func twccPacket(tb testing.TB, seq uint16) ([]byte, int) {
	tb.Helper()
	h := rtp.Header{Version: 2, SSRC: 9, PayloadType: 96, SequenceNumber: seq}
	var v [2]byte
	binary.BigEndian.PutUint16(v[:], seq)
	if err := h.SetExtension(5, v[:]); err != nil {
		tb.Fatal(err)
	}
	raw, err := h.Marshal()
	if err != nil {
		tb.Fatal(err)
	}
	return append(raw, make([]byte, 1100)...), 12 + 4 + 1
}

// feedbackReader binds a feedback interceptor to a stream whose reads
// return packets numbered seqs[0], seqs[1]... (wrapping around).
func feedbackReader(tb testing.TB, i interceptor.Interceptor, w interceptor.RTCPWriter, seqs []uint16) interceptor.RTPReader {
	tb.Helper()
	i.BindRTCPWriter(w)
	info := &interceptor.StreamInfo{SSRC: 9, RTPHeaderExtensions: []interceptor.RTPHeaderExtension{{URI: sdp.TransportCCURI, ID: 5}}}
	pkt, at := twccPacket(tb, 0)
	k := 0
	src := interceptor.RTPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		seq := seqs[k%len(seqs)]
		k++
		binary.BigEndian.PutUint16(pkt[at:], seq)
		binary.BigEndian.PutUint16(pkt[2:], seq)
		return copy(b, pkt), a, nil
	})
	return i.BindRemoteStream(info, src)
}

// TestTWCCFeedbackMatchesPion: the same packets, with gaps, read through
// pion's interceptor and through the client's, are reported received (and
// lost) alike.
func TestTWCCFeedbackMatchesPion(t *testing.T) {
	pionF, err := twcc.NewSenderInterceptor(twcc.SendInterval(20 * time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	pion, err := pionF.NewInterceptor("")
	if err != nil {
		t.Fatal(err)
	}
	ours, err := twccFactory{interval: 20 * time.Millisecond}.NewInterceptor("")
	if err != nil {
		t.Fatal(err)
	}
	// Every seventh packet and a run of ten are lost on the way.
	var seqs []uint16
	for i := range 300 {
		if i%7 != 3 && (i < 100 || i >= 110) {
			seqs = append(seqs, uint16(i))
		}
	}
	capP, capO := newFeedbackCapture(), newFeedbackCapture()
	buf := make([]byte, 1500)
	for _, r := range []interceptor.RTPReader{feedbackReader(t, pion, capP, seqs), feedbackReader(t, ours, capO, seqs)} {
		for range seqs {
			if _, _, err := r.Read(buf, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	deadline := time.After(20 * time.Second)
	for _, c := range []*feedbackCapture{capP, capO} {
		for {
			got, _ := c.received()
			if len(got) > 0 && got[len(got)-1] == 299 {
				break
			}
			select {
			case <-c.seen:
			case <-deadline:
				t.Fatalf("feedback never reported packet 299 (got %v)", got)
			}
		}
	}
	_ = pion.Close()
	_ = ours.Close()
	gotP, nP := capP.received()
	gotO, nO := capO.received()
	if !slices.Equal(gotP, gotO) || nP != nO {
		t.Fatalf("pion reported %d of %d received, the client %d of %d\npion:   %v\nclient: %v", len(gotP), nP, len(gotO), nO, gotP, gotO)
	}
	if !slices.Equal(gotO, seqs) || nO != 300 {
		t.Fatalf("reported received %v of %d, want %v of 300", gotO, nO, seqs)
	}
}

// TestTWCCFeedbackDoesNotAllocate: recording a packet's arrival allocates
// nothing.
func TestTWCCFeedbackDoesNotAllocate(t *testing.T) {
	i, err := twccFactory{interval: time.Hour}.NewInterceptor("")
	if err != nil {
		t.Fatal(err)
	}
	defer i.Close()
	seqs := make([]uint16, 1<<16)
	for k := range seqs {
		seqs[k] = uint16(k)
	}
	r := feedbackReader(t, i, newFeedbackCapture(), seqs)
	buf := make([]byte, 1500)
	for range 1000 { // warm: the recorder's arrival map has grown
		_, _, _ = r.Read(buf, nil)
	}
	if a := testing.AllocsPerRun(2000, func() { _, _, _ = r.Read(buf, nil) }); a != 0 {
		t.Fatalf("%v allocations per packet", a)
	}
}

// BenchmarkTWCCFeedback is the client's cost per packet received of
// recording it for transport-wide feedback (feedback sent every 100 ms
// included), with pion's twcc.SenderInterceptor and with the client's
// own. cpu-ns/op is the process's CPU per packet (pion's loop goroutine
// included), the figure to compare on a shared machine.
func BenchmarkTWCCFeedback(b *testing.B) {
	for _, impl := range []string{"pion", "client"} {
		b.Run(impl, func(b *testing.B) {
			var f interceptor.Factory = twccFactory{}
			if impl == "pion" {
				pf, err := twcc.NewSenderInterceptor()
				if err != nil {
					b.Fatal(err)
				}
				f = pf
			}
			i, err := f.NewInterceptor("")
			if err != nil {
				b.Fatal(err)
			}
			defer i.Close()
			seqs := make([]uint16, 1<<16)
			for k := range seqs {
				seqs[k] = uint16(k)
			}
			r := feedbackReader(b, i, interceptor.RTCPWriterFunc(func([]rtcp.Packet, interceptor.Attributes) (int, error) { return 0, nil }), seqs)
			buf := make([]byte, 1500)
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := processCPU(b)
			for range b.N {
				if _, _, err := r.Read(buf, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64((processCPU(b)-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}

// processCPU is the process's user + system CPU time so far.
func processCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

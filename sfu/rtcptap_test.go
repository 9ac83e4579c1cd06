package sfu

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/srtp/v3"

	"github.com/starling-rtc/starling/internal/clock"
)

// tapKeys are a connection's keys in a test: the client encrypts its RTCP
// with remoteKey/remoteSalt.
func tapKeys() *directKeys {
	return &directKeys{key: make([]byte, 16), salt: make([]byte, 12),
		remoteKey: bytes.Repeat([]byte{7}, 16), remoteSalt: bytes.Repeat([]byte{9}, 12),
		profile: srtp.ProtectionProfileAeadAes128Gcm}
}

// clientSRTCP is the client's side: a context that encrypts RTCP as the
// client does.
func clientSRTCP(tb testing.TB, k *directKeys) *srtp.Context {
	tb.Helper()
	ctx, err := srtp.CreateContext(k.remoteKey, k.remoteSalt, k.profile)
	if err != nil {
		tb.Fatal(err)
	}
	return ctx
}

// feedbacks are marshalled TWCC feedback packets from pion's recorder (what
// pion clients send), each covering perFeedback packets.
func feedbacks(tb testing.TB, count, perFeedback int) [][]byte {
	tb.Helper()
	rec := twcc.NewRecorder(1)
	var out [][]byte
	at := int64(1_000_000)
	for i := 0; len(out) < count; i++ {
		at += 600 + int64(i%7)*50
		rec.Record(5, uint16(i), at)
		if i%perFeedback == perFeedback-1 {
			for _, p := range rec.BuildFeedbackPacket() {
				raw, err := p.Marshal()
				if err != nil {
					tb.Fatal(err)
				}
				out = append(out, raw)
			}
		}
	}
	return out[:count]
}

func encryptRTCP(tb testing.TB, ctx *srtp.Context, pkts ...rtcp.Packet) []byte {
	tb.Helper()
	raw, err := rtcp.Marshal(pkts)
	if err != nil {
		tb.Fatal(err)
	}
	out, err := ctx.EncryptRTCP(nil, raw, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// TestRTCPTapConsumesFeedbackOnly: on the batched socket, a subscriber's
// SRTCP that holds transport-wide feedback only is decrypted and applied to
// its estimator, and never reaches the reader above (pion); receiver
// reports, a compound mixing both, and feedback from an address with no tap
// reach it unchanged.
func TestRTCPTapConsumesFeedbackOnly(t *testing.T) {
	server := newBatchConn(listenLoopback(t), false, nil)
	defer server.Close()
	client := listenLoopback(t)
	defer client.Close()
	other := listenLoopback(t)
	defer other.Close()
	to := server.LocalAddr().(*net.UDPAddr)

	keys := tapKeys()
	tap := &rtcpTap{est: newBWE(0)}
	server.tapFrom(client.LocalAddr().(*net.UDPAddr).AddrPort(), tap, keys)
	enc := clientSRTCP(t, keys)

	var fb rtcp.TransportLayerCC
	if err := fb.Unmarshal(feedbacks(t, 1, 16)[0]); err != nil {
		t.Fatal(err)
	}
	rr := &rtcp.ReceiverReport{SSRC: 1}
	sent := [][]byte{
		encryptRTCP(t, enc, &fb),
		encryptRTCP(t, enc, rr),
		encryptRTCP(t, enc, &fb, rr),
		encryptRTCP(t, enc, &fb, &fb),
		encryptRTCP(t, enc, rr),
	}
	fromOther := encryptRTCP(t, clientSRTCP(t, keys), &fb)
	before := ReadCounters().BWEFeedbackTapped
	for _, p := range sent {
		if _, err := client.WriteToUDP(p, to); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := other.WriteToUDP(fromOther, to); err != nil {
		t.Fatal(err)
	}
	want := [][]byte{sent[1], sent[2], sent[4], fromOther}
	_ = server.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 1500)
	for i, w := range want {
		n, _, err := server.ReadFromAddrPort(buf)
		if err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		if !bytes.Equal(buf[:n], w) {
			t.Fatalf("read %d: got a %d-byte datagram, want the %d-byte one sent", i, n, len(w))
		}
	}
	if got := ReadCounters().BWEFeedbackTapped - before; got != 2 {
		t.Fatalf("%d feedback packets tapped, want 2", got)
	}
	tap.est.mu.Lock()
	applied := tap.est.haveRef
	tap.est.mu.Unlock()
	if !applied {
		t.Fatal("the estimator never saw the feedback")
	}

	// Once untapped, feedback goes to pion.
	server.untap(client.LocalAddr().(*net.UDPAddr).AddrPort(), tap)
	last := encryptRTCP(t, enc, &fb)
	if _, err := client.WriteToUDP(last, to); err != nil {
		t.Fatal(err)
	}
	n, _, err := server.ReadFromAddrPort(buf)
	if err != nil || !bytes.Equal(buf[:n], last) {
		t.Fatalf("after untap: %d bytes, %v", n, err)
	}
}

// TestRTCPTapDoesNotAllocate: decrypting, checking and applying feedback
// reuse the tap's buffers.
func TestRTCPTapDoesNotAllocate(t *testing.T) {
	keys := tapKeys()
	tap := &rtcpTap{est: newBWE(0)}
	tap.setKeys(keys)
	enc := clientSRTCP(t, keys)
	var pkts [][]byte
	for _, raw := range feedbacks(t, 300, 16) {
		out, err := enc.EncryptRTCP(nil, raw, nil)
		if err != nil {
			t.Fatal(err)
		}
		pkts = append(pkts, out)
	}
	i := 0
	now := time.Now().UnixMicro()
	consume := func() {
		now += 10_000
		if !tap.consume(pkts[i], now) {
			t.Fatalf("feedback %d not consumed", i)
		}
		i++
	}
	for range 50 {
		consume() // the replay window's and the estimator's state warm up
	}
	if n := testing.AllocsPerRun(200, consume); n > 0 {
		t.Fatalf("%.2f allocations per feedback", n)
	}
}

// BenchmarkBWEPerPacketTapped is congestion control's whole per-packet
// path on the server with feedback read at the socket: numbering, send
// record and stamp per packet, and per 16 packets (as at ~1.5 Mbit/s with
// feedback every 100 ms) one SRTCP feedback decrypted (AES-GCM), checked,
// decoded and applied by the tap. Only the socket's read itself is left
// out.
func BenchmarkBWEPerPacketTapped(b *testing.B) {
	const perFeedback = 16
	keys := tapKeys()
	raw := feedbacks(b, 4096, perFeedback)
	encrypt := func() [][]byte { // a fresh client context: indexes start again
		enc := clientSRTCP(b, keys)
		out := make([][]byte, len(raw))
		for i, p := range raw {
			var err error
			if out[i], err = enc.EncryptRTCP(nil, p, nil); err != nil {
				b.Fatal(err)
			}
		}
		return out
	}
	pkts := encrypt()
	bi := newBWEInterceptor(3_000_000)
	tap := &rtcpTap{est: bi.est}
	tap.setKeys(keys)
	ext := []interceptor.RTPHeaderExtension{{URI: sdp.TransportCCURI, ID: 5}}
	quiet := interceptor.RTPWriterFunc(func(*rtp.Header, []byte, interceptor.Attributes) (int, error) { return 0, nil })
	w := bi.BindLocalStream(&interceptor.StreamInfo{SSRC: 5, MimeType: "video/VP8", RTPHeaderExtensions: ext}, quiet)
	h := &rtp.Header{Version: 2, SSRC: 5, PayloadType: 96}
	payload := make([]byte, 1100)
	fb := 0
	b.ReportAllocs()
	cpu0 := processCPU(b)
	for i := 0; b.Loop(); i++ {
		h.Extensions = h.Extensions[:0] // as the down track's writer reuses its header
		h.SequenceNumber = uint16(i)
		if _, err := w.Write(h, payload, nil); err != nil {
			b.Fatal(err)
		}
		if i%perFeedback == perFeedback-1 {
			if fb == len(pkts) {
				b.StopTimer()
				tap.setKeys(nil) // a new context: the replay window starts again
				tap.setKeys(keys)
				fb = 0
				b.StartTimer()
			}
			// The clock the send times were stamped with.
			if !tap.consume(pkts[fb], clock.Micros()) {
				b.Fatal("feedback not consumed")
			}
			fb++
		}
	}
	reportCPU(b, processCPU(b)-cpu0)
}

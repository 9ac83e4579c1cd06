package sfu

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"runtime/pprof"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/srtp/v3"
	"github.com/pion/webrtc/v4"
)

// BenchmarkWebinarFeedback is congestion control's cost on a server at
// the pace of a real webinar, with its feedback: one published video
// (180 packets/s: 6 one-packet frames every 33 ms), fanned out to N
// viewers through the whole send path (BenchmarkForwardEncryptSend's),
// and each viewer a loopback socket whose reader sends transport-wide
// feedback every 100 ms, as pion clients do, to the server's batched
// socket, where the socket's reader (pion's UDP mux in the server) feeds
// it to the viewer's estimator through its tap (rtcptap.go).
//
// Unlike the flat-out benchmarks, the process is idle between frames, as
// a server is: each feedback datagram that arrives then wakes the socket's
// reader, and waking an idle process costs more than the read itself.
// That is what grows with the number of viewers when congestion control is
// on: 10 feedback datagrams a second per viewer.
//
// Modes: off (no congestion control, no feedback); on (numbering, send
// records and stamps, feedback read and applied); on-unread (the same, but
// the feedback goes to a socket nobody reads: the viewers' side of it,
// and the server's send path with cc, without the server reading
// feedback). cpu-ns/fwd-pkt is the whole process's CPU per forwarded
// packet, the viewers' sockets and their feedback included; on − on-unread
// is the server's cost of reading the feedback.
func BenchmarkWebinarFeedback(b *testing.B) {
	for _, n := range []int{100, 200, 300} {
		for _, mode := range []string{"off", "on", "on-unread"} {
			b.Run(fmt.Sprintf("viewers=%d/cc=%s", n, mode), func(b *testing.B) {
				benchWebinarFeedback(b, n, mode)
			})
		}
	}
}

// viewerLabel marks the viewers' goroutines in CPU profiles (go tool pprof
// -tagignore side=viewer shows the server's side alone).
var viewerLabel = pprof.Labels("side", "viewer")

const (
	webinarTick      = 33 * time.Millisecond // one video frame
	webinarPerTick   = 6                     // packets per frame: 180 packets/s
	feedbackInterval = 100 * time.Millisecond
)

func benchWebinarFeedback(b *testing.B, n int, mode string) {
	cc, read := mode != "off", mode == "on"
	c := newBatchConn(listenLoopback(b), true, nil)
	defer c.Close()
	serverAddr := c.LocalAddr().(*net.UDPAddr)
	var untapped atomic.Int64
	if read {
		go func() { // the server's socket reader (pion's UDP mux)
			buf := make([]byte, 1500)
			for {
				if _, _, err := c.ReadFromAddrPort(buf); err != nil {
					return
				}
				untapped.Add(1)
			}
		}()
	}
	unread := listenLoopback(b) // where on-unread's feedback goes
	defer unread.Close()
	if !read {
		serverAddr = unread.LocalAddr().(*net.UDPAddr)
	}
	keys := tapKeys()
	r := newBenchReceiver(vp8Codec)
	var received, feedbacks atomic.Int64
	dts := make([]*DownTrack, n)
	for i := range dts {
		sink := listenLoopback(b)
		defer sink.Close()
		_ = sink.SetReadBuffer(socketBuffer)
		s := &directSender{}
		addr := sink.LocalAddr().(*net.UDPAddr).AddrPort()
		s.route.Store(&directRoute{conn: c, to: addr, keys: keys})
		var iw interceptor.RTPWriter = s.BindLocalStream(nil, nil)
		if cc {
			bi := newBWEInterceptor(3_000_000)
			c.tapFrom(addr, &rtcpTap{est: bi.est}, keys)
			ext := []interceptor.RTPHeaderExtension{{URI: sdp.TransportCCURI, ID: 5}}
			iw = bi.BindLocalStream(&interceptor.StreamInfo{SSRC: uint32(1000 + i),
				MimeType: "video/VP8", RTPHeaderExtensions: ext}, iw)
			ctx := clientSRTCP(b, keys)
			go pprof.Do(context.Background(), viewerLabel, func(context.Context) {
				viewerWithFeedback(sink, serverAddr, ctx, uint32(1000+i), &received, &feedbacks)
			})
		} else {
			go pprof.Do(context.Background(), viewerLabel, func(context.Context) { discardUDP(sink, &received) })
		}
		d := NewDownTrack(r, fmt.Sprintf("PA_%d", i))
		d.SetTarget(0)
		if _, err := d.Bind(fakeContext{codecs: []webrtc.RTPCodecParameters{vp8Codec}, ssrc: webrtc.SSRC(1000 + i), w: interceptorTrackWriter{iw}}); err != nil {
			b.Fatal(err)
		}
		r.AddSink(d)
		dts[i] = d
	}
	l := r.testLayer(0)
	key, delta := benchPackets()
	hdr := &rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: 1, Timestamp: 1000, SSRC: 42, Marker: true}
	r.forward(l, hdr, key)
	flushAll(dts)
	tick := time.NewTicker(webinarTick)
	defer tick.Stop()
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU(b)
	pid := uint16(1)
	for range b.N {
		<-tick.C
		for range webinarPerTick {
			hdr.SequenceNumber++
			hdr.Timestamp += 3000
			pid = (pid + 1) & 0x7fff
			setPictureID(delta, pid)
			r.forward(l, hdr, delta)
		}
	}
	want := int64((b.N*webinarPerTick + 1) * n)
	deadline := time.Now().Add(10 * time.Second)
	for received.Load() < want && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	cpu := processCPU(b) - cpu0
	b.StopTimer()
	// On a busy machine the viewers' readers fall behind and their sockets
	// overflow, and the server's sends fail with a full buffer: reported
	// (the server's share as %send-fail), not failed.
	b.ReportMetric(100*float64(want-min(received.Load(), want))/float64(want), "%lost")
	b.ReportMetric(100*float64(c.Dropped())/float64(want), "%send-fail")
	if untapped.Load() != 0 {
		b.Fatalf("%d datagrams reached the socket's reader untapped", untapped.Load())
	}
	fwd := float64(b.N * webinarPerTick * n)
	b.ReportMetric(float64(cpu.Nanoseconds())/fwd, "cpu-ns/fwd-pkt")
	if cc {
		b.ReportMetric(fwd/float64(max(feedbacks.Load(), 1)), "pkts/feedback")
	}
}

// viewerWithFeedback reads a viewer's socket, recording each packet's
// transport-wide sequence number (the header is in the clear: extension
// id 5 right after the fixed header), and sends pion's feedback, SRTCP
// encrypted with the viewer's key, every feedbackInterval.
func viewerWithFeedback(sink *net.UDPConn, server *net.UDPAddr, ctx *srtp.Context, ssrc uint32, received, sent *atomic.Int64) {
	rec := twcc.NewRecorder(ssrc)
	start := time.Now()
	last := start
	buf := make([]byte, 2048)
	var out []byte
	for {
		n, err := sink.Read(buf)
		if err != nil {
			return
		}
		received.Add(1)
		if n >= 20 && buf[0]&0x10 != 0 && binary.BigEndian.Uint16(buf[12:]) == 0xBEDE && buf[16]>>4 == 5 {
			now := time.Now()
			rec.Record(ssrc, binary.BigEndian.Uint16(buf[17:]), now.Sub(start).Microseconds())
			if now.Sub(last) < feedbackInterval {
				continue
			}
			last = now
			raw, err := rtcp.Marshal(rec.BuildFeedbackPacket())
			if err != nil || len(raw) == 0 {
				continue
			}
			if out, err = ctx.EncryptRTCP(out[:0], raw, nil); err != nil {
				continue
			}
			if _, err := sink.WriteToUDP(out, server); err == nil {
				sent.Add(1)
			}
		}
	}
}

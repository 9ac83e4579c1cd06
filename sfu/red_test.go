package sfu

import (
	"bytes"
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

var (
	opusCodec = webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"},
		PayloadType:        111,
	}
	redCodec = webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: MimeTypeRED, ClockRate: 48000, Channels: 2, SDPFmtpLine: "111/111"},
		PayloadType:        63,
	}
)

// redPacket builds a RED payload: redundant blocks (oldest first), then the primary.
func redPacket(pt uint8, redundant [][]byte, primary []byte) []byte {
	var b []byte
	for i, r := range redundant {
		off := uint16(960 * (len(redundant) - i))
		b = append(b, 0x80|pt, byte(off>>6), byte(off<<2)|byte(len(r)>>8), byte(len(r)))
	}
	b = append(b, pt)
	for _, r := range redundant {
		b = append(b, r...)
	}
	return append(b, primary...)
}

func TestRedBlocks(t *testing.T) {
	old, older, primary := []byte{0xa1, 1, 2}, []byte{0xa2, 3}, []byte{0xa3, 4, 5, 6}
	for _, tc := range []struct {
		name    string
		p       []byte
		primary []byte
	}{
		{"primary only", redPacket(111, nil, primary), primary},
		{"one redundant", redPacket(111, [][]byte{old}, primary), primary},
		{"two redundant", redPacket(111, [][]byte{older, old}, primary), primary},
		{"empty primary (redundancy only)", redPacket(111, [][]byte{old}, nil), []byte{}},
	} {
		got, ok := redPrimary(tc.p)
		if !ok || !bytes.Equal(got, tc.primary) {
			t.Errorf("%s: primary % x, %v; want % x", tc.name, got, ok, tc.primary)
		}
	}
	for _, bad := range [][]byte{
		nil,
		{0x80 | 111},                   // header cut short
		{0x80 | 111, 0, 0, 10, 111, 1}, // block longer than the packet
		{0x80 | 111, 0, 0, 1},          // no primary header
	} {
		if _, ok := redPrimary(bad); ok {
			t.Errorf("malformed % x parsed", bad)
		}
	}
	p := redPacket(111, [][]byte{older, old}, primary)
	allocs := testing.AllocsPerRun(100, func() { _, _ = redPrimary(p) })
	if allocs != 0 {
		t.Fatalf("redPrimary allocates %.1f times", allocs)
	}
}

func TestRedRewritePT(t *testing.T) {
	p := redPacket(109, [][]byte{{1, 2}, {3}}, []byte{4, 5})
	dst := make([]byte, 64)
	n := redRewritePT(dst, p, 111)
	want := redPacket(111, [][]byte{{1, 2}, {3}}, []byte{4, 5})
	if !bytes.Equal(dst[:n], want) {
		t.Fatalf("rewritten % x, want % x", dst[:n], want)
	}
	if redRewritePT(dst[:3], p, 111) != 0 {
		t.Fatalf("rewrote into a too small buffer")
	}
}

func TestRedInnerPT(t *testing.T) {
	for fmtp, want := range map[string]int{"111/111": 111, "109/109/109": 109, " 63/63": 63, "111/0": -1, "": -1, "x/x": -1} {
		pt, ok := redInnerPT(fmtp)
		if (want < 0) == ok || (ok && int(pt) != want) {
			t.Errorf("redInnerPT(%q) = %d, %v; want %d", fmtp, pt, ok, want)
		}
	}
}

// bindRED binds a down track of a RED source to a subscriber that
// negotiated codecs, and forwards payloads through it.
func bindRED(t *testing.T, source webrtc.RTPCodecParameters, negotiated []webrtc.RTPCodecParameters, payloads ...[]byte) (webrtc.RTPCodecParameters, *recordingWriter) {
	t.Helper()
	r := newBenchReceiver(source)
	r.kind = webrtc.RTPCodecTypeAudio
	d := NewDownTrack(r, "PA_x")
	w := &recordingWriter{}
	chosen, err := d.Bind(fakeContext{codecs: negotiated, ssrc: 9, w: w})
	if err != nil {
		t.Fatalf("bind: %v", err)
	}
	hdr := &rtp.Header{Version: 2, PayloadType: uint8(source.PayloadType), SequenceNumber: 100, Timestamp: 4800, SSRC: 1}
	for _, p := range payloads {
		_ = d.WriteRTP(hdr, p, 0)
		hdr.SequenceNumber++
		hdr.Timestamp += 960
	}
	d.flush(flushWait)
	return chosen, w
}

func TestDownTrackRED(t *testing.T) {
	pkts := [][]byte{
		redPacket(111, nil, []byte{0x78, 1}),
		redPacket(111, [][]byte{{0x78, 1}}, []byte{0x78, 2}),
		{0x80 | 111, 0, 0, 50, 111}, // malformed: dropped, no hole
		redPacket(111, [][]byte{{0x78, 2}}, []byte{0x78, 3}),
	}
	t.Run("subscriber with RED gets it unchanged", func(t *testing.T) {
		chosen, w := bindRED(t, redCodec, []webrtc.RTPCodecParameters{redCodec, opusCodec}, pkts...)
		if chosen.MimeType != MimeTypeRED || len(w.pays) != 4 || !bytes.Equal(w.pays[1], pkts[1]) || w.hdrs[1].PayloadType != 63 {
			t.Fatalf("chose %s, forwarded %d packets", chosen.MimeType, len(w.pays))
		}
	})
	t.Run("subscriber without RED gets the primary Opus frames", func(t *testing.T) {
		chosen, w := bindRED(t, redCodec, []webrtc.RTPCodecParameters{opusCodec}, pkts...)
		if chosen.MimeType != webrtc.MimeTypeOpus || len(w.pays) != 3 {
			t.Fatalf("chose %s, forwarded %d packets, want opus and 3", chosen.MimeType, len(w.pays))
		}
		for i, want := range [][]byte{{0x78, 1}, {0x78, 2}, {0x78, 3}} {
			if !bytes.Equal(w.pays[i], want) || w.hdrs[i].PayloadType != 111 {
				t.Fatalf("packet %d: pt %d payload % x, want 111 % x", i, w.hdrs[i].PayloadType, w.pays[i], want)
			}
			if i > 0 && w.hdrs[i].SequenceNumber != w.hdrs[i-1].SequenceNumber+1 {
				t.Fatalf("the dropped malformed packet left a hole in the sequence numbers")
			}
		}
	})
	t.Run("block payload type follows the subscriber's Opus", func(t *testing.T) {
		pubRED := redCodec
		pubRED.SDPFmtpLine = "109/109" // e.g. Firefox numbers Opus 109
		src := [][]byte{redPacket(109, [][]byte{{0x78, 1}}, []byte{0x78, 2})}
		_, w := bindRED(t, pubRED, []webrtc.RTPCodecParameters{redCodec, opusCodec}, src...)
		if len(w.pays) != 1 || !bytes.Equal(w.pays[0], redPacket(111, [][]byte{{0x78, 1}}, []byte{0x78, 2})) {
			t.Fatalf("forwarded % x", w.pays)
		}
	})
	t.Run("Opus source is untouched", func(t *testing.T) {
		chosen, w := bindRED(t, opusCodec, []webrtc.RTPCodecParameters{redCodec, opusCodec}, []byte{0x78, 9, 9})
		if chosen.MimeType != webrtc.MimeTypeOpus || len(w.pays) != 1 || !bytes.Equal(w.pays[0], []byte{0x78, 9, 9}) {
			t.Fatalf("chose %s, forwarded % x", chosen.MimeType, w.pays)
		}
	})
}

package server_test

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/protocol"
)

// garbler turns a publisher's outgoing media into garbage while on, below
// pion's interceptors (so it is valid SRTP, as from a broken or hostile
// client): packets on wrong SSRCs, truncated to one byte, with a payload
// descriptor that cannot be parsed, with timestamps jumping 5 s back, with
// sequence numbers jumping 3000 back, and some left alone.
type garbler struct {
	on      atomic.Bool
	mu      sync.Mutex
	rng     *rand.Rand
	mutated atomic.Int64
	kinds   [6]atomic.Int64
}

func (g *garbler) NewInterceptor(string) (interceptor.Interceptor, error) {
	return &garbleConn{g: g}, nil
}

type garbleConn struct {
	interceptor.NoOp
	g *garbler
}

func (c *garbleConn) BindLocalStream(info *interceptor.StreamInfo, writer interceptor.RTPWriter) interceptor.RTPWriter {
	g := c.g
	video := strings.HasPrefix(strings.ToLower(info.MimeType), "video/")
	clock := info.ClockRate
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		if !g.on.Load() || h.SSRC != info.SSRC {
			return writer.Write(h, payload, a)
		}
		g.mu.Lock()
		kind := g.rng.IntN(6)
		ssrc := g.rng.Uint32()
		g.mu.Unlock()
		g.kinds[kind].Add(1)
		hdr := *h // never touch the caller's packet
		switch kind {
		case 0: // a wrong SSRC, nobody announced
			hdr.SSRC = ssrc
		case 1: // truncated to its first byte (for Opus, a valid empty packet)
			payload = payload[:1:1]
		case 2: // a payload descriptor that cannot be parsed
			if video {
				payload = []byte{0x90, 0x80} // VP8: X and I bits set, picture id missing
			} else {
				payload = []byte{}
			}
		case 3: // timestamp 5 s back
			hdr.Timestamp -= 5 * clock
		case 4: // sequence number far back
			hdr.SequenceNumber -= 3000
		case 5:
			return writer.Write(h, payload, a)
		}
		g.mutated.Add(1)
		return writer.Write(&hdr, payload, a)
	})
}

// sentAfter returns the payloads a fake publisher sent from index i on.
func sentSince(f *fakeMedia, kind string, i int) [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.sentAudio
	if kind == "video" {
		s = f.sentVideo
	}
	if i > len(s) {
		i = len(s)
	}
	return append([][]byte(nil), s[i:]...)
}

func sentCount(f *fakeMedia, kind string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if kind == "video" {
		return len(f.sentVideo)
	}
	return len(f.sentAudio)
}

// Chaos (issue 17): a publisher sends garbage on live tracks for 2 s. Its
// subscriber never receives a byte the publisher did not send as media (the
// unparsable and truncated packets stop at the server), the track is not
// stuck (once the publisher sends sense again it reaches the subscriber),
// the server and the publisher's session survive, and another publisher's
// tracks in the same room reach the subscriber complete and in order
// throughout.
func TestGarbageOnLiveTrack(t *testing.T) {
	srv := startServer(t, nil)
	const room = "garbage"
	g := &garbler{rng: rand.New(rand.NewPCG(17, 6))}
	mallory := join(t, srv, room, "mallory", withClientAPI(faultAPI(t, apiOptions{first: []interceptor.Factory{g}})))
	alice := join(t, srv, room, "alice")
	bob := join(t, srv, room, "bob")
	got := record(bob)
	bad := publishFake(t, mallory)
	good := publishFake(t, alice)
	bv, ba := bad.track("video").ID, bad.track("audio").ID
	gv, ga := good.track("video").ID, good.track("audio").ID
	waitFor(t, 20*time.Second, "media of both publishers at bob", func() bool {
		return len(got.payloads(bv)) > 30 && len(got.payloads(ba)) > 30 && len(got.payloads(gv)) > 30 && len(got.payloads(ga)) > 30
	})

	g.on.Store(true)
	waitFor(t, 20*time.Second, "2 s of garbage", func() bool { return g.mutated.Load() >= 250 })
	g.on.Store(false)
	t.Logf("garbage sent: %d packets (wrong SSRC %d, truncated %d, bad descriptor %d, ts back %d, seq back %d; %d left alone)",
		g.mutated.Load(), g.kinds[0].Load(), g.kinds[1].Load(), g.kinds[2].Load(), g.kinds[3].Load(), g.kinds[4].Load(), g.kinds[5].Load())
	afterV, afterA := sentCount(bad, "video"), sentCount(bad, "audio")

	// not stuck: what mallory sends from now on reaches bob
	waitFor(t, 15*time.Second, "mallory's media at bob after the garbage", func() bool {
		return containsAny(got.payloads(bv), sentSince(bad, "video", afterV)) && containsAny(got.payloads(ba), sentSince(bad, "audio", afterA))
	})
	// the server and mallory's session are fine
	if err := mallory.Call(ctxT(t, 5*time.Second), protocol.MethodPing, protocol.Empty{}, nil); err != nil {
		t.Fatalf("mallory's session: %v", err)
	}
	if err := bob.Call(ctxT(t, 5*time.Second), protocol.MethodPing, protocol.Empty{}, nil); err != nil {
		t.Fatalf("bob's session: %v", err)
	}
	bad.Stop()
	good.Stop()
	waitFor(t, 10*time.Second, "alice's last packets at bob", func() bool {
		v, a := got.payloads(gv), got.payloads(ga)
		sv, sa := sentSince(good, "video", 0), sentSince(good, "audio", 0)
		return len(v) > 0 && len(a) > 0 && bytes.Equal(v[len(v)-1], sv[len(sv)-1]) && bytes.Equal(a[len(a)-1], sa[len(sa)-1])
	})
	// alice undisturbed: every packet, in order
	assertRun(t, "alice's video at bob", sentSince(good, "video", 0), got.payloads(gv))
	assertRun(t, "alice's audio at bob", sentSince(good, "audio", 0), got.payloads(ga))
	// nothing mallory did not send as media reached bob
	for _, tr := range []struct {
		kind, id string
	}{{"video", bv}, {"audio", ba}} {
		sent := map[string]bool{}
		for _, p := range sentSince(bad, tr.kind, 0) {
			sent[string(p)] = true
		}
		for i, p := range got.payloads(tr.id) {
			// a TOC-only Opus packet (the garbler's truncation) is a valid,
			// empty Opus packet (RFC 6716, 3.2): decoders conceal it
			if !sent[string(p)] && !(tr.kind == "audio" && len(p) == 1) {
				t.Fatalf("bob received mallory's %s packet %d (%d bytes: % x...) that mallory never sent as media", tr.kind, i, len(p), p[:min(len(p), 8)])
			}
		}
	}
	t.Logf("bob got %d/%d of mallory's video/audio packets and all %d/%d of alice's", len(got.payloads(bv)), len(got.payloads(ba)),
		len(got.payloads(gv)), len(got.payloads(ga)))
}

// containsAny reports whether got holds any of want.
func containsAny(got, want [][]byte) bool {
	set := map[string]bool{}
	for _, w := range want {
		set[string(w)] = true
	}
	for _, g := range got {
		if set[string(g)] {
			return true
		}
	}
	return false
}

var _ = client.Options{}

package relay

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// TestRelayRepairsLoss: a proxy on the path drops 10% of the media
// datagrams (first transmissions and retransmissions alike); the edge's
// NACKs and the origin's ring repair every one, byte for byte.
func TestRelayRepairsLoss(t *testing.T) {
	t.Parallel() // see main_test.go
	const n = 300
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(1, 2))
	origin, edge, px := newProxy(t, func(pkt []byte) bool {
		_, seq, ok := mediaSeq(pkt)
		if !ok || seq >= n-3 { // RTCP passes; the last packets pass so every gap shows
			return true
		}
		mu.Lock()
		defer mu.Unlock()
		return rng.IntN(10) != 0
	})
	src := newFakeSource(webrtc.RTPCodecTypeVideo, 0b111)
	_, imp := exportImport(t, origin, edge, src, 0b111, "TR_x")
	sink := recording(imp)
	want := map[[2]int][]byte{}
	for i := 0; i < n; i++ {
		for layer := int8(0); layer < 3; layer++ {
			payload := []byte(fmt.Sprintf("%d/%d %s", layer, i, bytes.Repeat([]byte{byte(layer)}, 300+i)))
			want[[2]int{int(layer), i}] = payload
			src.emit(layer, uint16(i), uint32(i*3000), false, payload)
		}
		time.Sleep(time.Millisecond) // ~1 s of media: NACKs come back while it flows
	}
	for len(want) > 0 {
		var p gotPacket
		select {
		case p = <-sink.pkts:
		case <-time.After(10 * time.Second):
			t.Fatalf("%d packets never arrived (%v...); origin %+v, edge %+v", len(want), firstKey(want), origin.Stats(), edge.Stats())
		}
		k := [2]int{int(p.layer), int(p.seq)}
		if w, ok := want[k]; ok {
			if !bytes.Equal(w, p.payload) {
				t.Fatalf("layer %d seq %d: payload differs", p.layer, p.seq)
			}
			delete(want, k)
		}
	}
	os, es := origin.Stats(), edge.Stats()
	if px.dropped.Load() == 0 || os.Retransmits == 0 || es.Repaired == 0 || es.NACKed == 0 {
		t.Fatalf("dropped %d, origin %+v, edge %+v: loss was not repaired by NACK", px.dropped.Load(), os, es)
	}
	t.Logf("dropped %d datagrams; edge NACKed %d, repaired %d; origin retransmitted %d",
		px.dropped.Load(), es.NACKed, es.Repaired, os.Retransmits)
}

// TestRelayRejectsWrongKey: a node holding another secret (or a datagram
// altered on the way) gets nothing through, and is counted.
func TestRelayRejectsWrongKey(t *testing.T) {
	bad, edge := listen(t, "node-a", []byte("not the cluster secret")), listen(t, "node-b", testSecret)
	introduce(t, bad, edge)
	src := newFakeSource(webrtc.RTPCodecTypeVideo, 1)
	_, imp := exportImport(t, bad, edge, src, 1, "TR_x")
	sink := recording(imp)
	for i := 0; i < 20; i++ {
		src.emit(0, uint16(i), 0, false, []byte("forged"))
	}
	eventually(t, "the forged packets to be refused", func() bool { return edge.Stats().AuthFailures >= 20 })
	if len(sink.pkts) != 0 || edge.Stats().PacketsIn != 0 {
		t.Fatalf("a packet under the wrong key got through")
	}
}

// TestRelayRejectsTampering: one flipped payload bit fails authentication.
func TestRelayRejectsTampering(t *testing.T) {
	var once sync.Once
	origin, edge, _ := newProxy(t, func(pkt []byte) bool {
		if _, seq, ok := mediaSeq(pkt); ok && seq == 5 {
			once.Do(func() { pkt[len(pkt)-20] ^= 1 }) // the first transmission only
		}
		return true
	})
	src := newFakeSource(webrtc.RTPCodecTypeAudio, 1)
	_, imp := exportImport(t, origin, edge, src, 1, "TR_a")
	sink := recording(imp)
	for i := 0; i < 10; i++ {
		src.emit(0, uint16(i), 0, false, bytes.Repeat([]byte{byte(i)}, 100))
		time.Sleep(time.Millisecond)
	}
	// The tampered packet is refused, NACKed and repaired from the ring.
	got := map[uint16]bool{}
	for len(got) < 10 {
		p := recv(t, sink.pkts, 10*time.Second)
		if !bytes.Equal(p.payload, bytes.Repeat([]byte{byte(p.seq)}, 100)) {
			t.Fatalf("seq %d: altered payload delivered", p.seq)
		}
		got[p.seq] = true
	}
	if edge.Stats().AuthFailures == 0 {
		t.Fatal("the altered datagram was not counted as an authentication failure")
	}
}

func firstKey(m map[[2]int][]byte) [2]int {
	for k := range m {
		return k
	}
	return [2]int{}
}

// TestRelayRefusesOldEpoch: after a peer restarted (new epoch, new keys),
// a recorded datagram of its previous life replayed from its address is
// refused: the old keys are never adopted again.
func TestRelayRefusesOldEpoch(t *testing.T) {
	t.Parallel() // see main_test.go
	var mu sync.Mutex
	var recorded []byte
	origin, edge, px := newProxy(t, func(pkt []byte) bool {
		mu.Lock()
		defer mu.Unlock()
		if _, _, ok := mediaSeq(pkt); ok && recorded == nil {
			recorded = append([]byte(nil), pkt...)
		}
		return true
	})
	src := newFakeSource(webrtc.RTPCodecTypeAudio, 1)
	_, oldImp := exportImport(t, origin, edge, src, 1, "TR_old")
	oldSink := recording(oldImp)
	src.emit(0, 1, 0, false, []byte("old life"))
	recv(t, oldSink.pkts, 10*time.Second)
	origin.Close()

	// The node comes back behind the same address (the proxy's).
	again := listen(t, "node-a", testSecret)
	if err := again.AddPeer("node-b", px.a.LocalAddr().String()); err != nil {
		t.Fatal(err)
	}
	src2 := newFakeSource(webrtc.RTPCodecTypeAudio, 1)
	_, imp2 := exportImport(t, again, edge, src2, 1, "TR_new")
	sink2 := recording(imp2)
	eventually(t, "media from the restarted node", func() bool {
		src2.emit(0, uint16(time.Now().UnixNano()), 0, false, []byte("new life"))
		return len(sink2.pkts) > 0
	})
	// Replay the old datagram, past the new-epoch trial throttle each time.
	mu.Lock()
	old := recorded
	mu.Unlock()
	failures := edge.Stats().AuthFailures
	for i := 0; i < 4; i++ {
		time.Sleep(2 * epochTrialGap)
		if _, err := px.b.WriteToUDPAddrPort(old, px.edge); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "the replays to be refused", func() bool { return edge.Stats().AuthFailures >= failures+4 })
	if len(oldSink.pkts) != 0 {
		t.Fatal("a datagram of the peer's previous epoch was accepted again")
	}
}

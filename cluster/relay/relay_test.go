package relay

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

func TestRelayBytesExactPerLayer(t *testing.T) {
	origin, edge := pair(t)
	src := newFakeSource(webrtc.RTPCodecTypeVideo, 0b111)
	exp, imp := exportImport(t, origin, edge, src, 0b111, "TR_x")
	sink := recording(imp)
	const n = 200
	want := map[[2]int][]byte{}
	for i := 0; i < n; i++ {
		for layer := int8(0); layer < 3; layer++ {
			seq := uint16(65500 + i + int(layer)*1000) // crosses the 16-bit wrap
			payload := []byte(fmt.Sprintf("layer %d packet %d %s", layer, i, bytes.Repeat([]byte{byte(i)}, i*5)))
			want[[2]int{int(layer), int(seq)}] = payload
			src.emit(layer, seq, uint32(1000*i)+uint32(layer), i%10 == 9, payload)
		}
		if i%20 == 0 {
			time.Sleep(time.Millisecond) // let the socket drain: no loss on loopback
		}
	}
	for len(want) > 0 {
		p := recv(t, sink.pkts, 5*time.Second)
		k := [2]int{int(p.layer), int(p.seq)}
		w, ok := want[k]
		if !ok {
			continue // a retransmission duplicate would be dropped by SRTP replay protection
		}
		if !bytes.Equal(w, p.payload) {
			t.Fatalf("layer %d seq %d: payload differs", p.layer, p.seq)
		}
		delete(want, k)
	}
	if imp.Layers() != 0b111 {
		t.Fatalf("layers %b", imp.Layers())
	}
	if p, _ := exp.Stats(); p != 3*n {
		t.Fatalf("export sent %d packets, want %d", p, 3*n)
	}
	if p, _ := imp.Stats(); p < 3*n {
		t.Fatalf("import received %d packets, want %d", p, 3*n)
	}
}

// TestRelayLayerOffForLong: a layer the edge did not want while the
// publisher sent 40,000 packets on it (more than half the sequence space:
// its rollover counter cannot be guessed from sequence numbers) is
// decrypted again when it turns back on.
func TestRelayLayerOffForLong(t *testing.T) {
	origin, edge := pair(t)
	src := newFakeSource(webrtc.RTPCodecTypeVideo, 0b011)
	exp, imp := exportImport(t, origin, edge, src, 0b011, "TR_x")
	sink := recording(imp)
	seq := uint16(60000)
	send := func(n int) {
		for i := 0; i < n; i++ {
			seq++
			src.emit(1, seq, uint32(seq), false, []byte{byte(seq)})
		}
	}
	send(10)
	for i := 0; i < 10; i++ {
		recv(t, sink.pkts, 10*time.Second)
	}
	exp.SetLayers(0b001)
	send(40000)
	exp.SetLayers(0b011)
	send(10)
	for i := 0; i < 10; i++ {
		p := recv(t, sink.pkts, 10*time.Second)
		if p.layer != 1 || p.payload[0] != byte(p.seq) {
			t.Fatalf("got layer %d seq %d", p.layer, p.seq)
		}
	}
	if s := edge.Stats(); s.AuthFailures != 0 || s.NACKed != 0 {
		t.Fatalf("edge stats %+v", s)
	}
}

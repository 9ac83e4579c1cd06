package relay

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// TestRelayConcurrentTracks: many tracks both ways at once, each layer
// on its own goroutine as a receiver's are, while tracks come and go and a
// peer is removed: every delivered payload is right, nothing races (run it
// with -race) and nothing leaks (goleak).
func TestRelayConcurrentTracks(t *testing.T) {
	a, b := pair(t)
	type track struct {
		src  *fakeSource
		exp  *Export
		imp  *Import
		sink *recSink
	}
	var tracks []*track
	for i := 0; i < 8; i++ {
		from, to, toID, fromID := a, b, "node-b", "node-a"
		if i%2 == 1 { // half the tracks go the other way
			from, to, toID, fromID = b, a, "node-a", "node-b"
		}
		kind, layers := webrtc.RTPCodecTypeVideo, uint8(0b111)
		if i%4 == 3 {
			kind, layers = webrtc.RTPCodecTypeAudio, 1
		}
		src := newFakeSource(kind, layers)
		exp, err := from.Export(toID, src, layers)
		if err != nil {
			t.Fatal(err)
		}
		imp, err := to.Import(fromID, exp.SSRCBase(), fmt.Sprintf("TR_%d", i), kind, src.Codec(), layers)
		if err != nil {
			t.Fatal(err)
		}
		sink := newRecSink()
		imp.AddSink(sink)
		tracks = append(tracks, &track{src, exp, imp, sink})
	}
	payload := func(track, layer, seq int) []byte {
		return []byte(fmt.Sprintf("%d/%d/%d %s", track, layer, seq, bytes.Repeat([]byte{byte(seq)}, 200)))
	}
	var wg sync.WaitGroup
	for ti, tr := range tracks {
		for l := int8(0); l < 3; l++ {
			if tr.src.layers&(1<<l) == 0 {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for s := 0; s < 300; s++ {
					tr.src.emit(l, uint16(s), uint32(s*3000), s%5 == 4, payload(ti, int(l), s))
					if s%10 == 9 {
						time.Sleep(time.Millisecond)
					}
					if s == 150 && ti < 2 && l == 0 { // some tracks end midway
						tr.exp.Close()
						tr.imp.Close()
					}
					if s == 100 && ti == 4 {
						tr.imp.RequestKeyframe(-1)
						tr.exp.SetLayers(0b011)
					}
				}
			}()
		}
	}
	wg.Wait()
	// The tracks still open got their packets, byte for byte.
	for ti, tr := range tracks[2:] {
		ti += 2
		got := 0
		want := 300
		deadline := time.After(10 * time.Second)
		for got < want {
			select {
			case p := <-tr.sink.pkts:
				if !bytes.Equal(p.payload, payload(ti, int(p.layer), int(p.seq))) {
					t.Fatalf("track %d layer %d seq %d: wrong payload", ti, p.layer, p.seq)
				}
				if p.layer == 0 {
					got++
				}
			case <-deadline:
				t.Fatalf("track %d: %d of %d layer-0 packets; stats %+v / %+v", ti, got, want, a.Stats(), b.Stats())
			}
		}
	}
	b.RemovePeer("node-a")
	a.RemovePeer("node-b")
	if s := a.Stats(); s.Exports != 0 || s.Imports != 0 {
		t.Fatalf("after RemovePeer: %d exports, %d imports", s.Exports, s.Imports)
	}
}

package relay

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/sfu"
)

// bindContext is what pion hands a down track when negotiation completes.
type bindContext struct {
	codecs []webrtc.RTPCodecParameters
	w      webrtc.TrackLocalWriter
}

func (c bindContext) CodecParameters() []webrtc.RTPCodecParameters           { return c.codecs }
func (c bindContext) HeaderExtensions() []webrtc.RTPHeaderExtensionParameter { return nil }
func (c bindContext) SSRC() webrtc.SSRC                                      { return 4242 }
func (c bindContext) SSRCRetransmission() webrtc.SSRC                        { return 0 }
func (c bindContext) SSRCForwardErrorCorrection() webrtc.SSRC                { return 0 }
func (c bindContext) WriteStream() webrtc.TrackLocalWriter                   { return c.w }
func (c bindContext) ID() string                                             { return "ctx" }
func (c bindContext) RTCPReader() interceptor.RTCPReader                     { return nil }

type outPacket struct {
	seq     uint16
	ts      uint32
	payload []byte
}

// subscriberWire records what a down track sends its subscriber.
type subscriberWire struct {
	mu   sync.Mutex
	pkts []outPacket
}

func (w *subscriberWire) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	w.mu.Lock()
	w.pkts = append(w.pkts, outPacket{h.SequenceNumber, h.Timestamp, append([]byte(nil), payload...)})
	w.mu.Unlock()
	return len(payload), nil
}
func (w *subscriberWire) Write(b []byte) (int, error) { return len(b), nil }

func (w *subscriberWire) snapshot() []outPacket {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]outPacket(nil), w.pkts...)
}

// TestRelayLayerSwitch: an edge subscriber's down track on an import
// starts on layer 0, then targets layer 2: its keyframe request crosses the
// relay to the source, the keyframe comes back, and the subscriber's stream
// switches there with continuous sequence numbers and no frame of another
// layer after the switch.
func TestRelayLayerSwitch(t *testing.T) {
	t.Parallel() // see main_test.go
	origin, edge := pair(t)
	src := newFakeSource(webrtc.RTPCodecTypeVideo, 0b111)
	_, imp := exportImport(t, origin, edge, src, 0b111, "TR_x")
	wire := &subscriberWire{}
	d := sfu.NewDownTrack(imp, "PA_pub")
	if _, err := d.Bind(bindContext{codecs: []webrtc.RTPCodecParameters{src.Codec()}, w: wire}); err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	d.SetTarget(0)
	imp.AddSink(d)

	// Each layer: its own sequence numbers, timestamps and picture ids, a
	// keyframe first and whenever one is asked for (as an encoder does).
	var seq, pid [3]uint16
	var ts [3]uint32
	key := [3]bool{true, true, true}
	frame := 0
	sendFrame := func() {
		for {
			select {
			case l := <-src.kf:
				if l >= 0 && l < 3 {
					key[l] = true
				}
				continue
			default:
			}
			break
		}
		for l := 0; l < 3; l++ {
			body := []byte(fmt.Sprintf("L%d frame %d", l, frame))
			src.emit(int8(l), 1000*uint16(l)+seq[l], 7_000_000*uint32(l)+ts[l], true, vp8Packet(0x100*uint16(l)+pid[l], key[l], body))
			key[l] = false
			seq[l]++
			pid[l]++
			ts[l] += 3000
		}
		frame++
	}
	layerOf := func(p outPacket) int {
		for l := 0; l < 3; l++ {
			if bytes.Contains(p.payload, []byte(fmt.Sprintf("L%d frame", l))) {
				return l
			}
		}
		return -1
	}
	waitFor := func(what string, cond func([]outPacket) bool) {
		deadline := time.Now().Add(15 * time.Second)
		for !cond(wire.snapshot()) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; edge %+v", what, edge.Stats())
			}
			sendFrame()
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor("layer 0 frames", func(p []outPacket) bool { return len(p) >= 5 })
	d.SetTarget(2)
	waitFor("the switch to layer 2", func(p []outPacket) bool {
		n := 0
		for _, x := range p {
			if layerOf(x) == 2 {
				n++
			}
		}
		return n >= 5
	})
	if origin.Stats().PLIsIn == 0 {
		t.Fatal("the switch happened without a keyframe request crossing the relay")
	}
	out := wire.snapshot()
	switched := false
	for i, p := range out {
		l := layerOf(p)
		if i > 0 && p.seq != out[i-1].seq+1 {
			t.Fatalf("packet %d: seq %d after %d: the stream is not continuous", i, p.seq, out[i-1].seq)
		}
		if i > 0 && int32(p.ts-out[i-1].ts) < 0 {
			t.Fatalf("packet %d: timestamp went back (%d after %d)", i, p.ts, out[i-1].ts)
		}
		switch {
		case l == 2 && !switched:
			switched = true
			if p.payload[4]&0x01 != 0 {
				t.Fatalf("the switch to layer 2 happened on a delta frame")
			}
		case switched && l != 2:
			t.Fatalf("packet %d: a layer %d frame after the switch to layer 2", i, l)
		case !switched && l != 0:
			t.Fatalf("packet %d: a layer %d frame before the switch", i, l)
		}
	}
}

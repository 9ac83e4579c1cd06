package sfu

import (
	"testing"

	"github.com/pion/rtp"
)

// sinkCounter is a non-down-track sink (a recorder, say).
type sinkCounter struct{ n int }

func (s *sinkCounter) WriteRTP(*rtp.Header, []byte, int8) error { s.n++; return nil }
func (s *sinkCounter) OnSenderReport(int8, uint64, uint32)      {}
func (s *sinkCounter) Close()                                   {}

// TestMutedReceiverSkipsDownTracks: a muted track's packets reach other
// sinks but no down track; unmuted, down tracks get them again.
func TestMutedReceiverSkipsDownTracks(t *testing.T) {
	r := newBenchReceiver(vp8Codec)
	w := &recordingWriter{}
	dts := bindDownTracks(t, r, 2, w)
	other := &sinkCounter{}
	r.AddSink(other)
	key, _ := benchPackets()
	hdr := &rtp.Header{Version: 2, SequenceNumber: 1, Timestamp: 90000, Marker: true}
	r.SetMuted(true)
	r.fanOut(hdr, key, 0)
	for _, d := range dts {
		d.flush(flushWait)
	}
	if len(w.pays) != 0 || other.n != 1 {
		t.Fatalf("muted: %d packets to down tracks, %d to the other sink; want 0 and 1", len(w.pays), other.n)
	}
	r.SetMuted(false)
	hdr.SequenceNumber++
	r.fanOut(hdr, key, 0)
	for _, d := range dts {
		d.flush(flushWait)
	}
	if len(w.pays) != 2 || other.n != 2 {
		t.Fatalf("unmuted: %d packets to down tracks, %d to the other sink; want 2 and 2", len(w.pays), other.n)
	}
	for _, d := range dts {
		d.Close()
	}
}

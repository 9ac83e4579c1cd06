package sfu

import (
	"testing"
	"time"
	"unsafe"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// BenchmarkPacketCache: one insert and one lookup of a 1000-byte payload in
// a layer's cache; reports the memory one cached video layer holds.
func BenchmarkPacketCache(b *testing.B) {
	c := newPacketCache()
	p := make([]byte, 1000)
	dst := make([]byte, maxPacket)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		seq := uint16(i)
		c.put(seq, 0, false, p)
		if _, ok := c.get(seq-100, dst); !ok && i > 100 {
			b.Fatal("miss")
		}
	}
	b.ReportMetric(float64(len(c.ring)+int(unsafe.Sizeof(c.index))), "bytes/cached-layer")
}

// BenchmarkNACKHandling: a subscriber's NACK naming 3 packets, answered from
// the cache on the RTX stream and queued (the write happens on the track's
// goroutine); reports the history memory per video down track.
func BenchmarkNACKHandling(b *testing.B) {
	r := newBenchReceiver(vp8Codec)
	l := r.testLayer(0)
	w := &countingWriter{}
	d := attachDownTrack(b, r, rtxContext(w))
	defer d.Close()
	key, delta := benchPackets()
	hdr := &rtp.Header{Version: 2, SequenceNumber: 1, Timestamp: 1}
	r.now.Store(time.Now().UnixNano())
	r.forward(l, hdr, key)
	for range 500 {
		hdr.SequenceNumber++
		r.forward(l, hdr, delta)
	}
	d.flush(time.Second)
	d.mu.Lock()
	lastSeq, _, _ := d.munger.Last()
	d.mu.Unlock()
	base := lastSeq - 450
	pkts := []rtcp.Packet{&rtcp.TransportLayerNack{MediaSSRC: 500}}
	nack := pkts[0].(*rtcp.TransportLayerNack)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		// Fresh packets each time: the resend limits would stop repeats.
		id := base + uint16(i%400)
		d.mu.Lock()
		for _, s := range [3]uint16{id, id + 1, id + 3} { // what the NACK names
			d.history[s%historyLen].resends, d.history[s%historyLen].lastRTX = 0, 0
		}
		d.mu.Unlock()
		nack.Nacks = nack.Nacks[:0]
		nack.Nacks = append(nack.Nacks, rtcp.NackPair{PacketID: id, LostPackets: 0b101})
		d.handleRTCP(pkts)
		if i%32 == 31 {
			d.flush(time.Second)
		}
	}
	d.flush(time.Second)
	b.ReportMetric(float64(unsafe.Sizeof(*d.history)), "bytes/down-track-history")
}

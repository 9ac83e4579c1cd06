package relay

import "sync/atomic"

// Stats are a transport's totals since Listen (for /metrics and tests).
type Stats struct {
	PacketsOut, BytesOut uint64 // media datagrams sent (first transmissions)
	PacketsIn, BytesIn   uint64 // media datagrams received and authenticated
	RTCPOut, RTCPIn      uint64
	Retransmits          uint64 // media datagrams resent for NACKs (origin)
	NACKed               uint64 // sequence numbers asked for again (edge)
	Repaired             uint64 // NACKed sequence numbers that arrived (edge)
	Lost                 uint64 // NACKed sequence numbers given up on (edge)
	PLIsOut, PLIsIn      uint64 // keyframe requests sent (edge) and received (origin)
	SendDrops            uint64 // datagrams dropped: the send queue was full
	AuthFailures         uint64 // datagrams that failed SRTP/SRTCP authentication
	Unknown              uint64 // datagrams from no known peer or for no import
	Malformed            uint64
	Exports, Imports     int
}

type counters struct {
	packetsOut, bytesOut, packetsIn, bytesIn, rtcpOut, rtcpIn atomic.Uint64
	retransmits, nacked, repaired, lost, plisOut, plisIn      atomic.Uint64
	oversize, authFailures, unknown, malformed                atomic.Uint64
}

// Stats returns the transport's counters.
func (t *Transport) Stats() Stats {
	c := &t.stats
	return Stats{
		PacketsOut: c.packetsOut.Load(), BytesOut: c.bytesOut.Load(),
		PacketsIn: c.packetsIn.Load(), BytesIn: c.bytesIn.Load(),
		RTCPOut: c.rtcpOut.Load(), RTCPIn: c.rtcpIn.Load(),
		Retransmits: c.retransmits.Load(), NACKed: c.nacked.Load(),
		Repaired: c.repaired.Load(), Lost: c.lost.Load(),
		PLIsOut: c.plisOut.Load(), PLIsIn: c.plisIn.Load(),
		SendDrops:    t.conn.Dropped(),
		AuthFailures: c.authFailures.Load(), Unknown: c.unknown.Load(),
		Malformed: c.malformed.Load() + c.oversize.Load(),
		Exports:   len(*t.exports.Load()), Imports: len(*t.imports.Load()),
	}
}

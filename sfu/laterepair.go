package sfu

import "encoding/binary"

// Late repairs.
//
// A packet lost on the way from the publisher is repaired when the
// publisher's resend arrives, which on a starved machine can be seconds
// later (TestLossRecoveryUpstream under load: 3 s, about 270 packets of
// its camera). The down track still forwards it into its slot (the
// munger places any input within its window: Munger.Forward), but a
// packet that far behind the newest one sent is older than the
// subscriber's SRTP replay window (pion's default is 64 packets), and the
// subscriber's SRTP layer drops it as a replay. It then arrives only if
// the subscriber asks for it again (the down track answers a NACK from
// its history, on RTX), and a browser gives a missing packet up after a
// few NACKs. So a packet lateOnRTX or more slots behind the newest goes
// out on the subscriber's RTX stream (RFC 4588: the stream's own sequence
// numbers, which are in order, the original number first), as if the
// subscriber had asked for it: no replay window refuses it, and the
// receiver places it by its original number. Without a negotiated RTX
// stream it goes on the media stream as before.
//
// How late a repair may be (docs/robustness.md, "Late repairs"): any
// packet the munger can still place, that is within mungerWindow (1024)
// output slots of the newest and not older than the drop history it keeps
// (maxDropRanges runs, padding included). In time that is 11 s of a
// 90 packets/s camera and 2.5 s of a 400 packets/s 1080p layer; the SFU
// asks the publisher for a missing packet for at least 3 s (nack.go), and
// a receiver's jitter buffer waits about as long for a missing frame
// before asking for a keyframe, so the window is not cut shorter in time:
// LiveKit and mediasoup likewise forward a repair whenever their
// sequence-number mapping can still place it.

// lateOnRTX: a packet this many output slots or more behind the newest
// sent goes out on the RTX stream. Half the smallest replay window in use
// (pion's 64), so that the packets queued before it cannot push it out of
// a 64-packet window either.
const lateOnRTX = 32

// sendLateOnRTX turns p, a packet munged behind the newest sent, into an RTX
// packet of the down track (original sequence number first). It reports
// false, p unchanged, if the buffer has no room for the two bytes. Call
// with d.mu held, p.buf the down track's own.
func (d *DownTrack) sendLateOnRTX(p *queuedPacket, now int64) bool {
	if int(p.n)+2 > len(p.buf) {
		return false
	}
	copy(p.buf[2:int(p.n)+2], p.buf[:p.n])
	binary.BigEndian.PutUint16(p.buf[:2], p.seq)
	if d.history != nil {
		// A NACK racing this packet gets no second copy at once.
		if e := &d.history[p.seq%historyLen]; e.valid && e.outSeq == p.seq {
			e.lastRTX = now
		}
	}
	p.n += 2
	p.ssrc, p.pt, p.seq = d.rtxSSRC, d.rtxPT, d.rtxSeq
	d.rtxSeq++
	counters.retransmits.Add(1)
	counters.lateRepairs.Add(1)
	return true
}

package cluster_test

import (
	"encoding/binary"
	"time"

	"github.com/pion/rtp"
)

// gaps measures the largest interruption of a participant's audio as a
// subscriber hears it, across track changes (a publisher that fails over
// publishes a new track): the test sender numbers its Opus frames
// (payload 0x78 then a big-endian frame counter, one frame per 20 ms), so
// the frames missed are counted exactly, next to the time without any.
type gaps struct {
	last  map[string]uint32    // last frame number, by key
	at    map[string]time.Time // when it came
	worst map[string]gap       // since reset
	seq   map[string]rtpPos    // last RTP packet, by key
}

type gap struct {
	missed  int           // frames never received
	silence time.Duration // between the last frame before and the first after
	// seqJump: the largest step of the RTP sequence number within one
	// SSRC (1 = continuous); a new track (SSRC) starts afresh.
	seqJump int
}

type rtpPos struct {
	ssrc uint32
	seq  uint16
}

// saw records a packet; call with the received's mutex held.
func (g *gaps) saw(key string, pkt *rtp.Packet, now time.Time) {
	if len(pkt.Payload) < 5 || pkt.Payload[0] != 0x78 {
		return // not the test sender's audio
	}
	if g.last == nil {
		g.last, g.at, g.worst, g.seq = map[string]uint32{}, map[string]time.Time{}, map[string]gap{}, map[string]rtpPos{}
	}
	if p, ok := g.seq[key]; !ok || p.ssrc != pkt.SSRC {
		g.seq[key] = rtpPos{pkt.SSRC, pkt.SequenceNumber}
	} else if step := int(pkt.SequenceNumber - p.seq); step > 0 && step < 1<<15 { // a late packet is not a step
		w := g.worst[key]
		w.seqJump = max(w.seqJump, step)
		g.worst[key] = w
		g.seq[key] = rtpPos{pkt.SSRC, pkt.SequenceNumber}
	}
	n := binary.BigEndian.Uint32(pkt.Payload[1:])
	if prev, ok := g.last[key]; ok && n > prev {
		w := g.worst[key]
		if missed := int(n - prev - 1); missed > w.missed {
			w.missed = missed
		}
		if d := now.Sub(g.at[key]); d > w.silence {
			w.silence = d
		}
		g.worst[key] = w
	}
	if prev, ok := g.last[key]; !ok || n > prev {
		g.last[key], g.at[key] = n, now
	}
}

// resetGaps starts a new measurement.
func (r *received) resetGaps() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gaps.worst = map[string]gap{}
}

// worstGap is the largest interruption of key since resetGaps.
func (r *received) worstGap(participant, kind string) gap {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.gaps.worst[participant+"/"+kind]
}

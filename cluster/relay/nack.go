package relay

import (
	"time"

	"github.com/pion/rtcp"
)

// Loss repair on the edge: every gap is NACKed at once, then again until
// the packet comes or it is too old; the origin answers from its ring
// (Export.onNACK).

const (
	missSlots    = 128 // missing packets tracked per layer (power of two)
	nackRetry    = 40 * time.Millisecond
	nackGiveUp   = time.Second
	maxNACKTries = 8
)

type nackLayer struct {
	started bool
	highest uint16
	pending int
	miss    [missSlots]miss
}

type miss struct {
	first, last int64
	seq         uint16
	tries       uint8
	valid       bool
}

// detectLoss notes the gap before a packet and NACKs it at once, or
// crosses off a missing packet that arrived. A resuming packet (its layer
// was off at the origin) starts afresh: the gap before it was never sent.
func (i *Import) detectLoss(layer int8, seq uint16, resume bool, now int64) {
	i.nackMu.Lock()
	n := &i.nack[layer]
	if !n.started || (resume && int16(seq-n.highest) > 0) {
		n.started, n.highest = true, seq
		i.nackMu.Unlock()
		return
	}
	k := 0
	switch d := int16(seq - n.highest); {
	case d > 0:
		if d > 1 && int(d) <= missSlots {
			for s := n.highest + 1; s != seq; s++ {
				i.addMiss(n, s, now)
				i.rxScratch[k] = s
				k++
			}
		}
		n.highest = seq
	case d < 0:
		if m := &n.miss[seq%missSlots]; m.valid && m.seq == seq {
			m.valid = false
			n.pending--
			i.pending.Add(-1)
			i.t.stats.repaired.Add(1)
		}
	}
	i.nackMu.Unlock()
	if k > 0 {
		i.sendNACK(layer, i.rxScratch[:k])
	}
}

// addMiss records a missing packet; call with nackMu held.
func (i *Import) addMiss(n *nackLayer, seq uint16, now int64) {
	m := &n.miss[seq%missSlots]
	if m.valid { // overwritten: a packet this old is given up on
		i.t.stats.lost.Add(1)
	} else {
		n.pending++
		if i.pending.Add(1) == 1 {
			i.t.missed() // the timer retries from now on
		}
	}
	*m = miss{first: now, last: now, seq: seq, tries: 1, valid: true}
}

func (i *Import) sendNACK(layer int8, seqs []uint16) {
	i.t.stats.nacked.Add(uint64(len(seqs)))
	i.p.sendRTCP(&rtcp.TransportLayerNack{SenderSSRC: controlSSRC, MediaSSRC: i.base + uint32(layer),
		Nacks: rtcp.NackPairsFromSequenceNumbers(seqs)})
}

// retryNACKs asks again for packets still missing, and gives up on old
// ones. Runs on the timer.
func (i *Import) retryNACKs(now int64) {
	if i.pending.Load() == 0 {
		return
	}
	for layer := int8(0); layer < maxLayers; layer++ {
		i.nackMu.Lock()
		n := &i.nack[layer]
		k := 0
		for j := range n.miss {
			if n.pending == 0 {
				break
			}
			m := &n.miss[j]
			if !m.valid {
				continue
			}
			if now-m.first > int64(nackGiveUp) || m.tries >= maxNACKTries {
				m.valid = false
				n.pending--
				i.pending.Add(-1)
				i.t.stats.lost.Add(1)
				continue
			}
			if now-m.last >= int64(nackRetry) {
				m.tries++
				m.last = now
				i.tickScratch[k] = m.seq
				k++
			}
		}
		i.nackMu.Unlock()
		if k > 0 {
			i.sendNACK(layer, i.tickScratch[:k])
		}
	}
}

package loadgen

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/protocol"
)

// What a run samples while it runs: the processes' CPU and memory, the
// streams' and senders' counters, and the progress line they make.

// procPair is the server's and this process's usage at one instant.
type procPair struct {
	server, self     ProcSample   // server: summed over the nodes
	nodes            []ProcSample // each server process, in Config.serverPIDs order
	serverOK, selfOK bool
	machine          MachineSample
	machineOK        bool
}

func (r *runner) sample() procPair {
	var s procPair
	var err error
	if pids := r.cfg.serverPIDs(); len(pids) > 0 {
		s.serverOK = true
		for _, pid := range pids {
			n, err := ReadProc(pid)
			s.serverOK = s.serverOK && err == nil
			s.nodes = append(s.nodes, n)
			s.server.At, s.server.Ticks, s.server.RSSKB = n.At, s.server.Ticks+n.Ticks, s.server.RSSKB+n.RSSKB
		}
	}
	s.self, err = ReadProc(0)
	s.selfOK = err == nil
	s.machine, err = ReadMachine()
	s.machineOK = err == nil
	return s
}

// snapshot is every counter at one instant.
type snapshot struct {
	at      time.Time
	procs   procPair
	streams map[*stream]streamSnap
	sent    map[*sender]senderSnap

	serverUDP, selfUDP     UDPSample
	serverUDPOK, selfUDPOK bool

	metrics   metricsSample // the servers' /metrics (servermetrics.go)
	metricsOK bool

	layerChanges map[*participant]layerCount
}

// layerCount counts the subscriptionUpdated notifications a participant got:
// the server changing which layer it forwards, or pausing the track.
type layerCount struct{ changes, paused uint64 }

func countLayerChanges(c *client.Client) layerCount {
	var n layerCount
	for _, e := range c.Events() {
		if e.Method != protocol.NotifySubscriptionUpdated {
			continue
		}
		n.changes++
		var p protocol.SubscriptionUpdatedParams
		if json.Unmarshal(e.Params, &p) == nil && p.Layer == protocol.QualityPaused {
			n.paused++
		}
	}
	return n
}

// senderSnap is a sender's counters; layers for video, low to high.
type senderSnap struct {
	packets, bytes uint64
	layers         []layerSnap
}

type layerSnap struct{ packets, bytes, frames, keyframes, keyReqs, skipped uint64 }

func (sd *sender) snapshot() senderSnap {
	s := senderSnap{packets: sd.packets.Load(), bytes: sd.bytes.Load()}
	for _, l := range sd.layers {
		s.layers = append(s.layers, layerSnap{l.packets.Load(), l.bytes.Load(), l.frames.Load(),
			l.keyframes.Load(), l.keyReqs.Load(), l.skipped.Load()})
	}
	return s
}

func (r *runner) snapshot() snapshot {
	s := snapshot{at: time.Now(), streams: map[*stream]streamSnap{}, sent: map[*sender]senderSnap{},
		layerChanges: map[*participant]layerCount{}}
	for _, p := range r.parts {
		if p.c != nil && p.receive {
			s.layerChanges[p] = countLayerChanges(p.c)
		}
		for _, st := range p.streamList() {
			s.streams[st] = st.snapshot()
		}
		for _, sd := range p.senders {
			s.sent[sd] = sd.snapshot()
		}
	}
	s.procs = r.sample()
	s.metrics, s.metricsOK = r.scrapeMetrics()
	var err error
	if pids := r.cfg.serverPIDs(); len(pids) > 0 {
		s.serverUDPOK = true
		for _, pid := range pids {
			u, err := ReadUDP(pid)
			s.serverUDPOK = s.serverUDPOK && err == nil
			s.serverUDP.Drops += u.Drops
			s.serverUDP.RxQueued += u.RxQueued
		}
	}
	s.selfUDP, err = ReadUDP(0)
	s.selfUDPOK = err == nil
	return s
}

// progress prints one line per second until stop is closed.
func (r *runner) progress(stop <-chan struct{}) {
	if r.cfg.Progress == nil {
		<-stop
		return
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	prev := r.sample()
	prevAt, prevPkts := time.Now(), uint64(0)
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		now := time.Now()
		var pkts uint64
		started, streams := 0, 0
		for _, p := range r.parts {
			for _, s := range p.streamList() {
				streams++
				n := s.packets.Load()
				pkts += n
				if n > 0 {
					started++
				}
			}
		}
		cur := r.sample()
		line := fmt.Sprintf("%5.0fs  %-10s joined %d/%d", now.Sub(r.startedAt).Seconds(), r.phase.Load(),
			r.joined.Load(), len(r.parts))
		if f := r.failed.Load(); f > 0 {
			line += fmt.Sprintf(" (%d failed)", f)
		}
		line += fmt.Sprintf("  streams %d/%d  rx %.0f pkt/s", started, streams,
			float64(pkts-prevPkts)/now.Sub(prevAt).Seconds())
		if cur.serverOK && prev.serverOK {
			line += fmt.Sprintf("  server CPU %.0f%% RSS %.0f MB", CPUPercent(prev.server, cur.server), float64(cur.server.RSSKB)/1024)
		}
		if cur.selfOK && prev.selfOK {
			line += fmt.Sprintf("  gen CPU %.0f%%", CPUPercent(prev.self, cur.self))
		}
		if cur.machineOK && prev.machineOK {
			line += fmt.Sprintf("  machine %.0f%%", MachinePercent(prev.machine, cur.machine))
		}
		if r.rec != nil {
			if n, ok := r.rec.bytesSoFar(); ok {
				line += fmt.Sprintf("  recorded %.1f MB", float64(n)/1e6)
			}
		}
		fmt.Fprintln(r.cfg.Progress, line)
		prev, prevAt, prevPkts = cur, now, pkts
	}
}

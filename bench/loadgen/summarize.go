package loadgen

import (
	"math"
	"os"
	"runtime"
	"slices"
	"time"
)

// summarize turns the snapshots at the window's two ends into a Summary.

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func durationPercentiles(v []time.Duration) Percentiles {
	if len(v) == 0 {
		return Percentiles{}
	}
	p := Percentiles{P50: ms(Percentile(v, 50)), P95: ms(Percentile(v, 95)), P99: ms(Percentile(v, 99)), Samples: uint64(len(v))}
	p.Max = ms(v[len(v)-1]) // sorted by Percentile
	return p
}

func histPercentiles(h *HistSnapshot) Percentiles {
	return Percentiles{P50: ms(h.Percentile(50)), P95: ms(h.Percentile(95)), P99: ms(h.Percentile(99)),
		Max: ms(h.Percentile(100)), Samples: h.Count()}
}

func (r *runner) summarize(start procPair, a, b snapshot) *Summary {
	cfg := &r.cfg
	s := &Summary{Date: time.Now().UTC().Format(time.RFC3339), Preset: cfg.Preset, URL: cfg.URL, Rooms: cfg.Rooms,
		JoinFailures: int(r.failed.Load()), WindowSeconds: b.at.Sub(a.at).Seconds()}
	if cfg.Video {
		s.VideoBitrate, s.FPS, s.Codec, s.Simulcast = cfg.VideoBitrate, cfg.FPS, cfg.Codec, cfg.simulcast()
	}
	if cfg.Audio {
		s.AudioBitrate = cfg.AudioBitrate
		s.Mix = cfg.Mix
	}
	win := s.WindowSeconds
	if win <= 0 {
		win = math.SmallestNonzeroFloat64
	}
	if urls := cfg.urls(); len(urls) > 1 {
		s.Nodes = nodeShares(urls, r.parts)
	}

	// Publishers: what they sent in the window, by server track id.
	tracksInRoom := map[string]int{}
	videoInRoom := map[string]int{} // with Config.Mix, the tracks still forwarded one by one
	sentByTrack := map[string]uint64{}
	simulcastTrack := map[string]bool{}
	var joins []time.Duration
	for _, p := range r.parts {
		if p.c == nil {
			continue
		}
		joins = append(joins, p.joinTime)
		if len(p.senders) > 0 {
			s.Publishers++
		}
		for _, sd := range p.senders {
			if sd.muted {
				s.MutedTracks++
				continue // sent, but no subscriber should get it
			}
			tracksInRoom[p.room]++
			if sd.video {
				videoInRoom[p.room]++
			}
			d := b.sent[sd].sub(a.sent[sd])
			sentByTrack[sd.serverID] = d.packets
			simulcastTrack[sd.serverID] = sd.sim != nil
			s.Sent.Packets += d.packets
			s.Sent.Bitrate += float64(d.bytes) * 8 / win
			for i, l := range d.layers {
				if i == len(s.SentLayers) {
					lp := sd.layers[i]
					s.SentLayers = append(s.SentLayers, LayerSent{RID: lp.rid, Width: lp.params.Width, Height: lp.params.Height})
				}
				ls := &s.SentLayers[i]
				ls.Bitrate += float64(l.bytes) * 8 / win
				ls.PacketsPerSecond += float64(l.packets) / win
				ls.Frames += l.frames
				ls.Keyframes += l.keyframes
				ls.KeyframeRequests += l.keyReqs
				ls.FramesOff += l.skipped
				s.Sent.Keyframes += l.keyframes
				s.Sent.KeyframeRequests += l.keyReqs
			}
		}
	}
	s.Sent.PacketsPerSecond = float64(s.Sent.Packets) / win
	s.JoinMs = durationPercentiles(joins)

	// Subscribers: what arrived in the window.
	var delay HistSnapshot
	var starts []time.Duration
	layers := map[uint32]*LayerReceived{}
	var videoPackets uint64
	mediaStart := r.mediaStart.Load()
	s.SubscriberBitrate.Min = math.Inf(1)
	for _, p := range r.parts {
		if p.c == nil || !p.receive {
			continue
		}
		s.Subscribers++
		own := 0
		for _, sd := range p.senders {
			if !sd.muted {
				own++
			}
		}
		if r.cfg.Mix {
			// One mix, plus the video tracks of others (none in the audio preset).
			ownVideo := 0
			for _, sd := range p.senders {
				if sd.video {
					ownVideo++
				}
			}
			s.StreamsExpected += 1 + videoInRoom[p.room] - ownVideo
		} else {
			s.StreamsExpected += tracksInRoom[p.room] - own
		}
		if lb, ok := b.layerChanges[p]; ok {
			la := a.layerChanges[p]
			s.LayerChanges += lb.changes - la.changes
			s.Pauses += lb.paused - la.paused
		}
		var bytes uint64
		for _, st := range p.streamList() {
			sb, sa := b.streams[st], a.streams[st]
			packets, expected := sb.packets-sa.packets, sb.expected-sa.expected
			bytes += sb.bytes - sa.bytes
			if sb.packets > 0 {
				s.StreamsStarted++
				if first := st.firstAt.Load(); first > 0 {
					starts = append(starts, time.Duration(first-mediaStart))
				}
			}
			s.Received.Packets += packets
			if st.mix || (st.video && simulcastTrack[st.trackID]) {
				if pad := sb.padding - sa.padding; expected > pad {
					s.Received.ExpectedFromSent += expected - pad
				}
			} else {
				s.Received.ExpectedFromSent += sentByTrack[st.trackID]
			}
			if st.codec != "" {
				s.LayerSwitches += sb.switches - sa.switches
				for i, n := range sb.layerPkts {
					n -= sa.layerPkts[i]
					if n == 0 {
						continue
					}
					size := uint32(0)
					if i < maxLayerSlots {
						size = sb.layerSize[i]
					}
					layerAt(layers, size).Packets += n
					videoPackets += n
				}
				if sb.curLayer >= 0 {
					layerAt(layers, sb.layerSize[sb.curLayer]).StreamsAtEnd++
				}
			}
			s.Loss.Expected += expected
			if expected > packets {
				lost := expected - packets
				s.Loss.Lost += lost
				s.Loss.WorstStream = max(s.Loss.WorstStream, 100*float64(lost)/float64(expected))
			}
			s.Loss.BadPackets += st.bad.Load()
			h := sb.delay.Sub(&sa.delay)
			padding := sb.padding - sa.padding
			stamped := h.Count()
			if st.mix {
				// Re-encoded by the mixer: media without the publishers'
				// stamps (the mixer's own delay is in docs/mixing.md).
				stamped = packets - min(packets, padding)
			}
			if st.mix || (st.video && simulcastTrack[st.trackID]) {
				s.Received.MediaPackets += stamped
			} else {
				// Judged against what was sent in the window: the packets
				// sent in it, whenever they arrived (runner.awaitInFlight).
				s.Received.MediaPackets += st.inWindow.Load()
			}
			s.Received.PaddingPackets += padding
			if !st.mix {
				s.Loss.StampsMissing += sb.unstamped - sa.unstamped
			}
			delay.Add(&h)
		}
		bps := float64(bytes) * 8 / win
		s.SubscriberBitrate.Mean += bps
		s.SubscriberBitrate.Min = min(s.SubscriberBitrate.Min, bps)
	}
	if s.Subscribers > 0 {
		s.SubscriberBitrate.Mean /= float64(s.Subscribers)
	} else {
		s.SubscriberBitrate.Min = 0
	}
	for _, l := range layers {
		if videoPackets > 0 {
			l.Percent = 100 * float64(l.Packets) / float64(videoPackets)
		}
		s.VideoLayers = append(s.VideoLayers, *l)
	}
	slices.SortFunc(s.VideoLayers, func(x, y LayerReceived) int { return x.Width*x.Height - y.Width*y.Height })
	s.Received.PacketsPerSecond = float64(s.Received.Packets) / win
	if s.Received.ExpectedFromSent > 0 {
		s.Received.DeliveryRatio = float64(s.Received.MediaPackets) / float64(s.Received.ExpectedFromSent)
	}
	if s.Loss.Expected > 0 {
		s.Loss.Percent = 100 * float64(s.Loss.Lost) / float64(s.Loss.Expected)
	}
	s.Loss.ServerSocketDrops, s.Loss.GeneratorSocketDrops = -1, -1
	if a.serverUDPOK && b.serverUDPOK && b.serverUDP.Drops >= a.serverUDP.Drops {
		s.Loss.ServerSocketDrops = int64(b.serverUDP.Drops - a.serverUDP.Drops)
		s.Loss.ServerRxQueuedBytes = b.serverUDP.RxQueued
	}
	if a.selfUDPOK && b.selfUDPOK && b.selfUDP.Drops >= a.selfUDP.Drops && cfg.ServerPID != os.Getpid() {
		s.Loss.GeneratorSocketDrops = int64(b.selfUDP.Drops - a.selfUDP.Drops)
		s.Loss.GenRxQueuedBytes = b.selfUDP.RxQueued
	}
	s.DelayMs = histPercentiles(&delay)
	s.MediaStartMs = durationPercentiles(starts)
	s.Padding = r.paddingStats(a, b, win)
	s.NotStarted, _ = r.notStarted(b)
	if a.metricsOK && b.metricsOK {
		s.ServerMetrics = serverMetrics(a.metrics, b.metrics, s.Received.Packets)
	}

	if a.procs.serverOK && b.procs.serverOK {
		ps := &ProcStats{PID: cfg.ServerPID, CPUPercent: CPUPercent(a.procs.server, b.procs.server),
			CPUSeconds: CPUSeconds(a.procs.server, b.procs.server), RSSMB: float64(b.procs.server.RSSKB) / 1024}
		if start.serverOK {
			ps.RSSStartMB = float64(start.server.RSSKB) / 1024
			if s.Subscribers > 0 && b.procs.server.RSSKB > start.server.RSSKB {
				ps.RSSPerSubscriberKB = float64(b.procs.server.RSSKB-start.server.RSSKB) / float64(s.Subscribers)
			}
		}
		if s.Received.Packets > 0 {
			ps.UsPerForwardedPacket = ps.CPUSeconds * 1e6 / float64(s.Received.Packets)
		}
		if s.Received.MediaPackets > 0 {
			ps.UsPerMediaPacket = ps.CPUSeconds * 1e6 / float64(s.Received.MediaPackets)
		}
		if s.Subscribers > 0 {
			ps.CPUMsPerSubscriberSecond = ps.CPUSeconds * 1e3 / (float64(s.Subscribers) * win)
		}
		s.Server = ps
		if pids := cfg.serverPIDs(); len(pids) > 1 && len(a.procs.nodes) == len(pids) && len(b.procs.nodes) == len(pids) {
			for i, pid := range pids {
				x, y := a.procs.nodes[i], b.procs.nodes[i]
				s.ServerNodes = append(s.ServerNodes, ProcStats{PID: pid, CPUPercent: CPUPercent(x, y),
					CPUSeconds: CPUSeconds(x, y), RSSMB: float64(y.RSSKB) / 1024})
			}
		}
	}
	if a.procs.selfOK && b.procs.selfOK {
		s.Generator = &ProcStats{CPUPercent: CPUPercent(a.procs.self, b.procs.self),
			CPUSeconds: CPUSeconds(a.procs.self, b.procs.self), RSSMB: float64(b.procs.self.RSSKB) / 1024}
		if start.selfOK {
			s.Generator.RSSStartMB = float64(start.self.RSSKB) / 1024
		}
	}
	if a.procs.machineOK && b.procs.machineOK {
		m := &MachineStats{Cores: runtime.NumCPU(), CPUPercent: MachinePercent(a.procs.machine, b.procs.machine)}
		m.OtherPercent = m.CPUPercent
		if s.Generator != nil {
			m.OtherPercent -= s.Generator.CPUPercent
		}
		if s.Server != nil && cfg.ServerPID != os.Getpid() {
			m.OtherPercent -= s.Server.CPUPercent
		}
		m.OtherPercent = max(0, m.OtherPercent)
		s.Machine = m
	}
	return s
}

// layerAt returns the entry for a packed size (width<<16 | height), adding it.
func layerAt(m map[uint32]*LayerReceived, size uint32) *LayerReceived {
	l := m[size]
	if l == nil {
		l = &LayerReceived{Width: int(size >> 16), Height: int(size & 0xffff)}
		m[size] = l
	}
	return l
}

func (s senderSnap) sub(o senderSnap) senderSnap {
	d := senderSnap{packets: s.packets - o.packets, bytes: s.bytes - o.bytes}
	for i, l := range s.layers {
		var p layerSnap
		if i < len(o.layers) {
			p = o.layers[i]
		}
		d.layers = append(d.layers, layerSnap{l.packets - p.packets, l.bytes - p.bytes, l.frames - p.frames,
			l.keyframes - p.keyframes, l.keyReqs - p.keyReqs, l.skipped - p.skipped})
	}
	return d
}

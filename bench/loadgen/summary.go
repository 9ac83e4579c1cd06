package loadgen

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"strconv"
	"text/tabwriter"
	"time"
)

// Summary is what a run measured over its window (after the warm-up).
type Summary struct {
	Date          string  `json:"date"`
	Preset        string  `json:"preset"`
	URL           string  `json:"url"`
	Rooms         int     `json:"rooms"`
	Publishers    int     `json:"publishers"`  // joined and publishing
	Subscribers   int     `json:"subscribers"` // joined participants that receive (meeting publishers included)
	JoinFailures  int     `json:"joinFailures"`
	WindowSeconds float64 `json:"windowSeconds"`

	VideoBitrate int64 `json:"videoBitrate"` // configured, bits/s; 0 = no video
	FPS          int   `json:"fps,omitempty"`
	AudioBitrate int64 `json:"audioBitrate"` // configured, bits/s; 0 = no audio

	StreamsExpected int `json:"streamsExpected"` // (subscriber, track) pairs
	StreamsStarted  int `json:"streamsStarted"`  // of those, received at least one packet

	Sent struct {
		Packets          uint64  `json:"packets"`
		PacketsPerSecond float64 `json:"packetsPerSecond"`
		Bitrate          float64 `json:"bitrate"` // RTP bits/s over all publishers
		Keyframes        uint64  `json:"keyframes"`
		KeyframeRequests uint64  `json:"keyframeRequests"` // PLI/FIR from the server
	} `json:"sent"`
	Received struct {
		Packets          uint64  `json:"packets"`
		PacketsPerSecond float64 `json:"packetsPerSecond"`
		// ExpectedFromSent is Σ over received streams of the packets its
		// publisher sent in the window: sent × subscribers.
		ExpectedFromSent uint64  `json:"expectedFromSent"`
		DeliveryRatio    float64 `json:"deliveryRatio"` // MediaPackets / ExpectedFromSent
		// MediaPackets carry a publisher's stamp; PaddingPackets are
		// padding-only (bandwidth probes); the rest of Packets are other
		// packets without a stamp (see Loss.StampsMissing).
		MediaPackets   uint64 `json:"mediaPackets"`
		PaddingPackets uint64 `json:"paddingPackets"`
	} `json:"received"`
	// LayerChanges counts subscriptionUpdated notifications in the window
	// (the server switching or pausing a subscriber's layer), Pauses those
	// saying "paused".
	LayerChanges      uint64 `json:"layerChanges"`
	Pauses            uint64 `json:"pauses"`
	SubscriberBitrate struct {
		Mean float64 `json:"mean"` // bits/s received per subscriber (RTP bytes)
		Min  float64 `json:"min"`
	} `json:"subscriberBitrate"`
	Loss struct {
		Lost          uint64  `json:"lost"`
		Expected      uint64  `json:"expected"` // from RTP sequence numbers
		Percent       float64 `json:"percent"`
		WorstStream   float64 `json:"worstStreamPercent"`
		BadPackets    uint64  `json:"badPackets"`
		StampsMissing uint64  `json:"stampsMissing"`
		// Datagrams the kernel dropped in the window because a UDP
		// socket's receive buffer was full, on either side (-1 = unknown),
		// and what waited in those buffers at the end. Loss not found here
		// happened inside a process (pion's buffers) or was never sent.
		ServerSocketDrops    int64  `json:"serverSocketDrops"`
		GeneratorSocketDrops int64  `json:"generatorSocketDrops"`
		ServerRxQueuedBytes  uint64 `json:"serverRxQueuedBytes"`
		GenRxQueuedBytes     uint64 `json:"generatorRxQueuedBytes"`
	} `json:"loss"`
	DelayMs      Percentiles `json:"delayMs"`      // publisher send → subscriber read
	JoinMs       Percentiles `json:"joinMs"`       // Dial: WebSocket, join, publisher negotiation
	MediaStartMs Percentiles `json:"mediaStartMs"` // publishing began → first packet, per stream

	Server    *ProcStats    `json:"server,omitempty"`
	Generator *ProcStats    `json:"generator,omitempty"`
	Machine   *MachineStats `json:"machine,omitempty"`

	// Recordings started with --record, one per room (stopped after the
	// window, so their figures cover the whole run).
	Recordings []RecordingStats `json:"recordings,omitempty"`
}

// RecordingsOK says whether every recording asked for ran and wrote files.
func (s *Summary) RecordingsOK() bool {
	for i := range s.Recordings {
		if !s.Recordings[i].OK() {
			return false
		}
	}
	return true
}

// MachineStats is the whole machine's CPU use over the window, to see what
// else ran: OtherPercent is what neither the server nor the generator used.
type MachineStats struct {
	Cores        int     `json:"cores"`
	CPUPercent   float64 `json:"cpuPercent"` // of one core; at most 100 × Cores
	OtherPercent float64 `json:"otherPercent"`
}

// Percentiles of a distribution, in milliseconds.
type Percentiles struct {
	P50     float64 `json:"p50"`
	P95     float64 `json:"p95"`
	P99     float64 `json:"p99"`
	Max     float64 `json:"max"`
	Samples uint64  `json:"samples"`
}

// ProcStats is a process's usage over the window.
type ProcStats struct {
	PID        int     `json:"pid,omitempty"`
	CPUPercent float64 `json:"cpuPercent"` // of one core
	CPUSeconds float64 `json:"cpuSeconds"`
	RSSMB      float64 `json:"rssMB"`      // at the end of the window
	RSSStartMB float64 `json:"rssStartMB"` // before anyone joined
	// Server only.
	UsPerForwardedPacket     float64 `json:"usPerForwardedPacket,omitempty"` // every RTP packet received, probes included
	UsPerMediaPacket         float64 `json:"usPerMediaPacket,omitempty"`     // media packets only
	CPUMsPerSubscriberSecond float64 `json:"cpuMsPerSubscriberSecond,omitempty"`
	RSSPerSubscriberKB       float64 `json:"rssPerSubscriberKB,omitempty"`
}

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
		s.VideoBitrate, s.FPS = cfg.VideoBitrate, cfg.FPS
	}
	if cfg.Audio {
		s.AudioBitrate = cfg.AudioBitrate
	}
	win := s.WindowSeconds
	if win <= 0 {
		win = math.SmallestNonzeroFloat64
	}

	// Publishers: what they sent in the window, by server track id.
	tracksInRoom := map[string]int{}
	sentByTrack := map[string]uint64{}
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
			tracksInRoom[p.room]++
			d := b.sent[sd].sub(a.sent[sd])
			sentByTrack[sd.serverID] = d.packets
			s.Sent.Packets += d.packets
			s.Sent.Bitrate += float64(d.bytes) * 8 / win
			s.Sent.Keyframes += d.keyframes
			s.Sent.KeyframeRequests += d.keyReqs
		}
	}
	s.Sent.PacketsPerSecond = float64(s.Sent.Packets) / win
	s.JoinMs = durationPercentiles(joins)

	// Subscribers: what arrived in the window.
	var delay HistSnapshot
	var starts []time.Duration
	mediaStart := r.mediaStart.Load()
	s.SubscriberBitrate.Min = math.Inf(1)
	for _, p := range r.parts {
		if p.c == nil || !p.receive {
			continue
		}
		s.Subscribers++
		s.StreamsExpected += tracksInRoom[p.room] - len(p.senders)
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
			s.Received.ExpectedFromSent += sentByTrack[st.trackID]
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
			s.Received.MediaPackets += stamped
			s.Received.PaddingPackets += padding
			if packets > stamped+padding {
				s.Loss.StampsMissing += packets - stamped - padding
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

func (s senderSnap) sub(o senderSnap) senderSnap {
	return senderSnap{s.packets - o.packets, s.bytes - o.bytes, s.keyframes - o.keyframes, s.keyReqs - o.keyReqs}
}

func dropText(n int64) string {
	if n < 0 {
		return "n/a"
	}
	return strconv.FormatInt(n, 10)
}

// WriteJSON writes the summary as indented JSON.
func (s *Summary) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(s)
}

// WriteTable writes the summary for people.
func (s *Summary) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, f string, a ...any) { fmt.Fprintf(tw, "  %s\t%s\n", k, fmt.Sprintf(f, a...)) }
	fmt.Fprintf(tw, "starling-load %s: %d room(s), %.1f s measured\n", s.Preset, s.Rooms, s.WindowSeconds)
	media := ""
	if s.VideoBitrate > 0 {
		media = fmt.Sprintf("VP8 %s @ %d fps", FormatBitrate(float64(s.VideoBitrate)), s.FPS)
	}
	if s.AudioBitrate > 0 {
		if media != "" {
			media += " + "
		}
		media += "Opus " + FormatBitrate(float64(s.AudioBitrate))
	}
	row("publishers", "%d (%s)", s.Publishers, media)
	fails := ""
	if s.JoinFailures > 0 {
		fails = fmt.Sprintf(", %d FAILED to join", s.JoinFailures)
	}
	row("subscribers", "%d%s", s.Subscribers, fails)
	row("streams", "%d of %d started", s.StreamsStarted, s.StreamsExpected)
	row("sent", "%.0f pkt/s, %s bit/s, %d keyframes (%d requested by the server)",
		s.Sent.PacketsPerSecond, FormatBitrate(s.Sent.Bitrate), s.Sent.Keyframes, s.Sent.KeyframeRequests)
	row("received", "%.0f pkt/s, %d packets; media = %.2f%% of sent × subscribers",
		s.Received.PacketsPerSecond, s.Received.Packets, 100*s.Received.DeliveryRatio)
	if s.Received.PaddingPackets > 0 || s.Received.MediaPackets != s.Received.Packets {
		row("", "%d media packets, %d padding-only (bandwidth probes)", s.Received.MediaPackets, s.Received.PaddingPackets)
	}
	row("layer changes", "%d subscriptionUpdated (%d paused)", s.LayerChanges, s.Pauses)
	row("per-subscriber bitrate", "mean %s, min %s bit/s", FormatBitrate(s.SubscriberBitrate.Mean), FormatBitrate(s.SubscriberBitrate.Min))
	row("packet loss", "%.3f%% (%d of %d; worst stream %.2f%%)", s.Loss.Percent, s.Loss.Lost, s.Loss.Expected, s.Loss.WorstStream)
	if s.Loss.ServerSocketDrops >= 0 || s.Loss.GeneratorSocketDrops >= 0 {
		row("UDP socket drops", "server %s, generator %s (receive buffers full; queued at end: %d / %d bytes)",
			dropText(s.Loss.ServerSocketDrops), dropText(s.Loss.GeneratorSocketDrops),
			s.Loss.ServerRxQueuedBytes, s.Loss.GenRxQueuedBytes)
	}
	if s.Loss.BadPackets > 0 || s.Loss.StampsMissing > 0 {
		row("malformed", "%d unparsable packets, %d non-padding packets without a send stamp", s.Loss.BadPackets, s.Loss.StampsMissing)
	}
	row("forwarding delay", "p50 %.2f  p95 %.2f  p99 %.2f  max %.1f ms", s.DelayMs.P50, s.DelayMs.P95, s.DelayMs.P99, s.DelayMs.Max)
	row("join time", "p50 %.0f  p99 %.0f  max %.0f ms", s.JoinMs.P50, s.JoinMs.P99, s.JoinMs.Max)
	row("media start", "p50 %.0f  p99 %.0f ms after publishing", s.MediaStartMs.P50, s.MediaStartMs.P99)
	if p := s.Server; p != nil {
		row(fmt.Sprintf("server (pid %d)", p.PID), "CPU %.1f%% of one core, RSS %.1f MB (%.1f at start, %+.0f kB per subscriber)",
			p.CPUPercent, p.RSSMB, p.RSSStartMB, p.RSSPerSubscriberKB)
		row("server cost", "%.2f µs per forwarded packet (%.2f per media packet), %.2f CPU-ms per subscriber-second",
			p.UsPerForwardedPacket, p.UsPerMediaPacket, p.CPUMsPerSubscriberSecond)
	} else {
		row("server", "not measured (use --server-pid or --start-server)")
	}
	if p := s.Generator; p != nil {
		row("load generator", "CPU %.1f%% of one core, RSS %.1f MB", p.CPUPercent, p.RSSMB)
	}
	if m := s.Machine; m != nil {
		row("machine", "CPU %.1f%% of %d%% (%d cores); other processes %.1f%%", m.CPUPercent, 100*m.Cores, m.Cores, m.OtherPercent)
	}
	for _, rec := range s.Recordings {
		status := rec.Status
		if rec.Error != "" {
			status += ": " + rec.Error
		}
		row("recording "+rec.Room, "%s (HTTP %d to start, %d to stop in %.0f ms), %d tracks, %d files",
			status, rec.StartStatus, rec.StopStatus, rec.StopMs, rec.Tracks, rec.Files)
		if rec.LocalDir == "" {
			row("", "folder %s not found from here: size unknown", rec.Dir)
			continue
		}
		row("", "%.1f MB in %s", float64(rec.Bytes)/1e6, rec.LocalDir)
		row("", "%.1f s; %d video + %d audio frames written, %d packets dropped by the recorder, %d incomplete frames skipped",
			float64(rec.DurationMs)/1000, rec.VideoFrames, rec.AudioFrames, rec.DroppedPackets, rec.DroppedFrames)
	}
	return tw.Flush()
}

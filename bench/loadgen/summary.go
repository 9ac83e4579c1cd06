package loadgen

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"text/tabwriter"
	"time"
)

// NodeShare is the participants that joined through one node.
type NodeShare struct {
	URL         string `json:"url"`
	Publishers  int    `json:"publishers"`
	Subscribers int    `json:"subscribers"` // receive-only participants
}

// Summary is what a run measured over its window (after the warm-up).
type Summary struct {
	Date         string `json:"date"`
	Preset       string `json:"preset"`
	URL          string `json:"url"`
	Rooms        int    `json:"rooms"`
	Publishers   int    `json:"publishers"`  // joined and publishing
	Subscribers  int    `json:"subscribers"` // joined participants that receive (meeting publishers included)
	JoinFailures int    `json:"joinFailures"`
	// ServerNodes is each server process's usage when several are
	// measured (--server-pid A,B,C); Server is then their sum.
	ServerNodes []ProcStats `json:"serverNodes,omitempty"`
	// Nodes is how the joined participants spread over the URLs, when
	// --url lists several (see spread).
	Nodes         []NodeShare `json:"nodes,omitempty"`
	WindowSeconds float64     `json:"windowSeconds"`

	VideoBitrate int64  `json:"videoBitrate"` // configured, bits/s; 0 = no video
	FPS          int    `json:"fps,omitempty"`
	Codec        string `json:"codec,omitempty"` // video: vp8 or h264
	Simulcast    bool   `json:"simulcast"`       // video sent as layers q/h/f
	AudioBitrate int64  `json:"audioBitrate"`    // configured, bits/s; 0 = no audio
	Mix          bool   `json:"mix,omitempty"`   // receivers got the server's audio mix

	StreamsExpected int `json:"streamsExpected"` // (subscriber, track) pairs
	StreamsStarted  int `json:"streamsStarted"`  // of those, received at least one packet
	// NotStarted names the first of the streams that never started, with
	// the receiver's state (notstarted.go).
	NotStarted []string `json:"notStarted,omitempty"`
	// MutedTracks are audio tracks muted by publishers beyond --speakers:
	// they send, the server does not forward, no stream is expected.
	MutedTracks int `json:"mutedTracks"`

	Sent struct {
		Packets          uint64  `json:"packets"`
		PacketsPerSecond float64 `json:"packetsPerSecond"`
		Bitrate          float64 `json:"bitrate"` // RTP bits/s over all publishers
		Keyframes        uint64  `json:"keyframes"`
		KeyframeRequests uint64  `json:"keyframeRequests"` // PLI/FIR from the server
	} `json:"sent"`
	// SentLayers is the video each layer carried, over all publishers, low
	// to high (one entry without simulcast).
	SentLayers []LayerSent `json:"sentLayers,omitempty"`
	Received   struct {
		Packets          uint64  `json:"packets"`
		PacketsPerSecond float64 `json:"packetsPerSecond"`
		// ExpectedFromSent is Σ over received streams of the packets its
		// publisher sent in the window: sent × subscribers. A simulcast
		// video stream carries one of the layers, whichever the server
		// picks, so it counts its sequence-number span less padding
		// instead (the SFU's output is contiguous across layer switches).
		ExpectedFromSent uint64  `json:"expectedFromSent"`
		DeliveryRatio    float64 `json:"deliveryRatio"` // MediaPackets / ExpectedFromSent
		// MediaPackets carry a publisher's stamp; for streams judged by
		// sent × subscribers, only those sent inside the window, counted
		// whenever they arrived (a grown delay is not loss). PaddingPackets are
		// padding-only (bandwidth probes); the rest of Packets are other
		// packets without a stamp (see Loss.StampsMissing).
		MediaPackets   uint64 `json:"mediaPackets"`
		PaddingPackets uint64 `json:"paddingPackets"`
	} `json:"received"`
	// LayerChanges counts subscriptionUpdated notifications in the window
	// (the server switching or pausing a subscriber's layer), Pauses those
	// saying "paused".
	LayerChanges uint64 `json:"layerChanges"`
	Pauses       uint64 `json:"pauses"`
	// VideoLayers is what the subscribers' video streams carried in the
	// window, by the size in the keyframes (each packet counts for the
	// last keyframe before it); LayerSwitches counts keyframes whose size
	// differs from the stream's previous one.
	VideoLayers       []LayerReceived `json:"videoLayers,omitempty"`
	LayerSwitches     uint64          `json:"layerSwitches"`
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

	// Padding is the padding-only packets each receiver got;
	// ServerMetrics what the servers' /metrics counted (servermetrics.go).
	Padding       PaddingStats   `json:"padding"`
	ServerMetrics *ServerMetrics `json:"serverMetrics,omitempty"`

	Server    *ProcStats    `json:"server,omitempty"`
	Generator *ProcStats    `json:"generator,omitempty"`
	Machine   *MachineStats `json:"machine,omitempty"`

	// Recordings started with --record, one per room (stopped after the
	// window, so their figures cover the whole run).
	Recordings []RecordingStats `json:"recordings,omitempty"`
}

// LayerSent is one video layer over all publishers in the window.
type LayerSent struct {
	RID              string  `json:"rid,omitempty"` // "" = not simulcast
	Width            int     `json:"width"`
	Height           int     `json:"height"`
	Bitrate          float64 `json:"bitrate"` // RTP bits/s
	PacketsPerSecond float64 `json:"packetsPerSecond"`
	Frames           uint64  `json:"frames"`
	Keyframes        uint64  `json:"keyframes"`
	KeyframeRequests uint64  `json:"keyframeRequests"` // PLI/FIR for this layer
	// FramesOff are frames not sent because the server had turned the
	// layer off (publishLayers, dynacast).
	FramesOff uint64 `json:"framesOff"`
}

// LayerReceived is the video the subscribers received at one size.
type LayerReceived struct {
	Width   int     `json:"width"` // 0×0: before a stream's first keyframe with a size
	Height  int     `json:"height"`
	Packets uint64  `json:"packets"` // media packets in the window
	Percent float64 `json:"percent"` // of all video media packets received
	// StreamsAtEnd are the video streams whose last keyframe had this size.
	StreamsAtEnd int `json:"streamsAtEnd"`
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

func codecName(c string) string {
	if c == CodecH264 {
		return "H.264"
	}
	return "VP8"
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
		media = fmt.Sprintf("%s %s @ %d fps", codecName(s.Codec), FormatBitrate(float64(s.VideoBitrate)), s.FPS)
		if s.Simulcast {
			media += ", simulcast q/h/f"
		}
	}
	if s.AudioBitrate > 0 {
		if media != "" {
			media += " + "
		}
		media += "Opus " + FormatBitrate(float64(s.AudioBitrate))
		if s.Mix {
			media += ", received as the server's mix"
		}
	}
	row("publishers", "%d (%s)", s.Publishers, media)
	fails := ""
	if s.JoinFailures > 0 {
		fails = fmt.Sprintf(", %d FAILED to join", s.JoinFailures)
	}
	row("subscribers", "%d%s", s.Subscribers, fails)
	row("streams", "%d of %d started", s.StreamsStarted, s.StreamsExpected)
	for _, n := range s.NotStarted {
		row("", "not started: %s", n)
	}
	for _, n := range s.Nodes {
		row("node", "%s: %d publishers, %d subscribers", n.URL, n.Publishers, n.Subscribers)
	}
	if s.MutedTracks > 0 {
		row("muted", "%d audio tracks (publishers beyond --speakers): sending silence, not forwarded, not counted in sent", s.MutedTracks)
	}
	row("sent", "%.0f pkt/s, %s bit/s, %d keyframes (%d requested by the server)",
		s.Sent.PacketsPerSecond, FormatBitrate(s.Sent.Bitrate), s.Sent.Keyframes, s.Sent.KeyframeRequests)
	if s.Simulcast {
		for _, l := range s.SentLayers {
			row("sent layer "+l.RID, "%dx%d: %s bit/s, %.0f pkt/s, %d keyframes (%d requested), %d of %d frames off (publishLayers)",
				l.Width, l.Height, FormatBitrate(l.Bitrate), l.PacketsPerSecond, l.Keyframes, l.KeyframeRequests, l.FramesOff, l.Frames+l.FramesOff)
		}
	}
	row("received", "%.0f pkt/s, %d packets; media = %.2f%% of sent × subscribers",
		s.Received.PacketsPerSecond, s.Received.Packets, 100*s.Received.DeliveryRatio)
	if s.Received.PaddingPackets > 0 || s.Received.MediaPackets != s.Received.Packets {
		row("", "%d media packets, %d padding-only (bandwidth probes)", s.Received.MediaPackets, s.Received.PaddingPackets)
	}
	for _, l := range s.VideoLayers {
		name := "before a keyframe"
		if l.Height > 0 {
			name = fmt.Sprintf("%dx%d", l.Width, l.Height)
		}
		row("video received", "%s: %.1f%% of video packets, %d streams there at the end", name, l.Percent, l.StreamsAtEnd)
	}
	row("layer changes", "%d layer switches (keyframe size changes at the subscribers); %d subscriptionUpdated (%d paused)",
		s.LayerSwitches, s.LayerChanges, s.Pauses)
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
	if s.Mix && s.DelayMs.Max == 0 {
		row("forwarding delay", "not measured: the mix carries no send stamps (its delay: docs/mixing.md)")
	} else {
		row("forwarding delay", "p50 %.2f  p95 %.2f  p99 %.2f  max %.1f ms", s.DelayMs.P50, s.DelayMs.P95, s.DelayMs.P99, s.DelayMs.Max)
	}
	row("join time", "p50 %.0f  p99 %.0f  max %.0f ms", s.JoinMs.P50, s.JoinMs.P99, s.JoinMs.Max)
	row("media start", "p50 %.0f  p99 %.0f ms after publishing", s.MediaStartMs.P50, s.MediaStartMs.P99)
	if p := s.Server; p != nil {
		name := fmt.Sprintf("server (pid %d)", p.PID)
		if len(s.ServerNodes) > 1 {
			name = fmt.Sprintf("servers (%d nodes)", len(s.ServerNodes))
		}
		row(name, "CPU %.1f%% of one core, RSS %.1f MB (%.1f at start, %+.0f kB per subscriber)",
			p.CPUPercent, p.RSSMB, p.RSSStartMB, p.RSSPerSubscriberKB)
		row("server cost", "%.2f µs per forwarded packet (%.2f per media packet), %.2f CPU-ms per subscriber-second",
			p.UsPerForwardedPacket, p.UsPerMediaPacket, p.CPUMsPerSubscriberSecond)
		for _, n := range s.ServerNodes {
			row(fmt.Sprintf("  node (pid %d)", n.PID), "CPU %.1f%% of one core (%.2f s), RSS %.1f MB", n.CPUPercent, n.CPUSeconds, n.RSSMB)
		}
	} else {
		row("server", "not measured (use --server-pid or --start-server)")
	}
	s.writeServerRows(row)
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

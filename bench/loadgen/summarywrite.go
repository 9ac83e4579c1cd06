package loadgen

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
)

// A Summary written out: JSON for tools, a table for people.

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

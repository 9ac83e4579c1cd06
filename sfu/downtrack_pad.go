package sfu

import "github.com/starling-rtc/starling/internal/clock"

// Padding on a down track: the bandwidth prober's packets (prober.go).

// paddingPayload is a padding-only RTP payload: 255 bytes whose last byte
// says all 255 are padding (RFC 3550 5.1). Receivers discard it; congestion
// control counts it.
var paddingPayload = func() []byte {
	b := make([]byte, 255)
	b[254] = 255
	return b
}()

// frameOpenMax is how long a frame whose end has not been forwarded holds
// padding back: a frame open longer lost its end upstream, or its source
// stopped, and waiting for it would keep the track from padding for good.
// Not less: a publisher's pacer spreads a keyframe (a 720p keyframe of
// 100 KB at 2.5 times a 2.5 Mbit/s target takes over 100 ms), and with
// 100 ms here, padding went into the middle of keyframes that took 140 ms
// (the browser test's camera): Chromium then dropped the whole second of
// video that depended on them (14-22 frames of 46).
const frameOpenMax = 1_000_000_000 // ns

// WritePadding sends n padding-only packets in this track's sequence space,
// to probe the subscriber's downlink; it returns how many were sent. The
// track may be paused for bandwidth right now: that is exactly when a probe
// is the only way to learn the downlink has recovered. It need not have
// forwarded media yet (Munger.Pad): its SSRC was negotiated, so the
// receiver knows the stream, and a subscriber whose every video track was
// paused before its first keyframe could otherwise never probe, nor get
// video once its link frees.
func (d *DownTrack) WritePadding(n int) int {
	w, _ := d.writePadding(n)
	return w
}

// writePadding is WritePadding; midFrame reports that it wrote nothing
// because the track is in the middle of forwarding a frame.
//
// Padding takes the next output sequence number. Between two packets of
// one frame it would split the frame: a libwebrtc receiver (Chromium)
// assembles a frame from consecutive sequence numbers, from its first
// packet to its marker bit, and a padding packet in between is no packet
// of the frame, so the frame never completes and the stream freezes until
// a keyframe. libwebrtc's own sender pads a media SSRC only after a
// frame's last packet for this reason. Paused for bandwidth, or waiting
// for a keyframe, the open frame will not continue (the next packet
// forwarded starts a keyframe), so padding goes out.
func (d *DownTrack) writePadding(n int) (sent int, midFrame bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.video || !d.bound || d.paused || d.closed || d.unsupported || d.munger == nil ||
		(d.connected != nil && !d.connected.Load()) {
		return 0, false
	}
	now := clock.Nanos()
	if d.frameOpen && d.current >= 0 && !d.bwPaused && now-d.frameOpenAt < frameOpenMax {
		return 0, true
	}
	for ; sent < n; sent++ {
		seq, ts, ok := d.munger.Pad(now)
		if !ok {
			break
		}
		// In the media's queue, so that probes never overtake media.
		if !d.enqueue(queuedPacket{w: d.writer, seq: seq, ts: ts, ssrc: d.ssrc, pt: d.pt, padding: true}) {
			break
		}
	}
	return sent, false
}

// hasForwarded reports whether the track has forwarded media (not only
// padding): the prober pads such tracks first.
func (d *DownTrack) hasForwarded() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.munger != nil && d.munger.started && !d.munger.padOnly
}

package loadgen

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/protocol"
)

// Publishing a run's media: each publisher's video (simulcast layers or one
// stream) and audio senders, and the interceptors every endpoint uses.

// codecOf maps a video MIME type to the codecs whose keyframe sizes the
// subscribers read; "" for others.
func codecOf(mime string) string {
	switch strings.ToLower(mime) {
	case strings.ToLower(webrtc.MimeTypeVP8):
		return CodecVP8
	case strings.ToLower(webrtc.MimeTypeH264):
		return CodecH264
	}
	return ""
}

// videoCodec is the capability the publishers' video tracks carry.
func (c *Config) videoCodec() webrtc.RTPCodecCapability {
	if c.Codec == CodecH264 {
		return webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: H264Fmtp}
	}
	return webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}
}

// newVideoSender makes a publisher's video track: one layer, or three
// simulcast layers with their sizes announced to the server.
func (r *runner) newVideoSender(name string) (*sender, client.LocalTrack, error) {
	vp := VideoParams{Bitrate: r.cfg.VideoBitrate, FPS: r.cfg.FPS, Width: r.cfg.Width, Height: r.cfg.Height,
		KeyframeInterval: r.cfg.KeyframeInterval}
	s := &sender{video: true, codec: r.cfg.Codec}
	lt := client.LocalTrack{Source: protocol.SourceCamera, Name: "camera"}
	if !r.cfg.simulcast() {
		t, err := webrtc.NewTrackLocalStaticRTP(r.cfg.videoCodec(), "video", name)
		if err != nil {
			return nil, lt, err
		}
		s.track = t
		s.layers = []*videoLayer{{params: vp}}
		lt.Track = t
		lt.OnKeyframeRequest = s.layers[0].requestKeyframe
		return s, lt, nil
	}
	sim, err := client.NewSimulcastTrack(r.cfg.videoCodec(), "video", name, SimulcastRIDs[:]...)
	if err != nil {
		return nil, lt, err
	}
	s.sim = sim
	for i, lp := range layerParams(vp) {
		s.layers = append(s.layers, &videoLayer{rid: SimulcastRIDs[i], params: lp})
		lt.Layers = append(lt.Layers, protocol.LayerHint{RID: SimulcastRIDs[i], Width: lp.Width, Height: lp.Height})
	}
	lt.Simulcast = sim
	// The client reads every encoding's RTCP and says which layer a
	// keyframe request is for.
	lt.OnLayerKeyframeRequest = func(rid string) {
		for _, l := range s.layers {
			if l.rid == rid {
				l.requestKeyframe()
			}
		}
	}
	return s, lt, nil
}

func (r *runner) publishAll(ctx, mediaCtx context.Context, media *sync.WaitGroup) {
	var pubs []*participant
	for _, p := range r.parts {
		if p.publish && p.c != nil {
			pubs = append(pubs, p)
		}
	}
	var seq atomic.Uint64
	forEach(ctx, pubs, r.cfg.JoinConcurrency, func(p *participant) {
		var tracks []client.LocalTrack
		byCID := map[string]*sender{}
		if r.cfg.Video {
			s, lt, err := r.newVideoSender(p.name)
			if err != nil {
				r.cfg.Logger.Warn("video track", "err", err)
				return
			}
			byCID["video"] = s
			tracks = append(tracks, lt)
		}
		if r.cfg.Audio {
			t, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", p.name)
			if err != nil {
				r.cfg.Logger.Warn("audio track", "err", err)
				return
			}
			byCID["audio"] = &sender{track: t}
			tracks = append(tracks, client.LocalTrack{Track: t, Source: protocol.SourceMicrophone, Name: "mic"})
		}
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		published, err := p.c.Publish(pctx, tracks...)
		if err != nil {
			r.cfg.Logger.Warn("publish failed", "participant", p.name, "err", err)
			return
		}
		for _, pub := range published {
			s := byCID[pub.CID]
			if s == nil {
				continue
			}
			s.serverID = pub.ID
			if !s.video && p.index >= r.cfg.Speakers {
				// A listener on stage: microphone muted, track still sending.
				err := p.c.Call(pctx, protocol.MethodMute, protocol.MuteParams{TrackID: pub.ID, Muted: true}, nil)
				if err != nil {
					r.cfg.Logger.Warn("mute failed", "participant", p.name, "err", err)
				} else {
					s.muted = true
				}
			}
			p.senders = append(p.senders, s)
			if !s.video && !s.muted && r.cfg.Mix {
				s.levelID = audioLevelID(pub.Sender) // the mixer mixes the loudest by this level
			}
			seed := uint64(time.Now().UnixNano()) ^ seq.Add(0x9e3779b97f4a7c15)
			media.Add(1)
			go func() {
				defer media.Done()
				if s.video {
					s.runVideo(mediaCtx, seed)
				} else {
					s.runAudio(mediaCtx, r.cfg.AudioBitrate, seed)
				}
			}()
		}
	})
}

// lightInterceptors registers what a WebRTC endpoint needs on the wire (NACK
// both ways, sender and receiver reports, simulcast header extensions,
// transport-wide congestion control feedback) and nothing for local
// statistics.
func lightInterceptors(m *webrtc.MediaEngine, ir *interceptor.Registry) error {
	// The RFC 6464 audio level, as browsers send it (Config.Mix uses it).
	if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: audioLevelURI}, webrtc.RTPCodecTypeAudio); err != nil {
		return err
	}
	if err := webrtc.ConfigureNack(m, ir); err != nil {
		return err
	}
	if err := webrtc.ConfigureRTCPReports(ir); err != nil {
		return err
	}
	if err := webrtc.ConfigureSimulcastExtensionHeaders(m); err != nil {
		return err
	}
	// Starling's client's feedback, not pion's twcc.SenderInterceptor: a
	// goroutine hand-off and four allocations per packet received, which at
	// 300 viewers took the two cores from the server being measured
	// (client/twcc.go, docs/congestion.md).
	return client.ConfigureTWCCFeedback(m, ir)
}

const audioLevelURI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"

// audioLevelID is the negotiated id of the audio level extension (0 = none).
func audioLevelID(sender *webrtc.RTPSender) uint8 {
	for _, e := range sender.GetParameters().HeaderExtensions {
		if e.URI == audioLevelURI && e.ID > 0 && e.ID < 15 {
			return uint8(e.ID)
		}
	}
	return 0
}

// Package loadgen is Starling's load generator: synthetic publishers and
// light subscribers that join a server with the Go client over real WebRTC
// and measure what arrives. cmd/starling-load is its command line; the
// benchmarks under bench/ run it against an in-process server.
package loadgen

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/starling-rtc/starling/auth"
	"github.com/starling-rtc/starling/client"
)

// Presets name the scenarios.
const (
	// PresetWebinar: per room, Publishers (default 1) send audio and video
	// and receive nothing; Subscribers viewers receive everything.
	PresetWebinar = "webinar"
	// PresetMeeting: per room, Publishers each send audio and video
	// (simulcast unless Config.Simulcast says otherwise) and receive every
	// other publisher; Subscribers extra viewers (default 0).
	PresetMeeting = "meeting"
	// PresetAudio: per room, Publishers send audio only and hear each
	// other; Subscribers listeners.
	PresetAudio = "audio"
)

// Video codecs the publishers can send.
const (
	CodecVP8  = "vp8"
	CodecH264 = "h264"
)

// Config is one load run.
type Config struct {
	// URL is the signaling WebSocket, ws://127.0.0.1:7900/v1/rtc, or
	// several nodes' comma-separated: publishers join the first, the
	// others are spread over all of them in turn (see spread).
	URL    string
	Preset string
	Rooms  int
	// PinRooms joins each room's participants all through one of URL's
	// nodes, the rooms in turn (see spread).
	PinRooms    bool
	Publishers  int // per room; -1 = the preset's default
	Subscribers int // receive-only participants per room; -1 = the preset's default

	Duration time.Duration // media time, from the first publish to the end
	Warmup   time.Duration // start of Duration not measured (joins settle, keyframes)
	// StartWait, when set, extends the warm-up until every stream has
	// started (at most this long), so a slow machine's late media start
	// is not measured; the window stays Duration−Warmup long.
	StartWait time.Duration

	Video            bool
	Codec            string // CodecVP8 or CodecH264
	VideoBitrate     int64  // per publisher, all simulcast layers together
	FPS              int
	Width, Height    int // the (top layer's) size written in keyframes
	KeyframeInterval time.Duration
	// Simulcast sends video as three layers q/h/f (¼, ½ and the full
	// size; SimulcastShares of VideoBitrate) and follows the server's
	// publishLayers. nil = the preset's default: on for meeting, off
	// otherwise.
	Simulcast    *bool
	Audio        bool
	AudioBitrate int64
	// Speakers is how many publishers per room talk; the audio of the
	// others is muted with the protocol's mute and keeps sending packets,
	// as a browser does with a disabled microphone track (so the server
	// receives it and must not forward it). -1 = every publisher talks.
	Speakers int
	// Mix: every receiving participant gets the room's audio as the
	// server's live mix (join audioMix) instead of each audio track; the
	// talking publishers send the RFC 6464 level the mixer ranks by.
	Mix bool

	JoinConcurrency int // parallel joins
	ServerPID       int // 0 = no server measurement
	// ServerPIDs are more server processes, the other nodes of a cluster
	// (--server-pid A,B,C): the Server figures are then sums over all
	// nodes (CPU per forwarded packet summed over the nodes), and
	// Summary.ServerNodes has each one.
	ServerPIDs []int

	// Keys are the server's API keys: with any, every participant joins
	// with a token minted from the first key (and the recording API gets
	// one with the record grant). None = an open server.
	Keys auth.Keys
	// Record starts a room recording of every room once its participants
	// have joined (POST /v1/rooms/{room}/recordings, before any media) and
	// stops it after the measured window; the summary reports what was
	// written. A start the server does not answer with 2xx fails the run.
	Record bool
	// RecordStopAfter, if positive and shorter than Duration, stops the
	// recordings that long after the first publish, while the load goes
	// on, so the measured window can include the cost of stopping
	// (finalising the files). 0 = stop after the window.
	RecordStopAfter time.Duration
	// RecordToken is the bearer token for the recording API; default: one
	// minted from Keys, or none (an open server accepts loopback clients).
	RecordToken string
	// APIURL is the server's HTTP base URL; default: URL's host (ws → http).
	APIURL string

	Progress io.Writer // one line per second; nil = quiet
	Logger   *slog.Logger
}

// DefaultConfig returns the defaults of the command line.
func DefaultConfig() Config {
	return Config{
		URL: "ws://127.0.0.1:7900/v1/rtc", Preset: PresetWebinar, Rooms: 1,
		Publishers: -1, Subscribers: -1, Speakers: -1,
		Duration: 30 * time.Second, Warmup: 3 * time.Second,
		Video: true, Codec: CodecVP8, VideoBitrate: 2_500_000, FPS: 30, Width: 1280, Height: 720,
		KeyframeInterval: 2 * time.Second, Audio: true, AudioBitrate: 48_000,
		JoinConcurrency: 4,
	}
}

// normalize applies the preset's defaults and checks the configuration.
func (c *Config) normalize() error {
	c.Preset = strings.ToLower(c.Preset)
	var pubs, subs int
	simulcast := false
	switch c.Preset {
	case PresetWebinar:
		pubs, subs = 1, 10
	case PresetMeeting:
		pubs, subs = 4, 0
		simulcast = true
	case PresetAudio:
		pubs, subs = 4, 20
		c.Video = false
	default:
		return fmt.Errorf("preset %q: want meeting, webinar or audio", c.Preset)
	}
	if c.Simulcast != nil {
		simulcast = *c.Simulcast
	}
	simulcast = simulcast && c.Video
	c.Simulcast = &simulcast
	c.Codec = strings.ToLower(c.Codec)
	if c.Codec == "" {
		c.Codec = CodecVP8
	}
	if c.Publishers < 0 {
		c.Publishers = pubs
	}
	if c.Subscribers < 0 {
		c.Subscribers = subs
	}
	if c.Speakers < 0 || c.Speakers > c.Publishers {
		c.Speakers = c.Publishers
	}
	var errs []string
	bad := func(f string, a ...any) { errs = append(errs, fmt.Sprintf(f, a...)) }
	if len(c.urls()) == 0 {
		bad("no server URL")
	}
	if c.Rooms < 1 {
		bad("rooms %d: want at least 1", c.Rooms)
	}
	if c.Publishers < 1 {
		bad("publishers %d: want at least 1", c.Publishers)
	}
	if c.Preset == PresetWebinar && c.Subscribers < 1 {
		bad("a webinar needs at least 1 subscriber")
	}
	if c.Preset == PresetMeeting && c.Publishers < 2 && c.Subscribers < 1 {
		bad("a meeting needs 2 publishers or a subscriber")
	}
	if !c.Video && !c.Audio {
		bad("neither audio nor video: nothing to send")
	}
	if c.Duration <= 0 {
		bad("duration %v: must be positive", c.Duration)
	}
	if c.Warmup < 0 || c.Warmup >= c.Duration {
		bad("warmup %v: must be shorter than the duration %v", c.Warmup, c.Duration)
	}
	if c.Video {
		if c.FPS < 1 || c.FPS > 240 {
			bad("fps %d: want 1 to 240", c.FPS)
		}
		if c.VideoBitrate < 10_000 {
			bad("video bit rate %d: want at least 10k", c.VideoBitrate)
		}
		if c.Width < 16 || c.Width > 16383 || c.Height < 16 || c.Height > 16383 {
			bad("video size %dx%d: want 16 to 16383 (VP8's 14 bits)", c.Width, c.Height)
		}
		if simulcast && (c.Width < 64 || c.Height < 64) {
			bad("video size %dx%d: simulcast's lowest layer is a quarter of it, want at least 64x64", c.Width, c.Height)
		}
		switch c.Codec {
		case CodecVP8:
		case CodecH264:
			if c.Width%2 != 0 || c.Height%2 != 0 {
				bad("video size %dx%d: H.264 (4:2:0) needs even sizes", c.Width, c.Height)
			}
		default:
			bad("codec %q: want vp8 or h264", c.Codec)
		}
		if c.KeyframeInterval <= 0 {
			bad("keyframe interval must be positive")
		}
	}
	if c.Audio && (c.AudioBitrate < 6_000 || c.AudioBitrate > 510_000) {
		bad("audio bit rate %d: Opus goes from 6k to 510k", c.AudioBitrate)
	}
	if c.RecordStopAfter < 0 || (c.RecordStopAfter > 0 && (!c.Record || c.RecordStopAfter >= c.Duration)) {
		bad("record-stop-after %v: needs --record and must be shorter than the duration %v", c.RecordStopAfter, c.Duration)
	}
	if c.JoinConcurrency < 1 {
		c.JoinConcurrency = 1
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// serverPIDs lists every server process measured.
func (c *Config) serverPIDs() []int {
	if c.ServerPID <= 0 {
		return nil
	}
	return append([]int{c.ServerPID}, c.ServerPIDs...)
}

// urls lists the nodes of URL.
func (c *Config) urls() []string { return client.ServerURLs(c.URL) }

// spread assigns each participant its node: publishers join through the
// first URL (the origin of the room's media, as in a webinar whose
// presenter is on one node), receive-only participants go round-robin
// over all the URLs, the first included, in the order listed, so viewers
// split evenly and the same run always puts the same viewer on the same
// node.
//
// With pinRooms, each room instead joins one node, whole: the rooms in
// turn over the URLs (rooms pinned to nodes, as without a cluster; the
// baseline of the relay's cost at the same load per node).
func spread(urls []string, parts []*participant, pinRooms bool) {
	if len(urls) == 0 {
		return
	}
	if pinRooms {
		node := map[string]string{}
		for _, p := range parts {
			u, ok := node[p.room]
			if !ok {
				u = urls[len(node)%len(urls)]
				node[p.room] = u
			}
			p.url = u
		}
		return
	}
	viewer := 0
	for _, p := range parts {
		if p.publish {
			p.url = urls[0]
			continue
		}
		p.url = urls[viewer%len(urls)]
		viewer++
	}
}

// nodeShares counts the joined participants per node, in urls' order.
func nodeShares(urls []string, parts []*participant) []NodeShare {
	out := make([]NodeShare, len(urls))
	at := map[string]int{}
	for i, u := range urls {
		out[i].URL, at[u] = u, i
	}
	for _, p := range parts {
		i, ok := at[p.url]
		if p.c == nil || !ok {
			continue
		}
		if p.publish {
			out[i].Publishers++
		} else {
			out[i].Subscribers++
		}
	}
	return out
}

// simulcast says whether video goes out as simulcast layers (after normalize).
func (c *Config) simulcast() bool { return c.Simulcast != nil && *c.Simulcast }

// publishersReceive says whether publishers subscribe to the others.
func (c *Config) publishersReceive() bool { return c.Preset != PresetWebinar }

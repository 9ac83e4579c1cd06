package browsertest

import (
	"context"
	"fmt"
	"math"
	"net/url"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/server"
	"github.com/thesyncim/gopus"
)

// goTone joins a Go participant that sends a sine tone as Opus with the
// RFC 6464 level a browser attaches, so the room ranks it as a speaker.
func goTone(t *testing.T, srv *server.Server, room, name string, freq float64) {
	t.Helper()
	const levelURI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
	api, err := client.LoopbackAPIWith(nil, func(m *webrtc.MediaEngine, ir *interceptor.Registry) error {
		if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: levelURI}, webrtc.RTPCodecTypeAudio); err != nil {
			return err
		}
		return webrtc.RegisterDefaultInterceptors(m, ir)
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, "ws://"+srv.Addr()+"/v1/rtc", room, client.Options{Name: name, API: api})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "mic", name)
	if err != nil {
		t.Fatal(err)
	}
	pubs, err := c.Publish(ctx, client.LocalTrack{Track: track, Source: protocol.SourceMicrophone})
	if err != nil {
		t.Fatal(err)
	}
	var ext uint8
	for _, e := range pubs[0].Sender.GetParameters().HeaderExtensions {
		if e.URI == levelURI {
			ext = uint8(e.ID)
		}
	}
	enc, err := gopus.NewEncoder(gopus.EncoderConfig{SampleRate: 48000, Channels: 1, Application: gopus.ApplicationVoIP})
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		pcm, out := make([]float32, 960), make([]byte, 1500)
		phase := 0.0
		for seq := uint16(0); ; seq++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			for i := range pcm {
				pcm[i] = float32(0.2 * math.Sin(phase))
				phase += 2 * math.Pi * freq / 48000
			}
			n, err := enc.Encode(pcm, out)
			if err != nil {
				return
			}
			pkt := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: uint32(seq) * 960}, Payload: out[:n]}
			if ext != 0 {
				_ = pkt.Header.SetExtension(ext, []byte{17 | 0x80}) // -17 dBov, voice
			}
			if track.WriteRTP(pkt) != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
}

// mixStateJS: the page's remote audio tracks (the mix, others), its
// <audio> elements (playing), and the audio packets it received.
const mixStateJS = `(async () => {
  const c = window.starling?.client;
  const out = {mix: 0, others: 0, audios: 0, playing: 0, packets: 0, mixSource: c?.mixTrack?.source ?? ''};
  if (!c) return out;
  for (const rt of c.remoteTracks.values()) {
    if (rt.kind !== 'audio') continue;
    if (rt.participantId === 'mix') out.mix++; else out.others++;
  }
  for (const a of document.querySelectorAll('#audio-sink audio')) {
    out.audios++;
    if (!a.paused && a.srcObject?.getAudioTracks()[0]?.readyState === 'live') out.playing++;
  }
  if (c.subscriber) (await c.subscriber.getStats()).forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'audio') out.packets += s.packetsReceived || 0;
  });
  return out;
})()`

type mixState struct {
	Mix       int    `json:"mix"`
	Others    int    `json:"others"`
	Audios    int    `json:"audios"`
	Playing   int    `json:"playing"`
	Packets   int    `json:"packets"`
	MixSource string `json:"mixSource"`
}

// TestAudioMixPage: a page joined with the audio mix on (?mix=1, the
// Settings checkbox) has exactly one remote audio track, the mix, and
// plays it, while two Go participants speak; unticking the checkbox brings
// their two tracks back.
func TestAudioMixPage(t *testing.T) {
	inPageLane(t)
	b := launchChromium(t)
	srv := startServer(t)
	const room = "browser-mix"
	goTone(t, srv, room, "tone-a", 440)
	goTone(t, srv, room, "tone-b", 700)
	p := b.newPage("listener")
	u := fmt.Sprintf("http://%s/r/%s?name=%s&autojoin=1&mix=1", srv.Addr(), url.PathEscape(room), url.QueryEscape("Lis"))
	p.do(10*time.Second, chromedp.Navigate(u))
	waitFor(p, "body[data-status=joined]", 10*time.Second, `document.body.dataset.status`, func(s string) bool { return s == "joined" })

	st, d := waitFor(p, "one remote audio track, the mix, playing with packets", 20*time.Second, mixStateJS, func(s mixState) bool {
		return s.Mix == 1 && s.Playing == 1 && s.Packets > 50
	})
	t.Logf("mix playing after %v: %+v", d.Round(time.Millisecond), st)
	if st.Others != 0 || st.Audios != 1 || st.MixSource != "mix" {
		t.Fatalf("a page on the mix should have exactly one remote audio track (the mix): %+v", st)
	}

	var clicked bool
	p.mustEval(`(document.querySelector('#audio-mix').click(), true)`, &clicked)
	st, d = waitFor(p, "the two individual audio tracks back, the mix gone", 20*time.Second, mixStateJS, func(s mixState) bool {
		return s.Mix == 0 && s.Others == 2 && s.Playing == 2
	})
	t.Logf("individual tracks back %v after unticking the mix: %+v", d.Round(time.Millisecond), st)
}

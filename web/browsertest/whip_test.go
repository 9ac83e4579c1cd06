package browsertest

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/server"
)

// whipPage is a WHIP/WHEP client as any web developer would write it: only
// fetch and RTCPeerConnection, no Starling code. It is served from an
// origin of its own, so the browser's CORS preflight is part of the test.
const whipPage = `<!doctype html>
<meta charset="utf-8"><title>plain WHIP/WHEP</title>
<video id="v" autoplay muted playsinline></video>
<script>
async function gathered(pc) {
  if (pc.iceGatheringState === 'complete') return;
  await new Promise((resolve) => {
    pc.addEventListener('icegatheringstatechange', () => { if (pc.iceGatheringState === 'complete') resolve(); });
    setTimeout(resolve, 5000);
  });
}
async function exchange(pc, url) {
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  const res = await fetch(url, {method: 'POST', headers: {'Content-Type': 'application/sdp'}, body: pc.localDescription.sdp});
  const body = await res.text();
  if (res.status !== 201) throw new Error('POST ' + url + ': ' + res.status + ' ' + body);
  await pc.setRemoteDescription({type: 'answer', sdp: body});
  return {location: res.headers.get('Location'), etag: res.headers.get('ETag')};
}
window.whip = {
  async publish(url) {
    const media = await navigator.mediaDevices.getUserMedia({video: {width: 640, height: 360}, audio: true});
    const pc = new RTCPeerConnection();
    for (const t of media.getTracks()) pc.addTransceiver(t, {direction: 'sendonly'});
    window.pub = pc;
    return exchange(pc, url);
  },
  async watch(url, videos = 1) {
    const pc = new RTCPeerConnection();
    for (let i = 0; i < videos; i++) pc.addTransceiver('video', {direction: 'recvonly'});
    pc.addTransceiver('audio', {direction: 'recvonly'});
    const stream = new MediaStream();
    pc.ontrack = (e) => { stream.addTrack(e.track); document.getElementById('v').srcObject = stream; };
    window.sub = pc;
    return exchange(pc, url);
  },
  async end(base, location) {
    return (await fetch(base + location, {method: 'DELETE'})).status;
  },
  async inbound() {
    const out = {framesDecoded: 0, frameWidth: 0, audioPackets: 0};
    if (!window.sub) return out;
    (await window.sub.getStats()).forEach((s) => {
      if (s.type !== 'inbound-rtp') return;
      if (s.kind === 'video') { out.framesDecoded += s.framesDecoded || 0; out.frameWidth = Math.max(out.frameWidth, s.frameWidth || 0); }
      else out.audioPackets += s.packetsReceived || 0;
    });
    return out;
  },
};
</script>`

type whipResult struct {
	Location string `json:"location"`
	ETag     string `json:"etag"`
}

type whepInbound struct {
	FramesDecoded int `json:"framesDecoded"`
	FrameWidth    int `json:"frameWidth"`
	AudioPackets  int `json:"audioPackets"`
}

// whipPageServer serves the plain WHIP/WHEP page from an origin of its
// own and runs a server that allows that origin.
func whipPageServer(t *testing.T) (*httptest.Server, *server.Server) {
	t.Helper()
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(whipPage))
	}))
	t.Cleanup(plain.Close)
	return plain, startServer(t, func(c *config.Config) { c.HTTP.AllowedOrigins = []string{plain.URL} })
}

// TestWHIPAndWHEPInChromium: a plain page publishes its camera over WHIP
// and a web-app page shows and decodes it; a second plain page watches the
// room over WHEP and decodes it; DELETE removes the publisher's tile.
func TestWHIPAndWHEPInChromium(t *testing.T) {
	inPageLane(t)
	b := launchChromium(t)
	plain, srv := whipPageServer(t)
	base := "http://" + srv.Addr()
	const room = "whip-browser"

	app := b.newPage("app")
	joinRoom(app, base, room, "Watcher")

	pub := b.newPage("whip")
	pub.do(10*time.Second, chromedp.Navigate(plain.URL))
	var res whipResult
	pub.mustEval(`whip.publish(`+jsString(base+"/v1/rooms/"+room+"/whip?name=Browser%20WHIP")+`)`, &res)
	if res.Location == "" || res.ETag == "" {
		t.Fatalf("WHIP from the page: Location %q, ETag %q (not exposed by CORS?)", res.Location, res.ETag)
	}
	// The app shows the WHIP publisher as a tile named from ?name= and decodes it.
	tiles, _ := waitFor(app, "a tile named Browser WHIP playing video", 20*time.Second, remoteTilesJS, func(ts []tile) bool {
		for _, tl := range ts {
			if tl.Name == "Browser WHIP" && tl.VideoWidth > 0 {
				return true
			}
		}
		return false
	})
	t.Logf("app tiles: %+v", tiles)
	waitForMedia(app, 15*time.Second)

	viewer := b.newPage("whep")
	viewer.do(10*time.Second, chromedp.Navigate(plain.URL))
	var wres whipResult
	viewer.mustEval(`whip.watch(`+jsString(base+"/v1/rooms/"+room+"/whep?participant=Browser%20WHIP&name=Browser%20WHEP")+`)`, &wres)
	in, d := waitFor(viewer, "WHEP video decoded and audio received", 20*time.Second, `whip.inbound()`, func(s whepInbound) bool {
		return s.FramesDecoded > 30 && s.FrameWidth > 0 && s.AudioPackets > 0
	})
	t.Logf("WHEP page decoding after %v: %+v", d.Round(time.Millisecond), in)
	viewer.screenshot("whep-chromium.png")

	// A player of many videos: 16 receive sections make Chromium's offer
	// about 80 KB, which the 64 KiB body limit refused with 413.
	grid := b.newPage("whep-grid")
	grid.do(10*time.Second, chromedp.Navigate(plain.URL))
	var gres whipResult
	grid.mustEval(`whip.watch(`+jsString(base+"/v1/rooms/"+room+"/whep?participant=Browser%20WHIP&name=Browser%20grid")+`, 16)`, &gres)
	waitFor(grid, "WHEP video decoded in a 16-video offer", 20*time.Second, `whip.inbound()`, func(s whepInbound) bool {
		return s.FramesDecoded > 30 && s.AudioPackets > 0
	})

	var status int
	pub.mustEval(`whip.end(`+jsString(base)+`, `+jsString(res.Location)+`)`, &status)
	if status != http.StatusOK {
		t.Fatalf("DELETE from the page: %d", status)
	}
	waitFor(app, "the WHIP tile to go", 10*time.Second, remoteTilesJS, func(ts []tile) bool {
		for _, tl := range ts {
			if tl.Name == "Browser WHIP" {
				return false
			}
		}
		return true
	})
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	out := []byte{'"'}
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			out = append(out, '\\', byte(r))
		case r < 0x20:
			out = append(out, []byte(`\u00`)...)
			out = append(out, "0123456789abcdef"[r>>4], "0123456789abcdef"[r&15])
		default:
			out = append(out, string(r)...)
		}
	}
	return string(append(out, '"'))
}

// firefoxWHIP is what firefox_whip.mjs prints.
type firefoxWHIP struct {
	OK           bool        `json:"ok"`
	Error        string      `json:"error"`
	UserAgent    string      `json:"userAgent"`
	Publish      whipResult  `json:"publish"`
	Watch        whipResult  `json:"watch"`
	Inbound      whepInbound `json:"inbound"`
	DecodingMS   int         `json:"decodingMs"`
	DeleteStatus int         `json:"deleteStatus"`
	Logs         []string    `json:"logs"`
}

// TestWHIPAndWHEPInFirefox is TestWHIPAndWHEPInChromium's plain page in
// Debian's firefox-esr (driven by node ../testdata/node/firefox_whip.mjs):
// it publishes over WHIP, the server's room shows the publisher, a second
// window watches over WHEP and decodes, and DELETE ends the session.
func TestWHIPAndWHEPInFirefox(t *testing.T) {
	parallelUnlessRace(t) // judges no timing; mostly waits for Firefox to start
	firefox, node := findFirefox(t)
	plain, srv := whipPageServer(t)
	base := "http://" + srv.Addr()
	const room = "whip-firefox"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "firefox_whip.mjs", plain.URL,
		base+"/v1/rooms/"+room+"/whip?name=Firefox%20WHIP", base+"/v1/rooms/"+room+"/whep?name=Firefox%20WHEP")
	cmd.Dir = nodeDir
	cmd.Env = append(os.Environ(), "STARLING_FIREFOX="+firefox)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var r firefoxWHIP
	if jerr := json.Unmarshal([]byte(lines[len(lines)-1]), &r); jerr != nil {
		t.Fatalf("firefox_whip.mjs: %v (exit: %v)\nstdout:\n%s\nstderr:\n%s", jerr, err, out, tail(stderr.String(), 4000))
	}
	if !r.OK {
		t.Fatalf("Firefox WHIP/WHEP failed: %s\npage logs:\n  %s\nstderr:\n%s", r.Error, strings.Join(r.Logs, "\n  "), tail(stderr.String(), 3000))
	}
	t.Logf("%s: WHEP decoding %+v after %d ms", r.UserAgent, r.Inbound, r.DecodingMS)
	if r.Publish.Location == "" || r.Publish.ETag == "" || r.Watch.Location == "" {
		t.Errorf("Location/ETag not visible to the page: publish %+v, watch %+v", r.Publish, r.Watch)
	}
	if r.DeleteStatus != http.StatusOK {
		t.Errorf("DELETE from Firefox: %d", r.DeleteStatus)
	}
}

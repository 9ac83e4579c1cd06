package browsertest

import (
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The app's test hooks (web/static/app.js): window.starling = {client,
// state}, body[data-status], and one "#grid .tile.remote" per other
// participant with data-participant-id.

// inboundJS sums the subscriber connection's inbound-rtp stats.
const inboundJS = `(async () => {
  const out = {framesDecoded: 0, frameWidth: 0, frameHeight: 0, audioPackets: 0};
  const pc = window.starling?.client?.subscriber;
  if (!pc) return out;
  (await pc.getStats()).forEach((s) => {
    if (s.type !== 'inbound-rtp') return;
    if (s.kind === 'video') {
      out.framesDecoded += s.framesDecoded || 0;
      out.frameWidth = Math.max(out.frameWidth, s.frameWidth || 0);
      out.frameHeight = Math.max(out.frameHeight, s.frameHeight || 0);
    } else if (s.kind === 'audio') {
      out.audioPackets += s.packetsReceived || 0;
    }
  });
  return out;
})()`

type inbound struct {
	FramesDecoded int `json:"framesDecoded"`
	FrameWidth    int `json:"frameWidth"`
	FrameHeight   int `json:"frameHeight"`
	AudioPackets  int `json:"audioPackets"`
}

// remoteTilesJS lists the remote tiles: participant id, shown name, and the
// size of the video the tile plays.
const remoteTilesJS = `[...document.querySelectorAll('#grid .tile.remote')].map((el) => {
  const v = el.querySelector('video');
  return {id: el.dataset.participantId, name: el.querySelector('.name')?.textContent ?? '',
    videoWidth: v?.videoWidth ?? 0, videoHeight: v?.videoHeight ?? 0};
})`

type tile struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	VideoWidth  int    `json:"videoWidth"`
	VideoHeight int    `json:"videoHeight"`
}

func findTile(tiles []tile, id string) (tile, bool) {
	for _, t := range tiles {
		if t.ID == id {
			return t, true
		}
	}
	return tile{}, false
}

// joinRoom opens /r/{room}?name=…&autojoin=1 and waits until the app has joined.
func joinRoom(p *page, base, room, name string) string {
	p.t.Helper()
	u := fmt.Sprintf("%s/r/%s?name=%s&autojoin=1", base, url.PathEscape(room), url.QueryEscape(name))
	p.do(10*time.Second, chromedp.Navigate(u))
	waitFor(p, "body[data-status=joined]", 10*time.Second,
		`document.body.dataset.status`, func(s string) bool { return s == "joined" })
	var id string
	p.mustEval(`window.starling.state.participantId`, &id)
	if id == "" {
		p.t.Fatalf("page %s joined without a participant id", p.name)
	}
	return id
}

// waitForTile waits until p shows a remote tile for participant id.
func waitForTile(p *page, id string, timeout time.Duration) tile {
	p.t.Helper()
	tiles, _ := waitFor(p, "remote tile of "+id, timeout, remoteTilesJS, func(ts []tile) bool {
		_, ok := findTile(ts, id)
		return ok
	})
	t, _ := findTile(tiles, id)
	return t
}

// waitForMedia waits until p decodes video and receives audio.
func waitForMedia(p *page, timeout time.Duration) inbound {
	p.t.Helper()
	s, d := waitFor(p, "inbound video frames decoded and audio packets received", timeout, inboundJS,
		func(s inbound) bool { return s.FramesDecoded > 0 && s.AudioPackets > 0 })
	p.t.Logf("page %s: media flowing after %v: %+v", p.name, d.Round(time.Millisecond), s)
	return s
}

// TestTwoPageCall: two Chromium pages join one room through the app's room
// link; each shows the other's tile with the right name and decodes the other's
// video and receives its audio; a screenshot of the call is saved; when A
// clicks Leave, B's tile of A disappears within 2 s.
func TestTwoPageCall(t *testing.T) {
	start := time.Now()
	b := launchChromium(t)
	srv := startServer(t)
	base := "http://" + srv.Addr()
	const room = "browser-call"

	pa, pb := b.newPage("A"), b.newPage("B")
	idA := joinRoom(pa, base, room, "Alice")
	idB := joinRoom(pb, base, room, "Bob")
	t.Logf("joined: A=%s B=%s after %v", idA, idB, time.Since(start).Round(time.Millisecond))

	if tl := waitForTile(pa, idB, 10*time.Second); tl.Name != "Bob" {
		t.Errorf("A's tile of B is named %q, want %q", tl.Name, "Bob")
	}
	if tl := waitForTile(pb, idA, 10*time.Second); tl.Name != "Alice" {
		t.Errorf("B's tile of A is named %q, want %q", tl.Name, "Alice")
	}
	waitForMedia(pa, 15*time.Second)
	waitForMedia(pb, 15*time.Second)

	// The tile plays the video (not only the decoder has it), then the screenshot.
	for _, c := range []struct {
		p  *page
		id string
	}{{pa, idB}, {pb, idA}} {
		waitFor(c.p, "remote tile video playing", 10*time.Second, remoteTilesJS, func(ts []tile) bool {
			tl, ok := findTile(ts, c.id)
			return ok && tl.VideoWidth > 0
		})
	}
	pb.screenshot("two-party-call-chromium.png")

	// A leaves with the Leave button; B's tile of A must go within 2 s.
	pa.do(5*time.Second, chromedp.Click(chromedp.CSS("#leave")))
	left := time.Now()
	_, d := waitFor(pb, "tile of A removed", 2*time.Second, remoteTilesJS, func(ts []tile) bool {
		_, ok := findTile(ts, idA)
		return !ok
	})
	t.Logf("B removed A's tile %v after A clicked Leave", d.Round(time.Millisecond))
	waitFor(pa, "A's page shows it left", 5*time.Second, `document.body.dataset.status`,
		func(s string) bool { return s == "left" })
	if since := time.Since(left); since > 2*time.Second {
		t.Logf("note: A's own page took %v to settle", since)
	}
	t.Logf("whole test: %v", time.Since(start).Round(time.Millisecond))
}

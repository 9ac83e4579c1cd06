package browsertest

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/starling-rtc/starling/auth"
	"github.com/starling-rtc/starling/config"
)

// TestLandingLobbyAndJoin walks the app as a person does, on a phone-sized
// viewport and with the keyboard: the landing page asks for a room and a
// name, Continue opens /r/{room} with a camera preview and device pickers,
// Join enters the call. Screenshots of each page are saved.
func TestLandingLobbyAndJoin(t *testing.T) {
	inPageLane(t)
	start := time.Now()
	b := launchChromium(t)
	srv := startServer(t)
	base := "http://" + srv.Addr()
	p := b.newPage("A")
	p.do(10*time.Second,
		chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile, chromedp.EmulateScale(2)),
		chromedp.Navigate(base+"/"),
	)
	waitFor(p, "landing page", 5*time.Second, `document.body.dataset.view`, func(v string) bool { return v == "landing" })
	var focused string
	p.mustEval(`document.activeElement.id`, &focused)
	if focused != "room" {
		t.Errorf("landing page focuses %q, want the room field", focused)
	}
	p.screenshot("landing-phone.png")

	// Type the room, Tab to the name (past the Random button), Enter submits.
	p.do(10*time.Second,
		chromedp.SendKeys(chromedp.CSS("#room"), "design review"),
		pressKey("Tab", "Tab", 9), pressKey("Tab", "Tab", 9),
		chromedp.SendKeys(chromedp.CSS("#name"), "Ann Lee\r"),
	)
	waitFor(p, "lobby with the camera preview playing and devices listed", 10*time.Second, `(() => {
	  const v = document.querySelector('#preview');
	  return document.body.dataset.view === 'lobby' && location.pathname === '/r/design%20review' &&
	    v.videoWidth > 0 && document.querySelector('#camera-select').options.length > 0 &&
	    document.querySelector('#lobby-name').value === 'Ann Lee';
	})()`, func(ok bool) bool { return ok })
	var title string
	p.mustEval(`document.querySelector('#lobby-title').textContent`, &title)
	if title != "Join “design review”" {
		t.Errorf("lobby title %q", title)
	}
	p.screenshot("lobby-phone.png")

	// The camera toggle in the lobby stops the preview; on again restarts it.
	p.do(5*time.Second, chromedp.Click(chromedp.CSS("#lobby-cam")))
	waitFor(p, "preview off", 5*time.Second, `!document.querySelector('#preview-off').hidden`, func(ok bool) bool { return ok })
	p.do(5*time.Second, chromedp.Click(chromedp.CSS("#lobby-cam")))
	waitFor(p, "preview on again", 5*time.Second, `document.querySelector('#preview-off').hidden && document.querySelector('#preview').videoWidth > 0`,
		func(ok bool) bool { return ok })

	p.do(5*time.Second, chromedp.Click(chromedp.CSS("#lobby-join")))
	waitFor(p, "joined", 10*time.Second, `document.body.dataset.status`, func(s string) bool { return s == "joined" })
	waitFor(p, "own camera shown and published", 10*time.Second, `(() => {
	  const s = window.starling.state;
	  return document.querySelector('#local-video').videoWidth > 0 && s.published.length === 2 &&
	    s.published.find((t) => t.kind === 'video')?.source === 'camera';
	})()`, func(ok bool) bool { return ok })
	var name string
	p.mustEval(`document.querySelector('#local-name').textContent`, &name)
	if name != "Ann Lee (you)" {
		t.Errorf("local tile name %q", name)
	}
	p.screenshot("alone-in-call-phone.png")
	t.Logf("whole test: %v", time.Since(start).Round(time.Millisecond))
}

// TestJoinErrors: a full room (413) and a bad token (401) end on a page that
// says so in words; a valid token joins.
func TestJoinErrors(t *testing.T) {
	inPageLane(t)
	start := time.Now()
	b := launchChromium(t)
	const key, secret = "APItest", "a-test-secret-that-is-long-enough-0123456789"
	srv := startServer(t, func(c *config.Config) {
		c.Limits.MaxParticipants = 1
		c.Keys = map[string]string{key: secret}
	})
	base := "http://" + srv.Addr()
	token := func(identity string) string {
		claims := auth.Claims{Grants: auth.Grants{Room: "small"}}
		claims.Subject = identity
		tok, err := auth.Issue(key, secret, claims, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	type ended struct {
		Status string `json:"status"`
		Title  string `json:"title"`
		Detail string `json:"detail"`
		Retry  bool   `json:"retry"`
	}
	const endedJS = `({status: document.body.dataset.status, title: document.querySelector('#ended-title').textContent,
	  detail: document.querySelector('#ended-detail').textContent, retry: !document.querySelector('#rejoin').hidden})`
	isEnd := func(e ended) bool { return e.Status == "failed" || e.Status == "left" }

	pa, pb := b.newPage("A"), b.newPage("B")
	pa.do(10*time.Second, chromedp.Navigate(base+"/r/small?name=Ann&autojoin=1&token=not-a-jwt"))
	e, _ := waitFor(pa, "bad token page", 10*time.Second, endedJS, isEnd)
	if e.Status != "failed" || e.Title != "Your link is not valid" || !strings.Contains(e.Detail, "token") || e.Retry {
		t.Errorf("bad token: %+v", e)
	}
	pa.screenshot("error-bad-token.png")

	pa.do(10*time.Second, chromedp.Navigate(base+"/r/small?name=Ann&autojoin=1&token="+token("ann")))
	waitFor(pa, "joined with a valid token", 10*time.Second, `document.body.dataset.status`, func(s string) bool { return s == "joined" })
	pb.do(10*time.Second, chromedp.Navigate(base+"/r/small?name=Bob&autojoin=1&token="+token("bob")))
	e, _ = waitFor(pb, "room full page", 10*time.Second, endedJS, isEnd)
	if e.Status != "failed" || e.Title != "This room is full" || !e.Retry {
		t.Errorf("full room: %+v", e)
	}
	pb.screenshot("error-room-full.png")
	t.Logf("whole test: %v", time.Since(start).Round(time.Millisecond))
}

// TestDeniedCamera: with camera and microphone access denied the app still
// joins (to watch), says why the others can't see or hear you, and offers to
// try again.
func TestDeniedCamera(t *testing.T) {
	inPageLane(t)
	// No fake permission UI: headless Chromium then refuses camera and
	// microphone as a person clicking "Block" would.
	b := launchChromium(t, chromedp.Flag("use-fake-ui-for-media-stream", false), chromedp.Flag("deny-permission-prompts", true))
	srv := startServer(t)
	base := "http://" + srv.Addr()
	p := b.newPage("A")
	joinRoom(p, base, "denied", "Dee")
	type banner struct {
		Shown  bool   `json:"shown"`
		Text   string `json:"text"`
		Action string `json:"action"`
		Error  string `json:"error"`
	}
	bn, _ := waitFor(p, "denied-camera banner", 10*time.Second, `({shown: !document.querySelector('#banner').hidden,
	  text: document.querySelector('#banner-text').textContent, error: window.starling.state.media.error,
	  action: document.querySelector('#banner-action').hidden ? '' : document.querySelector('#banner-action').textContent})`,
		func(b banner) bool { return b.Shown })
	if bn.Error != "NotAllowedError" || !strings.Contains(bn.Text, "can’t see or hear you") || !strings.Contains(bn.Text, "blocked") || bn.Action != "Try again" {
		t.Errorf("banner: %+v", bn)
	}
	p.screenshot("denied-camera.png")
}

// TestReconnect: B's signaling socket drops; B's page says it is
// reconnecting, resumes (same participant) and A keeps seeing and decoding
// B's video.
func TestReconnect(t *testing.T) {
	inPageLane(t)
	start := time.Now()
	pa, pb, _, idB := callOfTwo(t, "browser-reconnect")
	waitForMedia(pa, 15*time.Second)

	// Close the raw WebSocket under the client, as a network drop would.
	pb.mustEval(`window.starling.client._rpc._ws.close(4000, 'test drop'); true`, nil)
	dropped := time.Now()
	waitFor(pb, "reconnecting status", 5*time.Second, `document.body.dataset.status`, func(s string) bool { return s == "reconnecting" || s == "joined" })
	type after struct {
		Status  string `json:"status"`
		ID      string `json:"id"`
		Attempt int    `json:"attempt"`
	}
	st, _ := waitFor(pb, "joined again", 15*time.Second, `({status: document.body.dataset.status, id: window.starling.state.participantId,
	  attempt: window.starling.state.reconnectAttempt})`, func(a after) bool { return a.Status == "joined" })
	t.Logf("B back %v after the drop", time.Since(dropped).Round(time.Millisecond))
	if st.ID != idB {
		t.Errorf("B rejoined as %s, want the resumed participant %s", st.ID, idB)
	}
	var s1 inbound
	pa.mustEval(inboundJS, &s1)
	s2, _ := waitFor(pa, "A still decodes B's video after the reconnection", 10*time.Second, inboundJS,
		func(s inbound) bool { return s.FramesDecoded > s1.FramesDecoded+10 })
	t.Logf("A decoded %d more frames; whole test %v", s2.FramesDecoded-s1.FramesDecoded, time.Since(start).Round(time.Millisecond))
	if tl := waitForTile(pa, idB, time.Second); tl.Name != "Bob" {
		t.Errorf("A's tile of B after the reconnection: %+v", tl)
	}
}

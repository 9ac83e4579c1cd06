package browsertest

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/starling-rtc/starling/config"
)

// TestFailoverToAnotherNode: the app opened with ?servers=A,B joins
// through A; A shuts down; the page carries on through B (a fresh join
// there: two single nodes share no session), publishes its camera again,
// and a viewer page on B shows its tile and decodes its video.
func TestFailoverToAnotherNode(t *testing.T) {
	inPageLane(t)
	start := time.Now()
	b := launchChromium(t)
	nodeA := startServer(t)
	// B takes browsers from A's page (docs/client-js.md: each node must
	// accept the app's origin).
	nodeB := startServer(t, func(c *config.Config) { c.HTTP.AllowedOrigins = []string{"http://" + nodeA.Addr()} })
	const room = "browser-failover"

	viewer := b.newPage("viewer")
	joinRoom(viewer, "http://"+nodeB.Addr(), room, "Vic")

	presenter := b.newPage("presenter")
	servers := nodeA.SignalingURL() + "," + nodeB.SignalingURL()
	presenter.do(10*time.Second, chromedp.Navigate(fmt.Sprintf("http://%s/r/%s?name=Ann&autojoin=1&servers=%s",
		nodeA.Addr(), room, url.QueryEscape(servers))))
	waitFor(presenter, "joined through A", 10*time.Second, `document.body.dataset.status`, func(s string) bool { return s == "joined" })
	var first struct {
		ID  string `json:"id"`
		URL string `json:"url"`
	}
	presenter.mustEval(`({id: window.starling.state.participantId, url: window.starling.client.url})`, &first)
	if first.URL != nodeA.SignalingURL() {
		t.Fatalf("the page joined through %s, want A (%s)", first.URL, nodeA.SignalingURL())
	}
	// The camera is published before A goes: the failover must publish it again.
	waitFor(presenter, "camera published", 10*time.Second,
		`[...window.starling.client.localTracks.values()].filter((l) => l.info).length`, func(n int) bool { return n >= 1 })

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	downAt := time.Now()
	if err := nodeA.Shutdown(ctx); err != nil {
		t.Fatalf("shutting A down: %v", err)
	}
	type now struct {
		Status string `json:"status"`
		ID     string `json:"id"`
		URL    string `json:"url"`
	}
	st, _ := waitFor(presenter, "joined again through B", 20*time.Second,
		`({status: document.body.dataset.status, id: window.starling.state.participantId, url: window.starling.client.url})`,
		// A new participant: two single nodes share no session. (The URL
		// moves to B as soon as A's leave arrives, before the rejoin.)
		func(n now) bool {
			return n.Status == "joined" && n.URL == nodeB.SignalingURL() && n.ID != first.ID && n.ID != ""
		})
	t.Logf("the presenter is back through B %v after A began to shut down", time.Since(downAt).Round(time.Millisecond))
	if tl := waitForTile(viewer, st.ID, 15*time.Second); tl.Name != "Ann" {
		t.Errorf("the viewer's tile of the presenter is named %q", tl.Name)
	}
	waitForMedia(viewer, 20*time.Second)
	viewer.screenshot("failover-viewer-chromium.png")
	t.Logf("whole test: %v", time.Since(start).Round(time.Millisecond))
}

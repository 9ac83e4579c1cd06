package server_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/webrtc/v4"

	"github.com/starling-rtc/starling/auth"
	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/server"
)

func wantCode(t testing.TB, what string, err error, code int) {
	t.Helper()
	var perr *protocol.Error
	if !errors.As(err, &perr) || perr.Code != code || perr.Message == "" {
		t.Fatalf("%s: %v, want protocol error %d with a message", what, err, code)
	}
}

func TestLimitRoomsAndParticipants(t *testing.T) {
	parallel(t)
	srv := startServer(t, func(c *config.Config) {
		withKeys(c)
		c.Limits.MaxRooms = 1
		c.Limits.MaxParticipants = 2
	})
	tok := func(id, room string) string { return token(t, id, auth.Grants{Room: room}, time.Hour) }
	join(t, srv, "one", "a", withToken(tok("a", "one")))
	wantCode(t, "second room", joinErr(t, srv, "two", tok("x", "two"), protocol.CodeTooLarge), protocol.CodeTooLarge)
	join(t, srv, "one", "b", withToken(tok("b", "one")))
	perr := joinErr(t, srv, "one", tok("c", "one"), protocol.CodeTooLarge)
	if !strings.Contains(perr.Message, "full") {
		t.Fatalf("room full message %q", perr.Message)
	}
	// Replacing one's own session in a full room is allowed.
	join(t, srv, "one", "b again", withToken(tok("b", "one")))
	if n := len(srv.Rooms().Room("one").Participants()); n != 2 {
		t.Fatalf("room has %d participants, want 2", n)
	}
}

func TestLimitTracksAndSubscriptions(t *testing.T) {
	parallel(t)
	srv := startServer(t, func(c *config.Config) {
		c.Limits.MaxTracks = 2
		c.Limits.MaxSubscriptions = 1
	})
	const room = "lim"
	// An offer with three tracks is refused.
	greedy := join(t, srv, room, "greedy")
	var tracks []client.LocalTrack
	for i := 0; i < 3; i++ {
		tr, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2},
			fmt.Sprintf("a%d", i), "s")
		if err != nil {
			t.Fatal(err)
		}
		tracks = append(tracks, client.LocalTrack{Track: tr, Source: protocol.SourceMicrophone})
	}
	_, err := greedy.Publish(ctxT(t, 10*time.Second), tracks...)
	wantCode(t, "three tracks", err, protocol.CodeTooLarge)

	// Auto-subscribe stops at the limit; an explicit subscribe beyond it is a 413.
	auto := join(t, srv, room, "auto")
	autoRec := record(auto)
	no := false
	manual := join(t, srv, room, "manual", func(o *client.Options) { o.AutoSubscribe = &no })
	pub := join(t, srv, room, "pub")
	media := publishFake(t, pub) // two tracks: within MaxTracks
	video, audio := media.track("video"), media.track("audio")
	waitFor(t, 15*time.Second, "one track at the auto subscriber", func() bool {
		return len(autoRec.payloads(video.ID))+len(autoRec.payloads(audio.ID)) > 20
	})
	time.Sleep(500 * time.Millisecond)
	if len(autoRec.payloads(video.ID)) > 0 && len(autoRec.payloads(audio.ID)) > 0 {
		t.Fatal("auto subscriber receives two tracks with MaxSubscriptions 1")
	}
	err = manual.Call(ctxT(t, 5*time.Second), protocol.MethodSubscribe, protocol.TrackIDsParams{TrackIDs: []string{video.ID, audio.ID}}, nil)
	wantCode(t, "subscribe to two", err, protocol.CodeTooLarge)
	if err := manual.Call(ctxT(t, 5*time.Second), protocol.MethodSubscribe, protocol.TrackIDsParams{TrackIDs: []string{video.ID}}, nil); err != nil {
		t.Fatalf("subscribe to one: %v", err)
	}
}

// rawWS opens a bare WebSocket to the server.
func rawWS(t testing.TB, srv *server.Server) *websocket.Conn {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.DialContext(ctxT(t, 5*time.Second), srv.SignalingURL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	return ws
}

// TestSignalingFlood: a connection sending far more than its budget gets
// 429s (or, if it floods faster than it reads, is dropped), and another
// connection's round trips stay fast and error-free meanwhile.
func TestSignalingFlood(t *testing.T) {
	timingTest(t) // the calm connection's round trips are judged
	srv := startServer(t, func(c *config.Config) {
		c.Limits.SignalingRate = 30
		c.Limits.SignalingBurst = 60
	})
	calm := join(t, srv, "flood", "calm")
	// A server nobody floods, pinged in turn with the calm connection: it
	// gets what this process gets from the machine at the same moment
	// (the flooder's own goroutines, the other timing tests, other
	// processes), so that what the flood does to the flooded server's
	// other connections is judged apart from a starved process. Judged
	// against the calm pings before the flood, two busy loops beside the
	// suite made a median of 300 ms during the flood against 99 before.
	control := join(t, startServer(t, nil), "flood-control", "calm")
	flood := rawWS(t, srv)
	// Both connections' round trips, sorted: a ping of the calm
	// connection, then one of the control, about 20 pairs a second
	// (within the calm client's budget).
	pings := func(n int) (calmLat, controlLat []time.Duration) {
		ping := func(c *client.Client, what string, i int) time.Duration {
			t0 := time.Now()
			if err := c.Call(ctxT(t, 5*time.Second), protocol.MethodPing, protocol.Empty{}, nil); err != nil {
				t.Fatalf("%s ping %d: %v", what, i, err)
			}
			return time.Since(t0)
		}
		for i := 0; i < n; i++ {
			calmLat = append(calmLat, ping(calm, "calm", i))
			controlLat = append(controlLat, ping(control, "control", i))
			time.Sleep(50 * time.Millisecond)
		}
		slices.Sort(calmLat)
		slices.Sort(controlLat)
		return calmLat, controlLat
	}
	calmBefore, controlBefore := pings(10)

	const n = 2000
	var limited, ok int
	var dropped bool
	var wg sync.WaitGroup
	wg.Add(2)
	start := time.Now()
	go func() { // read the flooder's responses
		defer wg.Done()
		for limited+ok < n {
			_ = flood.SetReadDeadline(time.Now().Add(10 * time.Second))
			var m protocol.Message
			if err := flood.ReadJSON(&m); err != nil {
				dropped = !isTimeoutErr(err)
				return
			}
			switch {
			case m.Error != nil && m.Error.Code == protocol.CodeRateLimited:
				limited++
			case m.Error == nil:
				ok++
			}
		}
	}()
	go func() { // flood as fast as the socket takes it
		defer wg.Done()
		for i := 0; i < n; i++ {
			if err := flood.WriteMessage(websocket.TextMessage, []byte(fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"ping"}`, i))); err != nil {
				return // the server dropped the flooder
			}
		}
	}()
	// Meanwhile the calm connection's pings are answered quickly.
	stalled := meterStalls(t)
	lat, ctl := pings(30)
	stall := stalled()
	median, worst := lat[len(lat)/2], lat[len(lat)-1]
	ctlMedian, ctlWorst := ctl[len(ctl)/2], ctl[len(ctl)-1]
	wg.Wait()
	elapsed := time.Since(start)
	if limit := 60 + int(30*elapsed.Seconds()) + 5; ok > limit {
		t.Fatalf("flooder: %d messages accepted in %v, want at most %d", ok, elapsed, limit)
	}
	if limited == 0 && !dropped {
		t.Fatalf("flooder was neither told 429 nor dropped (%d accepted)", ok)
	}
	// Medians, not maxima: on a loaded CI machine (and under -race) any
	// single round trip can stall for scheduling reasons. The median is
	// judged against the control server's in the same window: what the
	// machine gave this process then. (Against the calm connection's own
	// median before the flood, at load 8 the flood's was 300 ms against
	// 99 before: the flooder's goroutines and the other tests slowed the
	// whole process, the control's pings as much.) A flood that held up
	// the flooded server's other connections (a lock or a queue they
	// share with the flooder) shows as the calm median above the
	// control's.
	t.Logf("flooder: %d accepted, %d limited, dropped %v", ok, limited, dropped)
	t.Logf("pings during the flood: calm median %v worst %v, control median %v worst %v; before: calm %v, control %v; this process's longest stall %v",
		median, worst, ctlMedian, ctlWorst, calmBefore[len(calmBefore)/2], controlBefore[len(controlBefore)/2], stall.Round(time.Millisecond))
	if median > ctlMedian+100*time.Millisecond || worst > time.Second+ctlWorst {
		t.Fatalf("calm connection's pings during the flood: median %v, worst %v; the control server's: median %v, worst %v",
			median, worst, ctlMedian, ctlWorst)
	}
}

func TestFrameAndDataLimits(t *testing.T) {
	parallel(t)
	srv := startServer(t, func(c *config.Config) {
		c.Limits.MaxFrame = 4096
		c.Limits.MaxDataMessage = 100
	})
	// An oversized frame closes the socket with 1009.
	ws := rawWS(t, srv)
	big := fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":%q}}`, strings.Repeat("x", 5000))
	if err := ws.WriteMessage(websocket.TextMessage, []byte(big)); err != nil {
		t.Fatal(err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _, err := ws.ReadMessage()
	if !websocket.IsCloseError(err, websocket.CloseMessageTooBig) {
		t.Fatalf("oversized frame: %v, want close 1009", err)
	}

	// A data message over the limit is not relayed; one at the limit is.
	a := join(t, srv, "data", "a")
	b := join(t, srv, "data", "b")
	got := make(chan protocol.DataMessage, 64)
	b.OnData(func(m protocol.DataMessage) { got <- m })
	// Warm up until b's data channel delivers (it opens after the connection).
	syncData(t, a, got)
	if err := a.SendData(ctxT(t, 10*time.Second), strings.Repeat("y", 101)); err != nil {
		t.Fatal(err)
	}
	if err := a.SendData(ctxT(t, 10*time.Second), strings.Repeat("z", 100)); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if m.Payload != strings.Repeat("z", 100) {
			t.Fatalf("relayed %d bytes, want only the 100-byte message", len(m.Payload))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("data message at the limit not relayed")
	}
	// a's messages are relayed in order: had the oversized one been relayed,
	// it would have come first; a last one must come next.
	if err := a.SendData(ctxT(t, 10*time.Second), "last"); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if m.Payload != "last" {
			t.Fatalf("unexpected message of %d bytes", len(m.Payload))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a message after the limits test was not relayed")
	}
}

// TestIdleTimeout: a peer that neither sends nor answers pings is dropped.
func TestIdleTimeout(t *testing.T) {
	parallel(t)
	srv := startServer(t, func(c *config.Config) { c.Limits.IdleTimeout = config.Duration(time.Second) })
	ws := rawWS(t, srv)
	// Read (to see the server close the socket) but never answer its pings:
	// no pong goes out, as from a peer that stopped reading.
	ws.SetPingHandler(func(string) error { return nil })
	_ = ws.SetReadDeadline(time.Now().Add(15 * time.Second))
	for {
		if _, _, err := ws.ReadMessage(); err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) || !isTimeoutErr(err) {
				return // closed by the server
			}
			t.Fatalf("idle connection not dropped: %v", err)
		}
	}
}

// TestHTTPKeepAliveIdleClosed: an HTTP keep-alive connection with no request
// for limits.idle_timeout is closed by the server, not held open for good.
func TestHTTPKeepAliveIdleClosed(t *testing.T) {
	parallel(t)
	srv := startServer(t, func(c *config.Config) { c.Limits.IdleTimeout = config.Duration(time.Second) })
	conn, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Close {
		t.Fatalf("healthz: %d, close=%v: want 200 on a kept-alive connection", resp.StatusCode, resp.Close)
	}
	// The server closes the connection (EOF) once it idles past 1 s; the
	// deadline only bounds a server that never does.
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := br.ReadByte(); err == nil || isTimeoutErr(err) {
		t.Fatalf("idle keep-alive connection not closed by the server: %v", err)
	}
}

func isTimeoutErr(err error) bool {
	var ne interface{ Timeout() bool }
	return errors.As(err, &ne) && ne.Timeout()
}

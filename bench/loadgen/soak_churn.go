package loadgen

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/auth"
	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/protocol"
)

// soakMedia sends small synthetic VP8 (15 fps) and Opus (50 pps) on a
// publisher's tracks until stopped; a keyframe request gets a keyframe.
type soakMedia struct {
	video, audio *webrtc.TrackLocalStaticRTP
	pubs         []client.Published
	wantKey      atomic.Bool
	stop         chan struct{}
	done         sync.WaitGroup
}

func (s *soak) publish(ctx context.Context, c *client.Client, n int64) (*soakMedia, error) {
	v, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, fmt.Sprintf("v%d", n), "soak")
	if err != nil {
		return nil, err
	}
	a, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, fmt.Sprintf("a%d", n), "soak")
	if err != nil {
		return nil, err
	}
	m := &soakMedia{video: v, audio: a, stop: make(chan struct{})}
	m.wantKey.Store(true)
	pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	m.pubs, err = c.Publish(pctx,
		client.LocalTrack{Track: v, Source: protocol.SourceCamera, Name: "camera", OnKeyframeRequest: func() { m.wantKey.Store(true) }},
		client.LocalTrack{Track: a, Source: protocol.SourceMicrophone, Name: "mic"})
	if err != nil {
		return nil, err
	}
	m.done.Add(2)
	go func() {
		defer m.done.Done()
		buf := make([]byte, 1500)
		tick := time.NewTicker(time.Second / 15)
		defer tick.Stop()
		seq, pid, ts := uint16(n), uint16(0), uint32(n)
		for i := 0; ; i++ {
			select {
			case <-m.stop:
				return
			case <-tick.C:
			}
			key := m.wantKey.Swap(false) || i%30 == 0
			p := buildVP8(buf, pid, 600, 0, 1, key, 320, 180, monoNow())
			_ = v.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, Marker: true, SequenceNumber: seq, Timestamp: ts}, Payload: p})
			seq, pid, ts = seq+1, (pid+1)&0x7fff, ts+6000
		}
	}()
	go func() {
		defer m.done.Done()
		payload := make([]byte, 80)
		payload[0] = 0x78
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		seq, ts := uint16(n), uint32(n)
		for {
			select {
			case <-m.stop:
				return
			case <-tick.C:
			}
			_ = a.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: ts}, Payload: payload})
			seq, ts = seq+1, ts+960
		}
	}()
	return m, nil
}

func (m *soakMedia) Stop() {
	select {
	case <-m.stop:
	default:
		close(m.stop)
	}
	m.done.Wait()
}

func (m *soakMedia) track(kind string) client.Published {
	for _, p := range m.pubs {
		if p.Kind == kind {
			return p
		}
	}
	return client.Published{}
}

func (s *soak) join(ctx context.Context, room, name string, resume bool) (*client.Client, error) {
	tok, err := s.token(name, auth.Grants{Room: room})
	if err != nil {
		return nil, err
	}
	jctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	c, err := client.Dial(jctx, s.cfg.URL, room, client.Options{Name: name, Token: tok, API: s.api, AutoResume: resume})
	if err != nil && churnOver(ctx) {
		// The churn ended during the dial: the socket's deadline came from
		// ctx, and its "i/o timeout" is not a failed join.
		return nil, fmt.Errorf("%w: %v", context.DeadlineExceeded, err)
	}
	return c, err
}

// churnOver reports whether ctx has ended or reached its deadline. The
// socket's deadline (taken from ctx) can fire before ctx's own timer marks
// it done: on a busy machine ctx.Err() was still nil right after the dial
// failed with "i/o timeout" at the churn's end (1 soak run in ~15).
func churnOver(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}

// dataWatch counts the data messages one participant receives from another.
type dataWatch struct {
	mu  sync.Mutex
	got map[string]bool
}

func (d *dataWatch) has(all []string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, m := range all {
		if !d.got[m] {
			return false
		}
	}
	return true
}

// iteration is one churn cycle in a random room: a publisher and a
// subscriber join; media flows; data messages, mutes (own and through the
// admin API), subscription changes, a resume after a dropped socket, an
// unpublish and a new publish, sometimes a recording; then the subscriber
// leaves or is kicked through the admin API and the publisher leaves.
// Every data message the publisher sends after the subscriber joined must
// reach it.
func (s *soak) iteration(ctx context.Context, rng *rand.Rand, w, i int) {
	room := fmt.Sprintf("soak-%d", rng.IntN(s.cfg.Rooms))
	// k staggers the optional steps over the workers, so that the first
	// iteration of four workers covers every operation (see Soak).
	k := i + w
	n := s.serial.Add(1)
	tr := newIterTrace()
	var pub, sub *client.Client
	var lost []string
	defer func() { s.incident(tr, room, pub, sub, lost) }()
	pause := func(d time.Duration) bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(d):
			return true
		}
	}
	pub, err := s.join(ctx, room, fmt.Sprintf("pub-%d", n), true)
	if !tr.op(s, "join", err) {
		return
	}
	defer pub.Close()
	sub, err = s.join(ctx, room, fmt.Sprintf("sub-%d", n), false)
	if !tr.op(s, "join", err) {
		return
	}
	defer sub.Close()
	watch := &dataWatch{got: map[string]bool{}}
	pubID := pub.ParticipantID()
	sub.OnData(func(m protocol.DataMessage) {
		if m.From == pubID {
			watch.mu.Lock()
			watch.got[m.Payload] = true
			watch.mu.Unlock()
		}
	})
	var videoSeen atomic.Bool
	sub.OnTrack(func(rt *client.RemoteTrack) {
		if rt.ParticipantID != pubID {
			return
		}
		go func() {
			for {
				if _, _, err := rt.Track.ReadRTP(); err != nil {
					return
				}
				if rt.Track.Kind() == webrtc.RTPCodecTypeVideo {
					videoSeen.Store(true)
				}
			}
		}()
	})
	var sent []string
	send := func(k int) {
		for j := 0; j < k; j++ {
			msg := fmt.Sprintf("soak %d %d %d", n, len(sent), j)
			dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := pub.SendData(dctx, msg)
			cancel()
			if err != nil {
				tr.op(s, "data", err)
			} else if s.count("data", nil) {
				sent = append(sent, msg)
				s.sent.Add(1)
			}
		}
		tr.note("data: %d sent so far", len(sent))
	}
	media, err := s.publish(ctx, pub, n)
	if !tr.op(s, "publish", err) {
		return
	}
	defer media.Stop()
	video, audio := media.track("video"), media.track("audio")
	send(5)
	// media reaches the subscriber (30 s: a machine saturated under -race
	// started streams up to 15 s after publishing, as the load runs saw)
	deadline := time.Now().Add(30 * time.Second)
	for !videoSeen.Load() && time.Now().Before(deadline) && pause(50*time.Millisecond) {
	}
	if ctx.Err() == nil {
		var err error
		if !videoSeen.Load() {
			err = fmt.Errorf("no video from %s at %s", pubID, sub.ParticipantID())
		}
		tr.op(s, "media", err)
	}
	call := func(c *client.Client, op, method string, params any) {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		tr.op(s, op, c.Call(cctx, method, params, nil))
	}
	yes, no := true, false
	low := protocol.QualityLow
	call(pub, "mute", protocol.MethodMute, protocol.MuteParams{TrackID: audio.ID, Muted: true})
	pause(100 * time.Millisecond)
	call(pub, "mute", protocol.MethodMute, protocol.MuteParams{TrackID: audio.ID, Muted: false})
	call(sub, "setSubscription", protocol.MethodSetSubscription, protocol.SetSubscriptionParams{TrackID: video.ID, Quality: &low})
	call(sub, "setSubscription", protocol.MethodSetSubscription, protocol.SetSubscriptionParams{TrackID: video.ID, Paused: &yes})
	pause(100 * time.Millisecond)
	call(sub, "setSubscription", protocol.MethodSetSubscription, protocol.SetSubscriptionParams{TrackID: video.ID, Paused: &no})
	send(5)
	if k%2 == 0 && ctx.Err() == nil { // the publisher's socket drops; it resumes
		tr.note("the publisher's socket drops")
		pub.CloseSignaling()
		tr.op(s, "resume", waitResumed(ctx, pub))
	}
	recording := false
	if s.cfg.Record && k%4 == 1 && ctx.Err() == nil {
		err := s.adminCall(ctx, "POST", "/v1/rooms/"+room+"/recordings", map[string]any{})
		if err != nil && strings.Contains(err.Error(), "HTTP 409") { // another worker records this room
			err = nil
		}
		recording = tr.op(s, "record", err)
	}
	if ctx.Err() == nil {
		tr.op(s, "adminMute", s.adminCall(ctx, "POST", "/v1/rooms/"+room+"/participants/"+pubID+"/mute", map[string]any{"trackId": audio.ID, "muted": true}))
		pause(100 * time.Millisecond)
		tr.op(s, "adminMute", s.adminCall(ctx, "POST", "/v1/rooms/"+room+"/participants/"+pubID+"/mute", map[string]any{"trackId": audio.ID, "muted": false}))
	}
	send(5)
	if ctx.Err() == nil {
		uctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		tr.op(s, "unpublish", pub.Unpublish(uctx, video))
		cancel()
	}
	if k%3 == 0 && ctx.Err() == nil {
		// and publishes again
		v2, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, fmt.Sprintf("v%d-2", n), "soak")
		if err == nil {
			pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			_, err = pub.Publish(pctx, client.LocalTrack{Track: v2, Source: protocol.SourceScreen, Name: "screen"})
			cancel()
		}
		tr.op(s, "publish", err)
	}
	send(5)
	// every message reaches the subscriber
	for deadline := time.Now().Add(10 * time.Second); !watch.has(sent) && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	watch.mu.Lock()
	for _, m := range sent {
		if watch.got[m] {
			s.recv.Add(1)
		} else {
			s.lost.Add(1)
			lost = append(lost, m)
		}
	}
	watch.mu.Unlock()
	if len(lost) > 0 {
		tr.note("waited for the data: %d of %d not received; publisher %s; subscriber %s", len(lost), len(sent), clientState(pub), clientState(sub))
	}
	if recording {
		err := s.adminCall(context.Background(), "DELETE", "/v1/rooms/"+room+"/recordings", nil)
		if err != nil && strings.Contains(err.Error(), "HTTP 404") { // another worker stopped it
			err = nil
		}
		tr.op(s, "recordStop", err)
	}
	media.Stop()
	lctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if k%3 == 2 {
		err := s.adminCall(lctx, "DELETE", "/v1/rooms/"+room+"/participants/"+sub.ParticipantID(), nil)
		if tr.op(s, "kick", err) {
			select {
			case <-sub.Done():
			case <-lctx.Done():
				tr.op(s, "kick", fmt.Errorf("%s still connected after the kick", sub.ParticipantID()))
			}
		}
	} else {
		tr.op(s, "leave", sub.Leave(lctx))
	}
	tr.op(s, "leave", pub.Leave(lctx))
}

// waitResumed waits for c to resume after its socket dropped. A resume that
// failed (the session ended) or took longer than 15 s is an error; only the
// churn's end is not.
func waitResumed(ctx context.Context, c *client.Client) error {
	done := c.Done() // closed if the resume fails: the session is over
	rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	go func() {
		select {
		case <-done:
			cancel()
		case <-rctx.Done():
		}
	}()
	_, err := c.WaitEvent(rctx, client.EventResumed, nil)
	if err == nil {
		return nil
	}
	select {
	case <-done:
		why := "the session ended"
		for _, e := range c.Events() {
			if e.Method == client.EventResumeFailed {
				why = string(e.Params)
			}
		}
		return fmt.Errorf("resume failed: %s", why)
	default:
	}
	if churnOver(ctx) {
		return err
	}
	return fmt.Errorf("no resume within 15 s")
}

package browsertest

import (
	"strings"
	"testing"
	"time"
)

// unpublishSpyJS wraps page A's signaling socket: it logs the requests the
// client sends and holds the reply to `unpublish` back until the test
// releases it, noting at that moment whether the camera's sender still
// carries the track and how many offers were sent since the request. Then
// it unpublishes the camera with the client library, as an app would.
const unpublishSpyJS = `(() => {
  const c = window.starling.client, rpc = c._rpc, ws = rpc._ws;
  const cam = [...c.localTracks.values()].find((l) => l.track.kind === 'video' && l.info);
  if (!cam) return '';
  const spy = window.unpublishSpy = {log: [], track: cam.track, atHold: null, released: false, result: null, newId: null};
  const send = ws.send.bind(ws);
  ws.send = (text) => {
    const m = JSON.parse(text);
    if (m.method && m.id != null) {
      spy.log.push(m.method);
      if (m.method === 'unpublish') spy.unpublishId = m.id;
    }
    send(text);
  };
  const onMessage = rpc._onMessage.bind(rpc);
  rpc._onMessage = (data) => {
    const m = JSON.parse(data);
    if (!spy.released && spy.unpublishId != null && m.id === spy.unpublishId && !m.method) {
      spy.atHold = {held: true, senderHasTrack: cam.sender.track !== null,
        offersSince: spy.log.slice(spy.log.indexOf('unpublish')).filter((x) => x === 'offer').length,
        error: m.error ? m.error.code + ' ' + m.error.message : ''};
      spy.release = () => { spy.released = true; spy.log.push('unpublish result'); onMessage(data); };
      return;
    }
    onMessage(data);
  };
  c.unpublish(cam.track).then(() => { spy.result = 'ok'; }, (e) => { spy.result = 'error ' + e.code + ' ' + e.message; });
  return cam.info.id;
})()`

// trackEventsJS records, on page B, the trackPublished and trackUnpublished
// events of the client library, in order.
const trackEventsJS = `(() => {
  const c = window.starling.client;
  window.trackEvents = [];
  c.on('trackPublished', ({track}) => window.trackEvents.push({kind: 'published', id: track.id, participantId: track.participantId}));
  c.on('trackUnpublished', ({trackId, participantId}) => window.trackEvents.push({kind: 'unpublished', id: trackId, participantId}));
  return true;
})()`

type trackEvent struct {
	Kind          string `json:"kind"`
	ID            string `json:"id"`
	ParticipantID string `json:"participantId"`
}

// TestUnpublishRepublish: page A unpublishes its camera with the client
// library and publishes the same track again. The library must send
// `unpublish` and wait for its result before the offer that stops sending
// the track (else the server, seeing that offer first, unpublishes the track
// itself and the request gets 404): while the reply is held back, A's
// sender still carries the track and no offer was sent. B sees
// trackUnpublished of the old id, then trackPublished of a new one.
func TestUnpublishRepublish(t *testing.T) {
	inPageLane(t)
	pa, pb, idA, _ := callOfTwo(t, "browser-unpublish")
	waitForMedia(pb, 15*time.Second) // A's camera is published and announced

	var ok bool
	pb.mustEval(trackEventsJS, &ok)
	var oldID string
	pa.mustEval(unpublishSpyJS, &oldID)
	if oldID == "" {
		t.Fatal("page A has no published camera track")
	}

	type hold struct {
		Held           bool   `json:"held"`
		SenderHasTrack bool   `json:"senderHasTrack"`
		OffersSince    int    `json:"offersSince"`
		Error          string `json:"error"`
	}
	h, _ := waitFor(pa, "the unpublish reply held back", 10*time.Second,
		`window.unpublishSpy.atHold ?? {}`, func(h hold) bool { return h.Held })
	if !h.SenderHasTrack || h.OffersSince != 0 {
		t.Errorf("before the unpublish result: sender carries the track %v, offers sent since the request %d; want true, 0 (the library renegotiated before the server knew)",
			h.SenderHasTrack, h.OffersSince)
	}
	if h.Error != "" {
		t.Errorf("unpublish %s: error %s", oldID, h.Error)
	}
	pa.mustEval(`window.unpublishSpy.release(), true`, &ok)
	res, _ := waitFor(pa, "unpublish() settled", 10*time.Second,
		`window.unpublishSpy.result ?? ''`, func(s string) bool { return s != "" })
	if res != "ok" {
		t.Fatalf("unpublish(): %s", res)
	}
	waitFor(pa, "an offer after the unpublish result", 10*time.Second,
		`window.unpublishSpy.log.slice(window.unpublishSpy.log.indexOf('unpublish result')).includes('offer')`,
		func(b bool) bool { return b })
	waitFor(pb, "B sees trackUnpublished of A's camera", 10*time.Second, `window.trackEvents`,
		func(evs []trackEvent) bool {
			for _, e := range evs {
				if e.Kind == "unpublished" && e.ID == oldID {
					return true
				}
			}
			return false
		})

	// The same MediaStreamTrack again: a new server id, announced to B.
	pa.mustEval(`window.unpublishSpy.republish = window.starling.client.publish(window.unpublishSpy.track, {source: 'camera'})
	  .then((t) => { window.unpublishSpy.newId = t.id; }, (e) => { window.unpublishSpy.result = 'republish error ' + e.code + ' ' + e.message; }), true`, &ok)
	newID, _ := waitFor(pa, "republished", 10*time.Second,
		`window.unpublishSpy.newId ?? (window.unpublishSpy.result === 'ok' ? '' : window.unpublishSpy.result)`,
		func(s string) bool { return s != "" })
	if newID == oldID || strings.HasPrefix(newID, "republish error") {
		t.Fatalf("republish: %q (old id %s), want a new track id", newID, oldID)
	}
	evs, _ := waitFor(pb, "B sees trackPublished of the new id", 15*time.Second, `window.trackEvents`,
		func(evs []trackEvent) bool {
			for _, e := range evs {
				if e.Kind == "published" && e.ID == newID {
					return true
				}
			}
			return false
		})
	want := []trackEvent{{"unpublished", oldID, idA}, {"published", newID, idA}}
	var got []trackEvent
	for _, e := range evs {
		if e.ID == oldID || e.ID == newID {
			got = append(got, e)
		}
	}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("B's track events of A's camera: %+v, want %+v", got, want)
	}
	t.Logf("A's camera %s unpublished and republished as %s; A sent %v", oldID, newID, mustLog(pa))
}

func mustLog(p *page) []string {
	var log []string
	p.mustEval(`window.unpublishSpy.log`, &log)
	return log
}

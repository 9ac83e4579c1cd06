package room

import (
	"sort"
	"strings"
	"sync"

	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/sfu"
)

// Track is a track a participant publishes.
type Track struct {
	id    string
	owner *Participant
	mid   string
	kind  webrtc.RTPCodecType
	// carried: the track of a participant that moved here kept its id
	// from its old node, where it was announced (handover.go); set before
	// the track is published.
	carried bool

	mu       sync.Mutex
	info     protocol.Track
	rids     []string // offered rids, index = layer
	receiver *sfu.Receiver
	visible  bool // announced to the room (first packet arrived)

	announced protocol.Track // what the room was last told; guarded by the room's mu

	dynActive uint8 // layers the publisher was last told to send
	learned   uint8 // layers whose size comes from their keyframes, not from the offer (learnSizes)
	dynSent   bool

	imp trackImport // a remote track's media (relay.go)
}

// dynacast tells the publisher which simulcast layers to send: those up to
// the highest any sink wants (subscribers, and recordings, which want the
// best), so it stops encoding layers nobody needs (a publisher seen only as
// thumbnails sends only low). The lowest layer always stays on. Safe from
// any goroutine.
func (t *Track) dynacast() {
	t.mu.Lock()
	r, n := t.receiver, len(t.info.Layers)
	t.mu.Unlock()
	if r == nil || n < 2 {
		return
	}
	top := 0
	for _, s := range r.Sinks() {
		if w, ok := s.(sfu.LayerWanter); ok {
			top = max(top, min(int(w.DesiredLayer()), n-1))
		}
	}
	// Every layer up to the highest wanted stays on, so a subscriber whose
	// layer stalls falls back one step, not to the bottom.
	want := uint8(1)<<(top+1) - 1
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.dynSent && want == t.dynActive {
		return
	}
	t.dynSent, t.dynActive = true, want
	active := make([]string, 0, n)
	for i, l := range t.info.Layers {
		if want&(1<<i) != 0 {
			active = append(active, l.Quality)
		}
	}
	// Notify never blocks, so holding t.mu keeps notifications in order.
	t.owner.peer.Notify(protocol.NotifyPublishLayers, protocol.PublishLayersParams{TrackID: t.id, Active: active})
}

func newTrack(owner *Participant, offered sfu.OfferedTrack, ann protocol.TrackAnnouncement) *Track {
	t := &Track{id: newID("TR_"), owner: owner, mid: offered.MID}
	kind := "audio"
	t.kind = webrtc.RTPCodecTypeAudio
	if offered.Kind == "video" {
		kind = "video"
		t.kind = webrtc.RTPCodecTypeVideo
	}
	source := ann.Source
	switch source {
	case protocol.SourceCamera, protocol.SourceMicrophone, protocol.SourceScreen, protocol.SourceScreenAudio:
	default:
		source = protocol.SourceUnknown
	}
	t.info = protocol.Track{
		ID: t.id, CID: offered.TrackID, ParticipantID: owner.id, Kind: kind,
		Source: source, Name: ann.Name, Simulcast: len(offered.RIDs) > 1, Layers: []protocol.Layer{},
	}
	t.rids, t.info.Layers = orderLayers(offered.RIDs, ann.Layers)
	return t
}

// orderLayers maps offered rids to low/medium/high: by announced resolution
// when the client gives it, else by well-known rid names, else offer order.
func orderLayers(rids []string, hints []protocol.LayerHint) ([]string, []protocol.Layer) {
	if len(rids) == 0 {
		return nil, []protocol.Layer{}
	}
	if len(rids) > sfu.MaxLayers {
		rids = rids[:sfu.MaxLayers]
	}
	size := map[string]protocol.LayerHint{}
	for _, h := range hints {
		size[h.RID] = h
	}
	ordered := append([]string(nil), rids...)
	rank := func(rid string) int {
		if h, ok := size[rid]; ok && h.Width*h.Height > 0 {
			return h.Width * h.Height
		}
		switch strings.ToLower(rid) {
		case "q", "l", "low", "0":
			return -3
		case "h", "m", "medium", "mid", "1":
			return -2
		case "f", "high", "hi", "2":
			return -1
		}
		return 0
	}
	sort.SliceStable(ordered, func(i, j int) bool { return rank(ordered[i]) < rank(ordered[j]) })
	qualities := qualityNames(len(ordered))
	layers := make([]protocol.Layer, len(ordered))
	for i, rid := range ordered {
		h := size[rid]
		layers[i] = protocol.Layer{Quality: qualities[i], RID: rid, Width: h.Width, Height: h.Height}
	}
	return ordered, layers
}

// qualityNames names n layers from the top: one layer is "high".
func qualityNames(n int) []string {
	all := []string{protocol.QualityLow, protocol.QualityMedium, protocol.QualityHigh}
	return all[len(all)-n:]
}

// learnSizes fills in the size of each simulcast layer the offer gave no
// size for, from the layer's keyframes (VP8, H.264), and follows it when it
// changes; sizes the offer gave stay. Without sizes a subscriber's
// maxWidth/maxHeight capped nothing (layerFor). It reports whether a size
// changed.
func (t *Track) learnSizes() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.receiver == nil || len(t.info.Layers) < 2 {
		return false
	}
	changed := false
	for i := range t.info.Layers {
		l := &t.info.Layers[i]
		if (l.Width != 0 || l.Height != 0) && t.learned&(1<<i) == 0 {
			continue
		}
		if w, h := t.receiver.LayerSize(int8(i)); w > 0 && (w != l.Width || h != l.Height) {
			l.Width, l.Height = w, h
			t.learned |= 1 << i
			changed = true
		}
	}
	return changed
}

// sizesDiffer reports whether two layer lists give some layer another size.
func sizesDiffer(a, b []protocol.Layer) bool {
	if len(a) != len(b) {
		return true
	}
	for i := range a {
		if a[i].Width != b[i].Width || a[i].Height != b[i].Height {
			return true
		}
	}
	return false
}

// layerOf returns the layer index of a rid ("" = the only layer).
func (t *Track) layerOf(rid string) int8 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if rid == "" {
		return 0
	}
	for i, r := range t.rids {
		if r == rid {
			return int8(i)
		}
	}
	return -1
}

// layerFor picks the highest layer within a subscriber's caps.
func (t *Track) layerFor(quality string, maxW, maxH int) int8 {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(t.info.Layers)
	if n == 0 {
		return 0
	}
	best := int8(0)
	for i, l := range t.info.Layers {
		if quality != "" && qualityRank(l.Quality) > qualityRank(quality) {
			continue
		}
		if (maxW > 0 && l.Width > maxW) || (maxH > 0 && l.Height > maxH) {
			continue
		}
		best = int8(i)
	}
	return best
}

func qualityRank(q string) int {
	switch q {
	case protocol.QualityLow:
		return 0
	case protocol.QualityMedium:
		return 1
	}
	return 2
}

// qualityOf names a layer index.
func (t *Track) qualityOf(layer int8) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if int(layer) < len(t.info.Layers) && layer >= 0 {
		return t.info.Layers[layer].Quality
	}
	return protocol.QualityHigh
}

// Info is the track's public view.
func (t *Track) Info() protocol.Track {
	t.mu.Lock()
	defer t.mu.Unlock()
	info := t.info
	info.Layers = append([]protocol.Layer{}, t.info.Layers...)
	if t.receiver != nil {
		present := t.receiver.Layers()
		for i := range info.Layers {
			info.Layers[i].Active = present&(1<<i) != 0
		}
	}
	return info
}

// ID is the server's track id.
func (t *Track) ID() string { return t.id }

// inRoom reports whether t is still published in its owner's room (the
// mix, which has no owner, always is).
func (t *Track) inRoom() bool {
	return t.owner == nil || t.owner.room.track(t.id) == t
}

// notifyIfInRoom sends peer a notification about t unless t has been
// unpublished: under the room's lock, which Room.unpublish holds while it
// sends trackUnpublished, so nothing about the track can follow that.
// A subscriber loop's work queued before the unpublish (a subscription
// set up, a layer reselected) ran after it and told the client of a
// track it had been told was gone.
func (t *Track) notifyIfInRoom(peer Peer, method string, params any) {
	if t.owner == nil {
		peer.Notify(method, params)
		return
	}
	r := t.owner.room
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.tracks[t.id] == t {
		peer.Notify(method, params)
	}
}

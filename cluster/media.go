package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/cluster/relay"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/room"
	"github.com/starling-rtc/starling/sfu"
)

// Media crosses nodes through package relay: the edge asks the origin over
// the bus (request/reply on starling.node.<origin>.export) to export a
// track to it; the reply names the SSRC base and the origin's relay
// address, and the edge imports the stream as an sfu.Source. Each track
// crosses to an edge at most once: the room keeps one import per track,
// and the origin one export per (track, edge).

// exportReq is an edge's request for a track.
type exportReq struct {
	Room      string `json:"room"`
	TrackID   string `json:"trackId"`
	Edge      string `json:"edge"`
	EdgeRelay string `json:"edgeRelay"` // the edge's relay UDP address
	Layers    uint8  `json:"layers"`
}

// exportReply is the origin's answer.
type exportReply struct {
	Error    string                    `json:"error,omitempty"`
	SSRCBase uint32                    `json:"ssrcBase"`
	Relay    string                    `json:"relay"` // the origin's relay UDP address
	Codec    webrtc.RTPCodecParameters `json:"codec"`
	Kind     webrtc.RTPCodecType       `json:"kind"`
	Layers   uint8                     `json:"layers"`
	// NoAudioLevels: the publisher sends no RFC 6464 audio levels (an edge
	// mixer then measures the voice itself, recmix.go).
	NoAudioLevels bool `json:"noAudioLevels,omitempty"`
}

// exportKey names one export: a track to one edge.
type exportKey struct{ track, edge string }

// media is the node's relay state.
type media struct {
	mu      sync.Mutex
	t       *relay.Transport
	exports map[exportKey]*relay.Export
	// imports by origin and track id: a track whose publisher moved from
	// a draining node is imported from both while subscribers go over
	// (room/handover.go).
	imports map[exportKey]*relay.Import
}

func (n *Node) startRelay() error {
	t, err := relay.Listen(n.opts.RelayAddr, n.id, []byte(n.opts.Secret))
	if err != nil {
		return fmt.Errorf("cluster relay %s: %w", n.opts.RelayAddr, err)
	}
	n.media = media{t: t, exports: map[exportKey]*relay.Export{}, imports: map[exportKey]*relay.Import{}}
	return nil
}

// relayAddr is this node's relay address as the others reach it.
func (n *Node) relayAddr() string {
	if n.media.t == nil {
		return ""
	}
	return n.media.t.Addr()
}

// subscribeExports answers the other nodes' export requests.
func (n *Node) subscribeExports() error {
	if _, err := n.bus.nc.Subscribe(nodeSubject(n.id, "export"), func(m *nats.Msg) {
		var req exportReq
		var rep exportReply
		if err := json.Unmarshal(m.Data, &req); err != nil {
			rep.Error = "bad request"
		} else if e, src, err := n.export(req); err != nil {
			rep.Error = err.Error()
		} else {
			rep.SSRCBase, rep.Relay, rep.Codec, rep.Kind, rep.Layers = e.SSRCBase(), n.relayAddr(), src.Codec(), src.Kind(), src.Layers()
			rep.NoAudioLevels = noAudioLevels(src)
		}
		data, _ := json.Marshal(rep)
		_ = m.Respond(data)
	}); err != nil {
		return err
	}
	_, err := n.bus.nc.Subscribe(nodeSubject(n.id, "unexport"), func(m *nats.Msg) {
		var req exportReq
		if json.Unmarshal(m.Data, &req) == nil {
			n.closeExport(exportKey{req.TrackID, req.Edge})
		}
	})
	return err
}

// export starts (once) sending a local track to an edge.
func (n *Node) export(req exportReq) (*relay.Export, sfu.Source, error) {
	r := n.rooms.Room(req.Room)
	if r == nil {
		return nil, nil, errors.New("no such room here")
	}
	src := r.LocalSource(req.TrackID)
	if src == nil {
		return nil, nil, errors.New("no such track published here")
	}
	if err := n.media.t.AddPeer(req.Edge, req.EdgeRelay); err != nil {
		return nil, nil, err
	}
	key := exportKey{req.TrackID, req.Edge}
	n.media.mu.Lock()
	defer n.media.mu.Unlock()
	if e := n.media.exports[key]; e != nil {
		e.SetLayers(req.Layers)
		return e, src, nil
	}
	e, err := n.media.t.Export(req.Edge, src, req.Layers)
	if err != nil {
		return nil, nil, err
	}
	n.media.exports[key] = e
	n.log.Debug("track exported", "track", req.TrackID, "edge", req.Edge, "ssrcBase", e.SSRCBase())
	return e, src, nil
}

func (n *Node) closeExport(key exportKey) {
	n.media.mu.Lock()
	e := n.media.exports[key]
	delete(n.media.exports, key)
	n.media.mu.Unlock()
	if e != nil {
		e.Close()
	}
}

// Import implements room.Bus: it asks the origin node for the track and
// imports it; the room calls it once per track.
func (n *Node) Import(r *room.Room, node string, t protocol.Track) (sfu.Source, error) {
	layers := uint8(1)
	if len(t.Layers) > 0 {
		layers = uint8(1)<<len(t.Layers) - 1
	}
	data, _ := json.Marshal(exportReq{Room: r.Name(), TrackID: t.ID, Edge: n.id, EdgeRelay: n.relayAddr(), Layers: layers})
	start := time.Now()
	msg, err := n.bus.nc.Request(nodeSubject(node, "export"), data, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("export request to %s: %w", node, err)
	}
	var rep exportReply
	if err := json.Unmarshal(msg.Data, &rep); err != nil {
		return nil, err
	}
	if rep.Error != "" {
		return nil, fmt.Errorf("node %s: %s", node, rep.Error)
	}
	if err := n.media.t.AddPeer(node, rep.Relay); err != nil { // before the first datagram can arrive
		return nil, err
	}
	imp, err := n.media.t.Import(node, rep.SSRCBase, t.ID, rep.Kind, rep.Codec, max(rep.Layers, 1))
	if err != nil {
		return nil, err
	}
	n.media.mu.Lock()
	key := exportKey{track: t.ID, edge: node}
	if old := n.media.imports[key]; old != nil && old != imp {
		old.Close()
	}
	n.media.imports[key] = imp
	n.media.mu.Unlock()
	n.log.Debug("track imported", "track", t.ID, "origin", node, "ssrcBase", rep.SSRCBase, "took", time.Since(start))
	return withLevels(imp, rep), nil
}

// Unimport implements room.Bus: the room closed its import of a track; the
// origin stops exporting it here.
func (n *Node) Unimport(node, trackID string) {
	n.media.mu.Lock()
	delete(n.media.imports, exportKey{track: trackID, edge: node})
	n.media.mu.Unlock()
	data, _ := json.Marshal(exportReq{TrackID: trackID, Edge: n.id})
	_ = n.bus.nc.Publish(nodeSubject(node, "unexport"), data)
}

// TrackPublished implements room.Observer: a local track's key is written
// (trackkeys.go; exports start on request).
func (n *Node) TrackPublished(t room.PublishedTrack) { n.storeTrack(t, true) }

// TrackUnpublished implements room.Observer: a local track's exports end,
// and its key goes.
func (n *Node) TrackUnpublished(t room.PublishedTrack) {
	n.storeTrack(t, false)
	n.media.mu.Lock()
	var gone []*relay.Export
	for k, e := range n.media.exports {
		if k.track == t.Track.ID {
			gone = append(gone, e)
			delete(n.media.exports, k)
		}
	}
	n.media.mu.Unlock()
	for _, e := range gone {
		e.Close()
	}
}

// RoomClosed implements room.Observer.
func (n *Node) RoomClosed(string, string) {}

// relayGone drops a dead node's exports and imports.
func (n *Node) relayGone(node string) {
	n.media.mu.Lock()
	for k := range n.media.exports {
		if k.edge == node {
			delete(n.media.exports, k)
		}
	}
	n.media.mu.Unlock()
	if n.media.t != nil {
		n.media.t.RemovePeer(node) // closes its exports and imports
	}
}

// relayFigures are the relay's tracks and bytes, out and in.
func (n *Node) relayFigures() (tracksOut, tracksIn int, bytesOut, bytesIn uint64) {
	if n.media.t == nil {
		return 0, 0, 0, 0
	}
	s := n.media.t.Stats()
	return s.Exports, s.Imports, s.BytesOut, s.BytesIn
}

// RelayStats are the relay transport's counters (tests count packets).
func (n *Node) RelayStats() relay.Stats { return n.media.t.Stats() }

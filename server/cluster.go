package server

import (
	"encoding/json"
	"time"

	"github.com/starling-rtc/starling/admin"
	"github.com/starling-rtc/starling/cluster"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/room"
	"github.com/starling-rtc/starling/webhook"
)

// setupCluster joins the cluster when --cluster-listen or --nats-url is
// set; a single node starts no bus at all.
func (s *Server) setupCluster() error {
	c := s.cfg.Cluster
	if !c.Enabled() {
		return nil
	}
	n, err := cluster.Start(cluster.Options{
		BusOptions: cluster.BusOptions{
			NodeID: c.NodeID, Listen: c.Listen, Advertise: c.Advertise, Routes: c.Routes, Secret: c.Secret,
			NATSURL: c.NATSURL, StoreDir: c.StoreDir, Logger: s.log,
			TLS: cluster.TLSFiles{Cert: c.TLSCert, Key: c.TLSKey, CA: c.TLSCA},
		},
		URL: s.BaseURL(), RelayAddr: c.RelayAddr, Rooms: s.rooms,
		EmptyTimeout: s.cfg.Room.EmptyTimeout.Std(), StoreWait: c.StoreWait.Std(),
		// Clustered, room_started and room_finished are sent by the node
		// that opens or closes the room for the whole cluster.
		OnRoomStarted: func(room, sid string) {
			if s.ext.webhooks != nil {
				s.ext.webhooks.RoomStarted(room, sid)
			}
		},
		OnRoomFinished: func(room, sid string) {
			if s.ext.webhooks != nil {
				s.ext.webhooks.RoomClosed(room, sid)
			}
		},
		// A dead node's participants leave without it: one live node sends
		// their participant_left (cluster/deadmembers.go).
		OnMemberGone: func(name, sid string, m room.Member, reason string) {
			if s.ext.webhooks != nil {
				s.ext.webhooks.ParticipantLeft(room.ParticipantEvent{Room: name, RoomSID: sid, ParticipantID: m.ID,
					Identity: m.Identity, Name: m.Name}, reason)
			}
		},
		// And their tracks' track_unpublished (cluster/hookonce.go).
		OnTrackGone: func(t room.PublishedTrack) {
			if s.ext.webhooks != nil {
				s.ext.webhooks.TrackUnpublished(t)
			}
		},
		LocalView: func(name string) json.RawMessage {
			rm := s.rooms.Room(name)
			if rm == nil {
				return nil
			}
			b, _ := json.Marshal(admin.LocalParticipants(rm))
			return b
		},
	})
	if err != nil {
		return err
	}
	s.cluster = n
	if err := s.clusterRecordings(); err != nil { // see recording_cluster.go
		n.Close()
		s.cluster = nil
		return err
	}
	s.metrics.Registry().MustRegister(n.Collector())
	return nil
}

// Cluster is the node's cluster membership, nil on a single node.
func (s *Server) Cluster() *cluster.Node { return s.cluster }

// clusterNodes lists the nodes for GET /v1/nodes (this node alone when
// not clustered).
func (s *Server) clusterNodes() any {
	if s.cluster == nil {
		snap := s.rooms.Snapshot()
		// startedAt and lastSeen as a cluster node reports them: when it
		// started, and now (it answers, so it is alive).
		return []cluster.NodeInfo{{ID: "local", URL: s.BaseURL(), StartedAt: s.started.UnixMilli(), LastSeen: time.Now().UnixMilli(),
			Rooms: snap.Rooms, Participants: snap.Participants, Tracks: snap.Tracks, Self: true}}
	}
	return s.cluster.Nodes()
}

func (s *Server) stopCluster() {
	if s.cluster != nil {
		s.cluster.Close()
	}
}

// webhookObserver sends the rooms' events as webhooks. Participant and
// track events are sent by the node where they happen, so once per
// cluster; a room's start and end are sent by the cluster (setupCluster)
// when clustered, since every node has its own instance of the room.
type webhookObserver struct {
	*webhook.Notifier
	s *Server
}

func (o webhookObserver) RoomStarted(name, sid string) {
	if o.s.cluster == nil {
		o.Notifier.RoomStarted(name, sid)
	}
}

func (o webhookObserver) RoomClosed(name, sid string) {
	if o.s.cluster == nil {
		o.Notifier.RoomClosed(name, sid)
	}
}

// ParticipantLeft and TrackUnpublished, clustered, are sent by the node
// that claims them first: another node may have sent them already for a
// participant or track of this node it thought dead (a bus cut longer
// than the resume window: cluster/hookonce.go).
func (o webhookObserver) ParticipantLeft(p room.ParticipantEvent, reason string) {
	if c := o.s.cluster; c != nil {
		c.Once(cluster.OnceParticipantLeft, p.ParticipantID, func() { o.Notifier.ParticipantLeft(p, reason) })
		return
	}
	o.Notifier.ParticipantLeft(p, reason)
}

func (o webhookObserver) TrackUnpublished(t room.PublishedTrack) {
	if c := o.s.cluster; c != nil {
		c.Once(cluster.OnceTrackUnpublished, t.Track.ID, func() { o.Notifier.TrackUnpublished(t) })
		return
	}
	o.Notifier.TrackUnpublished(t)
}

// remoteRoom and closeRemote let the admin API reach the other nodes' parts
// of a room; the cluster is started after the admin API is set up.
func (s *Server) remoteRoom(name string) (string, []admin.Participant, bool, error) {
	if s.cluster == nil {
		return "", nil, false, nil
	}
	sid, views, unanswered, ok, err := s.cluster.RoomView(name)
	if !ok {
		return "", nil, false, err
	}
	var ps []admin.Participant
	for _, v := range views {
		var part []admin.Participant
		if json.Unmarshal(v, &part) == nil {
			ps = append(ps, part...)
		}
	}
	// Members whose node did not answer (killed: they wait to resume) are
	// shown as the room state has them, unless this node has a stub of
	// them, which the admin API shows instead.
	rm := s.rooms.Room(name)
	for _, m := range unanswered {
		if rm != nil && rm.Participant(m.ID) != nil {
			continue
		}
		// Its joinedAt and grants are in the state too (a member without
		// grants joined without a token: every permission). They were
		// left out: 0 and every permission false, unlike the same
		// participant listed by a node with a stub of it.
		p := admin.Participant{Participant: protocol.Participant{ID: m.ID, Name: m.Name, Metadata: m.Metadata, JoinedAt: m.JoinedAt, Tracks: []protocol.Track{}},
			Identity: m.Identity, Subscriptions: []admin.Subscription{}}
		perms := room.AllPermissions
		if m.Perms != nil {
			perms = *m.Perms
		}
		p.Permissions = admin.Permissions{CanPublish: perms.CanPublish, CanSubscribe: perms.CanSubscribe, CanPublishData: perms.CanPublishData}
		ps = append(ps, p)
	}
	return sid, ps, true, nil
}

// setMix stores an admin mix setting for the whole cluster
// (cluster/mixprefs.go); clustered is false on a single node.
func (s *Server) setMix(name, participant string, gain *float64, muted *bool) (admin.MixState, bool, error) {
	if s.cluster == nil {
		return admin.MixState{}, false, nil
	}
	set, err := s.cluster.SetMixPref(name, participant, gain, muted)
	return admin.MixState{Gain: set.Gain, Muted: set.Muted}, true, err
}

// controlRemote sends an admin command to the node of a participant of a
// room without a part on this node (cluster.Node.ControlMember).
func (s *Server) controlRemote(name, participant string, ev room.Event) error {
	if s.cluster == nil {
		return protocol.Errorf(protocol.CodeNotFound, "no participant %q in room %q", participant, name)
	}
	return s.cluster.ControlMember(name, participant, ev)
}

// roomInCluster reports whether a room exists on another node of the
// cluster (WHEP from a node without a part of it); false on a single node.
// err says the cluster's room state did not answer.
func (s *Server) roomInCluster(name string) (bool, error) {
	if s.cluster == nil {
		return false, nil
	}
	return s.cluster.RoomExists(name)
}

// dataRemote sends an admin data message through the cluster to a room
// with no part on this node; not ok on a single node.
func (s *Server) dataRemote(name, payload string, to []string) (ok bool, unknown string, err error) {
	if s.cluster == nil {
		return false, "", nil
	}
	return s.cluster.SendData(name, payload, to)
}

func (s *Server) closeRemote(name string) (string, bool) {
	if s.cluster == nil {
		return "", false
	}
	return s.cluster.CloseRoom(name)
}

// clusterRooms lists every room of the cluster for the admin API's
// GET /v1/rooms; nil on a single node (the API lists the local rooms).
func (s *Server) clusterRooms() ([]admin.RoomSummary, error) {
	if s.cluster == nil {
		return nil, nil
	}
	rooms, err := s.cluster.Rooms(func(name string) (int, bool) {
		r := s.rooms.Room(name)
		if r == nil {
			return 0, false
		}
		_, tracks := r.Counts()
		return tracks, true
	})
	if err != nil {
		return nil, err
	}
	out := make([]admin.RoomSummary, 0, len(rooms))
	for _, rc := range rooms {
		out = append(out, admin.RoomSummary{Name: rc.Name, SID: rc.SID, NumParticipants: rc.Participants, NumTracks: rc.Tracks})
	}
	return out, nil
}

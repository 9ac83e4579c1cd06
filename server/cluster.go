package server

import (
	"github.com/starling-rtc/starling/cluster"
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
			NodeID: c.NodeID, Listen: c.Listen, Routes: c.Routes, Secret: c.Secret,
			NATSURL: c.NATSURL, StoreDir: c.StoreDir, Logger: s.log,
		},
		URL: s.BaseURL(), RelayAddr: c.RelayAddr, Rooms: s.rooms,
		EmptyTimeout: s.cfg.Room.EmptyTimeout.Std(),
	})
	if err != nil {
		return err
	}
	s.cluster = n
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
		return []cluster.NodeInfo{{ID: "local", URL: s.BaseURL(), Rooms: snap.Rooms, Participants: snap.Participants, Tracks: snap.Tracks, Self: true}}
	}
	return s.cluster.Nodes()
}

func (s *Server) stopCluster() {
	if s.cluster != nil {
		s.cluster.Close()
	}
}

package server

import (
	"context"

	"github.com/starling-rtc/starling/cluster"
	"github.com/starling-rtc/starling/recorder"
)

// clusterRecordings makes the recorder cluster-wide: it forwards what it
// cannot answer to the other nodes' recorders over the bus and answers
// theirs (recorder/cluster.go, docs/recording.md "In a cluster").
func (s *Server) clusterRecordings() error {
	if s.recorder == nil || s.cluster == nil {
		return nil
	}
	if err := s.cluster.ServeRecordings(func(req cluster.RecordingRequest) cluster.RecordingReply {
		rep := s.recorder.ServeForwarded(recorder.ForwardRequest(req))
		return cluster.RecordingReply(rep)
	}); err != nil {
		return err
	}
	s.recorder.SetCluster(recorderCluster{s.cluster})
	s.cluster.OnNodeGone(s.recorder.NodeGone) // take a dead node's room recordings over (recorder/lease.go)
	return nil
}

// recorderCluster adapts the cluster node to recorder.Cluster.
type recorderCluster struct{ n *cluster.Node }

func (c recorderCluster) NodeID() string                          { return c.n.ID() }
func (c recorderCluster) RoomNodes(room string) ([]string, error) { return c.n.RoomNodes(room) }
func (c recorderCluster) OtherNodes() []string                    { return c.n.OtherNodes() }

func (c recorderCluster) Forward(node string, req recorder.ForwardRequest) (recorder.ForwardReply, error) {
	rep, err := c.n.ForwardRecording(node, cluster.RecordingRequest(req))
	return recorder.ForwardReply(rep), err
}

func (c recorderCluster) ClaimRecording(room string, value []byte, rev uint64) ([]byte, uint64, bool, error) {
	return c.n.ClaimRecording(room, value, rev)
}

func (c recorderCluster) RecordingClaim(room string) ([]byte, uint64, error) {
	return c.n.RecordingClaim(room)
}

func (c recorderCluster) DropRecordingClaim(room string, rev uint64) error {
	return c.n.DropRecordingClaim(room, rev)
}

func (c recorderCluster) RenewRecordingClaim(ctx context.Context, room string, value []byte, rev uint64) (uint64, bool, error) {
	return c.n.RenewRecordingClaim(ctx, room, value, rev)
}

func (c recorderCluster) HearsMajority() bool { return c.n.HearsMajority() }

func (c recorderCluster) NodeDead(ctx context.Context, node string) bool {
	return c.n.KnownDead(ctx, node)
}

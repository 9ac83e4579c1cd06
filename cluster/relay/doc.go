// Package relay carries media between the nodes of a Starling cluster: a
// published track crosses from its origin node to each edge node that has a
// subscriber for it, once per (track, edge node), and the edge fans it out
// to its own subscribers as if it were a local publisher's track.
//
// One UDP socket per node carries all relayed media, encrypted and
// authenticated with SRTP/SRTCP (AES-128-GCM). The keys of each direction of
// each node pair come from the cluster secret, both node ids and the sending
// node's random per-process epoch (HKDF-SHA256), so nothing but the secret
// needs agreeing on and a restarted node never reuses a key. The control
// plane (NATS, in package cluster) only tells each side who the peer is
// (AddPeer) and which tracks to export and import; this package has no bus
// dependency.
//
// On the origin, an Export is one more sink on the published track
// (sfu.Sink). Each simulcast layer keeps its own SSRC (base + layer),
// sequence numbers and timestamps, so an edge's down tracks switch layers at
// keyframes exactly as on the origin. The origin keeps the last encrypted
// datagrams of each layer in a fixed ring and answers the edge's NACKs from
// it; it forwards the publisher's sender reports, and turns the edge's PLIs
// into keyframe requests on the source.
//
// On the edge, an Import is an sfu.Source: down tracks, the allocator and
// the recorder consume it like a local publisher's track. It detects gaps
// and sends NACKs, coalesces keyframe requests into PLIs, and tells the
// origin in-band which layers its sinks want (dynacast across the relay).
//
// The design and the wire format are in docs/cluster-relay.md.
package relay

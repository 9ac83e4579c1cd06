package protocol

// NotifyReconnect asks the client to resume its session through another
// node of the cluster (docs/PROTOCOL.md "reconnect"): this node is
// draining. The server closes the socket right after it; the client
// resumes with its resume token through another node and gets
// `newConnections`.
const NotifyReconnect = "reconnect"

// ReasonDrain is the reason of a `reconnect` from a node that is draining
// (SIGTERM on a cluster node).
const ReasonDrain = "drain"

// ReconnectParams is the params of `reconnect`.
type ReconnectParams struct {
	Reason string `json:"reason"`
}

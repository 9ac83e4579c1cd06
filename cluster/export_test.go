package cluster

// Crash stops the node as a SIGKILL would, as far as the others can tell:
// no goodbye, heartbeats stop, the embedded NATS server drops its routes.
func (n *Node) Crash() {
	n.closeOnce.Do(func() {
		close(n.stop)
		n.bus.nc.Close()
		if n.bus.ns != nil {
			n.bus.ns.Shutdown()
		}
		// The dead process's sockets close with it: the relay's too (its
		// goroutines would otherwise outlive the test, see leak_test.go).
		if n.media.t != nil {
			_ = n.media.t.Close()
		}
	})
}

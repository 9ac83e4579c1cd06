package cluster

// Crash stops the node as a SIGKILL would, as far as the others can tell:
// no goodbye, heartbeats stop, the embedded NATS server drops its routes,
// the relay socket closes.
func (n *Node) Crash() {
	n.closeOnce.Do(func() {
		close(n.stop)
		n.bus.nc.Close()
		if n.media.t != nil {
			_ = n.media.t.Close()
		}
		if n.bus.ns != nil {
			n.bus.ns.Shutdown()
			n.bus.ns.WaitForShutdown()
		}
		n.wg.Wait()
	})
}

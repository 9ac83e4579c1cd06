package sfu

import "runtime"

// Gathering a batch: a published packet (a video frame's last packet, an
// audio packet) wakes every subscriber's writer at once, and each writer's
// first datagram woke the flusher, which Go's scheduler runs next on that
// writer's processor (the woken goroutine goes first): the flusher took
// one writer's datagrams, made one sendmmsg, went back to sleep, and the
// next writer woke it again. A node sent about one system call per
// subscriber per published packet, and the thread behind each went idle
// and was woken again in between (futex calls, context switches, sysmon
// retaking processors from threads in system calls), which cost more than
// the sends. That cost is per node and per published packet: a cluster
// edge with a third of the viewers paid it as often as one node with all
// of them (docs/cluster-relay.md "Edge wake-ups").
//
// So the flusher yields first: runtime.Gosched puts it behind the writers
// already runnable, which queue their datagrams in the meantime, and it
// yields again while the queue keeps growing, at most gatherRounds times.
// A yield with nothing else runnable returns at once, so an idle socket
// pays a few hundred nanoseconds per send, and nothing waits on a timer.
// A queue of gatherEnough datagrams is sent without waiting for more.
const (
	gatherRounds = 8
	gatherEnough = 512
)

// gather yields to the writers while they are adding to the queue.
func (b *batchConn) gather() {
	n := b.pendingLen()
	for range gatherRounds {
		if n >= gatherEnough {
			return
		}
		runtime.Gosched()
		m := b.pendingLen()
		if m == n {
			return
		}
		n = m
	}
}

func (b *batchConn) pendingLen() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.pending)
}

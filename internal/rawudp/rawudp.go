// Package rawudp reads and writes a UDP socket with system calls the Go
// scheduler does not see (syscall.RawSyscall), for the media hot path.
//
// Why: every ordinary system call enters the scheduler's syscall state,
// and the first one after the whole process was idle wakes the runtime's
// monitor thread (sysmon), which then polls every 20 µs (about 70 µs with
// the kernel's timer slack) until every processor is idle again. A media
// node wakes from idle hundreds of times a second (each published frame,
// each subscriber's RTCP), so sysmon's sleeps and wake-ups were 16–21% of a
// cluster node's CPU and 9% of a single node's (perf, docs/cluster-relay.md
// "Edge wake-ups"); a cluster node, with a third of the viewers, is idle
// more often and paid it more per delivered packet.
//
// The sockets are non-blocking (Go's net package makes them so), so these
// calls never block: one that would returns EAGAIN and the caller waits in
// the network poller through syscall.RawConn, as the net package does.
// sysmon's other duties (preempting long-running goroutines, retaking a
// processor from a blocked call) do not concern calls that return at once.
//
// Where the platform has no raw path (not Linux), Conn uses the net
// package's calls.
package rawudp

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"syscall"
)

// Message is one datagram, or one segmented run (UDP GSO, with its control
// message in OOB), to send.
type Message struct {
	Buffers [][]byte
	OOB     []byte
	To      netip.AddrPort
}

// opError wraps a failed call as the net package does, so callers' checks
// (errors.Is(err, syscall.EIO), net.ErrClosed) work the same.
func opError(op, call string, errno syscall.Errno) error {
	return &net.OpError{Op: op, Net: "udp", Err: os.NewSyscallError(call, errno)}
}

// ErrTooLarge: a message has more buffers than one send takes.
var ErrTooLarge = errors.New("rawudp: too many buffers in one message")

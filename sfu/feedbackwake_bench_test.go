package sfu

import (
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pion/rtcp"
)

// BenchmarkFeedbackWakeups is what viewers' congestion control feedback
// costs a node that has nothing else to do (a cluster edge between two
// relayed frames): 50 clients, in another process (this test binary run
// again), each send transport-wide feedback every 100 ms at its own phase
// to a batched socket with a tap per client; this process only reads. It
// reports this process's CPU time and context switches (all threads) per
// feedback packet. The tap's own work (decrypt, decode, apply) is ~1–2 µs
// (BenchmarkBWEPerPacketTapped); the rest is the process waking up for
// each datagram and going idle again, which a busier node shares among the
// datagrams that arrive while it is awake (docs/cluster-relay.md, "What is
// left"). Fixed 3 s: run with -benchtime 1x.
//
//	go test -run X -bench FeedbackWakeups -benchtime 1x -count 3 ./sfu/
func BenchmarkFeedbackWakeups(b *testing.B) {
	const clients, d = 50, 3 * time.Second
	server := newBatchConn(listenLoopback(b), false, nil)
	defer server.Close()
	keys := tapKeys()
	var files []*os.File
	for range clients {
		c := listenLoopback(b)
		server.tapFrom(c.LocalAddr().(*net.UDPAddr).AddrPort(), &rtcpTap{est: newBWE(0)}, keys)
		f, err := c.File()
		c.Close()
		if err != nil {
			b.Fatal(err)
		}
		files = append(files, f)
	}
	go func() { // what pion's UDP mux does: read until the socket closes
		buf := make([]byte, 1500)
		for {
			if _, _, err := server.ReadFromAddrPort(buf); err != nil {
				return
			}
		}
	}()
	cmd := exec.Command(os.Args[0], "-test.run=^TestFeedbackSenderProcess$")
	cmd.Env = append(os.Environ(), "STARLING_FEEDBACK_TO="+server.LocalAddr().String(),
		"STARLING_FEEDBACK_CLIENTS="+strconv.Itoa(clients), "STARLING_FEEDBACK_FOR="+d.String())
	cmd.ExtraFiles = files
	before := ReadCounters().BWEFeedbackTapped
	var r0, r1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &r0)
	b.ResetTimer()
	out, err := cmd.CombinedOutput()
	b.StopTimer()
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &r1)
	for _, f := range files {
		f.Close()
	}
	if err != nil {
		b.Fatalf("sender: %v\n%s", err, out)
	}
	n := float64(ReadCounters().BWEFeedbackTapped - before)
	if n == 0 {
		b.Fatal("no feedback read")
	}
	cpu := time.Duration(r1.Utime.Nano() + r1.Stime.Nano() - r0.Utime.Nano() - r0.Stime.Nano())
	b.ReportMetric(float64(cpu.Nanoseconds())/1e3/n, "cpu-µs/feedback")
	b.ReportMetric(float64(r1.Nvcsw+r1.Nivcsw-r0.Nvcsw-r0.Nivcsw)/n, "switches/feedback")
	b.ReportMetric(n/d.Seconds(), "feedback/s")
}

// TestFeedbackSenderProcess is BenchmarkFeedbackWakeups's other process;
// otherwise it skips.
func TestFeedbackSenderProcess(t *testing.T) {
	to := os.Getenv("STARLING_FEEDBACK_TO")
	if to == "" {
		t.Skip("the sender of BenchmarkFeedbackWakeups, run by it")
	}
	clients, _ := strconv.Atoi(os.Getenv("STARLING_FEEDBACK_CLIENTS"))
	d, _ := time.ParseDuration(os.Getenv("STARLING_FEEDBACK_FOR"))
	dst, err := net.ResolveUDPAddr("udp", to)
	if err != nil {
		t.Fatal(err)
	}
	keys := tapKeys()
	raw := feedbacks(t, 64, 16)
	var wg sync.WaitGroup
	stop := time.Now().Add(d)
	for i := range clients {
		c, err := net.FileConn(os.NewFile(uintptr(3+i), "client"))
		if err != nil {
			t.Fatal(err)
		}
		enc := clientSRTCP(t, keys)
		var pkts [][]byte
		for _, p := range raw {
			var fb rtcp.TransportLayerCC
			if err := fb.Unmarshal(p); err != nil {
				t.Fatal(err)
			}
			pkts = append(pkts, encryptRTCP(t, enc, &fb))
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			uc := c.(*net.UDPConn)
			time.Sleep(time.Duration(i) * 100 * time.Millisecond / time.Duration(clients)) // its own phase
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for k := 0; time.Now().Before(stop); k++ { // 30 packets: the tap's replay window never sees one twice
				_, _ = uc.WriteToUDP(pkts[k%len(pkts)], dst)
				<-tick.C
			}
		}()
	}
	wg.Wait()
}

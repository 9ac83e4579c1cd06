package leakcheck

import (
	"io"
	"net"
	"os"
	"strings"
	"testing"
)

// TestFDWatchReports: past its threshold the watch writes the open files
// by kind and the goroutines, once.
func TestFDWatchReports(t *testing.T) {
	if _, err := os.Stat("/proc/self/fd"); err != nil {
		t.Skip("no /proc/self/fd here")
	}
	out := fdReport(t)
	for _, want := range []string{"open files (half the limit): by kind", "pipe", "leakcheck: goroutines:", "TestFDWatchReports"} {
		if !strings.Contains(out, want) {
			t.Errorf("the report lacks %q:\n%s", want, out)
		}
	}
}

// TestFDWatchNamesSockets: a TCP socket is reported by its state and far
// address, so a reconnect loop that leaves its failed attempts open shows
// as one address in CLOSE-WAIT.
func TestFDWatchNamesSockets(t *testing.T) {
	if _, err := os.Stat("/proc/self/net/tcp"); err != nil {
		t.Skip("no /proc/self/net/tcp here")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	in, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	_ = in.Close()
	if _, err := c.Read(make([]byte, 1)); err != io.EOF { // the peer's FIN is here: c is in CLOSE-WAIT
		t.Fatalf("read from a connection its peer closed: %v, want EOF", err)
	}

	out := fdReport(t)
	for _, want := range []string{"tcp CLOSE-WAIT to " + ln.Addr().String(), "tcp LISTEN"} {
		if !strings.Contains(out, want) {
			t.Errorf("the report lacks %q:\n%s", want, out)
		}
	}
}

// fdReport runs a watch with threshold 1 and returns what it wrote.
func fdReport(t *testing.T) string {
	t.Helper()
	r, wr, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	saved := os.Stderr
	os.Stderr = wr
	w := &fdWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go w.run(1)
	<-w.done
	os.Stderr = saved
	wr.Close()
	out, _ := io.ReadAll(r)
	w.Stop()
	return string(out)
}

func TestProcAddr(t *testing.T) {
	for in, want := range map[string]string{
		"0100007F:1F90":                         "127.0.0.1:8080",
		"00000000000000000000000001000000:0050": "[::1]:80",
		"0000000000000000FFFF00000100007F:0050": "127.0.0.1:80", // v4-mapped
		"zz:1":                                  "zz:1",
	} {
		if got := procAddr(in); got != want {
			t.Errorf("procAddr(%q) = %q, want %q", in, got, want)
		}
	}
}

package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/starling-rtc/starling/auth"
)

// ServerProcess is a starling binary this process started on loopback.
type ServerProcess struct {
	cmd  *exec.Cmd
	addr string
	done chan error
}

// freePort asks the kernel for a free loopback port of the network.
func freePort(network string) (int, error) {
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port, nil
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// StartServer runs the starling binary at bin on free loopback ports, media
// bound to 127.0.0.1 and ICE-TCP off, and waits until /healthz answers.
// Its log (level logLevel) goes to logw; extra flags (e.g.
// --congestion-control=false) come after the generator's own.
func StartServer(ctx context.Context, bin, logLevel string, logw io.Writer, extra ...string) (*ServerProcess, error) {
	return StartServerWith(ctx, ServerOptions{Bin: bin, LogLevel: logLevel, Log: logw, Args: extra})
}

// ServerOptions configure a started server.
type ServerOptions struct {
	Bin      string
	LogLevel string    // default error
	Log      io.Writer // its stdout and stderr; nil = discarded
	// Keys, if any, are given to the server in $STARLING_KEYS (it then
	// wants a token for every join and every API call).
	Keys auth.Keys
	// RecordingsDir is passed as --recordings-dir when set.
	RecordingsDir string
	Args          []string // extra flags, after the generator's own
}

// StartServerWith is StartServer with every option.
func StartServerWith(ctx context.Context, o ServerOptions) (*ServerProcess, error) {
	bin := o.Bin
	if bin == "" {
		return nil, errors.New("no server binary: build one with `go build -o /tmp/starling ./cmd/starling` and pass --server-bin")
	}
	if st, err := os.Stat(bin); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		return nil, fmt.Errorf("server binary %q is not an executable file", bin)
	}
	if o.LogLevel == "" {
		o.LogLevel = "error"
	}
	httpPort, err := freePort("tcp")
	if err != nil {
		return nil, err
	}
	udpPort, err := freePort("udp")
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(httpPort)
	args := []string{"--bind", addr, "--udp-port", strconv.Itoa(udpPort), "--tcp-port", "-1",
		"--media-bind-ip", "127.0.0.1", "--log-level", o.LogLevel}
	if o.RecordingsDir != "" {
		args = append(args, "--recordings-dir", o.RecordingsDir)
	}
	cmd := exec.Command(bin, append(args, o.Args...)...)
	cmd.Stdout, cmd.Stderr = o.Log, o.Log
	// The environment decides whether the server is open: never inherit
	// keys from the caller's shell, set exactly these.
	env := make([]string, 0, len(os.Environ())+1)
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, auth.EnvKeys+"=") {
			env = append(env, e)
		}
	}
	if len(o.Keys) > 0 {
		env = append(env, auth.EnvKeys+"="+FormatKeys(o.Keys))
	}
	cmd.Env = env
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	s := &ServerProcess{cmd: cmd, addr: addr, done: make(chan error, 1)}
	go func() { s.done <- cmd.Wait() }()

	deadline := time.Now().Add(15 * time.Second)
	hc := &http.Client{Timeout: time.Second}
	for {
		resp, err := hc.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		select {
		case err := <-s.done:
			return nil, fmt.Errorf("server exited before answering /healthz: %v", err)
		case <-ctx.Done():
			s.Stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, errors.New("server did not answer /healthz within 15 s")
		}
	}
}

// PID is the server's process id.
func (s *ServerProcess) PID() int { return s.cmd.Process.Pid }

// URL is the signaling WebSocket URL.
func (s *ServerProcess) URL() string { return "ws://" + s.addr + "/v1/rtc" }

// Stop asks the server to shut down (SIGTERM) and kills it after 10 s.
func (s *ServerProcess) Stop() error {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.done:
		s.done <- err
		return err
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		err := <-s.done
		s.done <- err
		return fmt.Errorf("server did not stop within 10 s; killed: %w", err)
	}
}

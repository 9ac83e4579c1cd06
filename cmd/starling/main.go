// Command starling runs a Starling SFU node.
//
//	starling [flags]        run the server (see --help)
//	starling token [flags]  print an access token (see starling token --help)
//	starling compose MANIFEST  render a recording into one file (see starling compose --help)
//	starling recover DIR       repair a recording folder left by a crash
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/server"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "token" {
		return runToken(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "compose" {
		return runCompose(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "recover" {
		return runRecover(args[1:], stdout, stderr)
	}
	cfg, err := config.Load(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "starling:", err)
		return 2
	}
	log := cfg.Logger(stderr)
	srv, err := server.New(cfg, log)
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	srv.Serve()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	stop()
	if srv.Cluster() != nil { // hand the participants over to the other nodes first
		drainCtx, cancelDrain := context.WithTimeout(context.Background(), srv.DrainTimeout())
		srv.Drain(drainCtx)
		cancelDrain()
	}
	log.Info("shutting down: sending leave to every participant")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		log.Warn("shutdown", "err", err)
		return 1
	}
	log.Info("stopped")
	return 0
}

package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/starling-rtc/starling/auth"
	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/server"
)

const (
	cliKey    = "APIcli"
	cliSecret = "cli-secret-cli-secret-cli-secret-cli"
)

func tokenCmd(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(append([]string{"token"}, args...), &out, &errOut)
	return strings.TrimSpace(out.String()), errOut.String(), code
}

func TestTokenCommand(t *testing.T) {
	t.Setenv(config.EnvConfig, "")
	t.Setenv(auth.EnvKeys, "")
	v := auth.NewVerifier(auth.Keys{cliKey: cliSecret})

	tok, stderr, code := tokenCmd(t, "--room", "r", "--identity", "ann", "--key", cliKey, "--secret", cliSecret, "--ttl", "10m")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	c, perr := v.Verify(tok)
	if perr != nil {
		t.Fatalf("token does not verify: %v", perr)
	}
	g := c.Grants
	if c.Subject != "ann" || c.Issuer != cliKey || g.Room != "r" || !g.Publish() || !g.Subscribe() || !g.PublishData() || g.Admin || g.Record {
		t.Fatalf("default token claims wrong: %+v", c)
	}
	if left := time.Until(c.ExpiresAt.Time); left < 9*time.Minute || left > 11*time.Minute {
		t.Fatalf("exp in %v, want ~10m", left)
	}

	// Keys from the environment, explicit grants.
	t.Setenv(auth.EnvKeys, cliKey+":"+cliSecret)
	tok, stderr, code = tokenCmd(t, "--room", "r", "--identity", "bot", "--grant", "subscribe,record")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if c, perr = v.Verify(tok); perr != nil {
		t.Fatal(perr)
	}
	if g := c.Grants; g.Publish() || !g.Subscribe() || g.PublishData() || !g.Record || g.Admin {
		t.Fatalf("--grant subscribe,record gave %+v", g)
	}
	// An admin token may omit the room.
	if _, stderr, code = tokenCmd(t, "--identity", "ops", "--grant", "admin"); code != 0 {
		t.Fatalf("admin token: exit %d: %s", code, stderr)
	}

	for _, bad := range [][]string{
		{"--identity", "x"}, // no room
		{"--room", "r"},     // no identity
		{"--room", "r", "--identity", "x", "--grant", "fly"}, // unknown grant
		{"--room", "r", "--identity", "x", "--key", "nope"},  // unknown key
		{"--room", "r", "--identity", "x", "--secret", "s"},  // secret without key
		{"--room", "r", "--identity", "x", "--ttl", "0s"},
	} {
		if _, stderr, code := tokenCmd(t, bad...); code == 0 || stderr == "" {
			t.Errorf("starling token %q: exit %d, stderr %q; want an error", bad, code, stderr)
		}
	}
}

// TestTokenAcceptedByServer: `starling token` output joins a server with the same key.
func TestTokenAcceptedByServer(t *testing.T) {
	t.Setenv(config.EnvConfig, "")
	t.Setenv(auth.EnvKeys, cliKey+":"+cliSecret)
	cfg, err := config.Load([]string{"--bind", "127.0.0.1:0", "--udp-port", "0", "--tcp-port", "0", "--media-bind-ip", "127.0.0.1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	srv.Serve()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}()

	api, err := client.LoopbackAPI()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tok, stderr, code := tokenCmd(t, "--room", "cli", "--identity", "dora")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	c, err := client.Dial(ctx, srv.SignalingURL(), "cli", client.Options{Token: tok, API: api})
	if err != nil {
		t.Fatalf("join with the printed token: %v", err)
	}
	defer c.Close()
	if p := srv.Rooms().Room("cli").Participant(c.ParticipantID()); p == nil || p.Identity() != "dora" {
		t.Fatal("joined participant does not have the token's identity")
	}
	// The same command for another room is refused with 403.
	tok, _, _ = tokenCmd(t, "--room", "other", "--identity", "dora")
	_, err = client.Dial(ctx, srv.SignalingURL(), "cli", client.Options{Token: tok, API: api})
	var perr *protocol.Error
	if !errors.As(err, &perr) || perr.Code != protocol.CodeForbidden {
		t.Fatalf("token for another room: %v, want 403", err)
	}
}

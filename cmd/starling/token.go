package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/starling-rtc/starling/auth"
	"github.com/starling-rtc/starling/config"
)

// grantNames are the --grant values and what each sets.
var grantNames = []string{"publish", "subscribe", "data", "admin", "record"}

// runToken is `starling token`: it prints an access token.
func runToken(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("starling token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	room := fs.String("room", "", "`room` the token joins (or, with admin, the only room it administers)")
	identity := fs.String("identity", "", "participant `identity` (the token's sub); a second join with it replaces the first")
	grants := fs.String("grant", "publish,subscribe,data", "comma-separated `grants`: "+strings.Join(grantNames, ", ")+
		"; those not listed are denied")
	ttl := fs.Duration("ttl", time.Hour, "how long the token is valid")
	key := fs.String("key", "", "API `key` to sign with (default: the only key of the config file or $"+auth.EnvKeys+")")
	secret := fs.String("secret", "", "the key's `secret` (default: looked up in the config file or $"+auth.EnvKeys+")")
	configPath := fs.String("config", "", "YAML configuration `file` with a keys: map (default: $"+config.EnvConfig+")")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: starling token --room R --identity I [--grant %s] [--ttl 1h] [--key K [--secret S]]\n\n"+
			"Prints an access token (JWT, HS256) for joining a room, or with --grant admin for the admin API.\n\nFlags:\n",
			strings.Join(grantNames, ","))
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "starling token: "+format+"\n", a...)
		return 2
	}
	if fs.NArg() > 0 {
		return fail("unexpected argument %q (all options are flags; see --help)", fs.Arg(0))
	}

	var claims auth.Claims
	granted := map[string]bool{}
	for _, g := range strings.Split(*grants, ",") {
		g = strings.ToLower(strings.TrimSpace(g))
		if g == "" {
			continue
		}
		known := false
		for _, n := range grantNames {
			known = known || n == g
		}
		if !known {
			return fail("unknown grant %q: want some of %s", g, strings.Join(grantNames, ", "))
		}
		granted[g] = true
	}
	pub, sub, data := granted["publish"], granted["subscribe"], granted["data"]
	claims.Grants = auth.Grants{
		Room: *room, CanPublish: &pub, CanSubscribe: &sub, CanPublishData: &data,
		Admin: granted["admin"], Record: granted["record"],
	}
	claims.Subject = *identity
	switch {
	case *identity == "":
		return fail("--identity is required")
	case *room == "" && !granted["admin"]:
		return fail("--room is required (only an admin token may omit it, to cover every room)")
	case *ttl <= 0:
		return fail("--ttl must be positive")
	}

	k, s := *key, *secret
	if s == "" {
		var err error
		if k, s, err = lookupKey(*configPath, k, stderr); err != nil {
			return fail("%v", err)
		}
	} else if k == "" {
		return fail("--secret needs --key (the API key the server knows the secret by)")
	}
	if len(s) < auth.MinSecretLen {
		fmt.Fprintf(stderr, "starling token: warning: the secret is shorter than %d bytes; the server refuses such keys\n", auth.MinSecretLen)
	}
	tok, err := auth.Issue(k, s, claims, *ttl)
	if err != nil {
		return fail("%v", err)
	}
	fmt.Fprintln(stdout, tok)
	return 0
}

// lookupKey finds the secret of key (or the only key) in the config file and
// $STARLING_KEYS, exactly as the server would load them.
func lookupKey(configPath, key string, stderr io.Writer) (string, string, error) {
	var args []string
	if configPath != "" {
		args = []string{"--config", configPath}
	}
	cfg, err := config.Load(args, stderr)
	if err != nil {
		return "", "", err
	}
	keys := auth.Keys(cfg.Keys)
	if len(keys) == 0 {
		return "", "", fmt.Errorf("no API keys: give --key and --secret, set $%s, or use a config file with a \"keys\" section", auth.EnvKeys)
	}
	if key == "" {
		if len(keys) > 1 {
			return "", "", fmt.Errorf("several API keys are configured (%s): pick one with --key", strings.Join(keys.Names(), ", "))
		}
		key = keys.Names()[0]
	}
	s, ok := keys[key]
	if !ok {
		return "", "", fmt.Errorf("API key %q is not configured (have %s)", key, strings.Join(keys.Names(), ", "))
	}
	return key, s, nil
}

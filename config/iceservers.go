package config

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// STUN and TURN servers for clients: the --ice-server syntax and the URL
// checks Validate runs on them.

// iceServerFlag collects repeated --ice-server values.
type iceServerFlag []ICEServer

func (f *iceServerFlag) String() string {
	var parts []string
	for _, s := range *f {
		parts = append(parts, strings.Join(s.URLs, ","))
	}
	return strings.Join(parts, " ")
}

func (f *iceServerFlag) Set(s string) error {
	srv, err := ParseICEServer(s)
	if err != nil {
		return err
	}
	*f = append(*f, srv)
	return nil
}

// ParseICEServer parses the --ice-server syntax: comma-separated items, each
// either a URL or one of username=VALUE (alias user=VALUE) and
// credential=VALUE (alias password=VALUE). For example
//
//	stun:stun.example.org:3478
//	turn:turn.example.org:3478?transport=udp,turns:turn.example.org:5349,username=alice,credential=s3cret
//
// Values cannot contain commas; put such servers in the YAML file instead.
// The URLs themselves are checked by Validate.
func ParseICEServer(s string) (ICEServer, error) {
	var srv ICEServer
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		key, val, hasEq := strings.Cut(item, "=")
		switch {
		case item == "":
			continue
		case hasEq && (key == "username" || key == "user"):
			srv.Username = val
		case hasEq && (key == "credential" || key == "password"):
			srv.Credential = val
		default:
			srv.URLs = append(srv.URLs, item)
		}
	}
	if len(srv.URLs) == 0 {
		return srv, fmt.Errorf("ice server %q has no URL (want e.g. stun:host:3478 or turn:host:3478,username=U,credential=C)", s)
	}
	return srv, nil
}

// checkICEURL validates a STUN/TURN URL (RFC 7064, RFC 7065) and reports whether it is TURN.
func checkICEURL(u string) (turn bool, err error) {
	scheme, rest, ok := strings.Cut(u, ":")
	scheme = strings.ToLower(scheme)
	switch {
	case ok && (scheme == "stun" || scheme == "stuns"):
	case ok && (scheme == "turn" || scheme == "turns"):
		turn = true
	default:
		return false, errors.New(`must start with stun:, stuns:, turn: or turns: (e.g. "stun:host:3478")`)
	}
	hostport, query, hasQuery := strings.Cut(rest, "?")
	if hasQuery {
		if !turn {
			return false, errors.New("STUN URLs take no ?query")
		}
		t, ok := strings.CutPrefix(query, "transport=")
		if !ok || (t != "udp" && t != "tcp") {
			return false, errors.New("the only query allowed is ?transport=udp or ?transport=tcp")
		}
	}
	if strings.HasPrefix(hostport, "//") {
		return false, fmt.Errorf("write %s:host:port, without //", scheme)
	}
	host, port := hostport, ""
	if h, p, err := net.SplitHostPort(hostport); err == nil {
		host, port = h, p
	} else if strings.HasPrefix(hostport, "[") && strings.HasSuffix(hostport, "]") {
		host = hostport[1 : len(hostport)-1]
	}
	if host == "" || strings.ContainsAny(host, "/@ ") {
		return false, errors.New("missing or malformed host")
	}
	if port != "" {
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return false, fmt.Errorf("bad port %q", port)
		}
	}
	return turn, nil
}

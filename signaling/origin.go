package signaling

import (
	"net/http"
	"net/url"
	"strings"
)

// OriginChecker returns a CheckOrigin function for Options: a WebSocket
// upgrade is allowed when the request has no Origin header (native and CLI
// clients), when the Origin is the server's own host (the embedded web app),
// or when it is one of allowed ("scheme://host[:port]", case-insensitive);
// "*" in allowed allows every origin.
func OriginChecker(allowed []string) func(r *http.Request) bool {
	set := map[string]bool{}
	any := false
	for _, a := range allowed {
		a = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(a), "/"))
		if a == "*" {
			any = true
		}
		set[a] = true
	}
	return func(r *http.Request) bool {
		origin := r.Header.Get("Origin")
		if origin == "" || any {
			return true
		}
		if set[strings.ToLower(strings.TrimSuffix(origin, "/"))] {
			return true
		}
		u, err := url.Parse(origin)
		return err == nil && u.Host != "" && strings.EqualFold(u.Host, r.Host)
	}
}

// Package redact hides the credentials of URLs before they are logged or
// shown in an error: an external NATS URL carries its user and password
// (or a token) in the URL itself (--nats-url nats://user:pass@host:4222),
// and logs travel further than the configuration does.
package redact

import "strings"

// Mask replaces a credential.
const Mask = "xxxxx"

// URLs returns the comma-separated URLs of s with the password of each
// (user:password@) replaced by Mask, and a user part alone (which NATS
// takes for a token) replaced whole. It works on text that does not parse
// as a URL too, since an error about a malformed URL shows it.
func URLs(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		parts[i] = one(p)
	}
	return strings.Join(parts, ",")
}

func one(u string) string {
	start := strings.Index(u, "://")
	if start < 0 {
		start = 0
	} else {
		start += 3
	}
	rest := u[start:]
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	at := strings.LastIndex(rest[:end], "@")
	if at < 0 {
		return u // no credentials
	}
	info := rest[:at]
	if user, _, ok := strings.Cut(info, ":"); ok {
		info = user + ":" + Mask
	} else {
		info = Mask
	}
	return u[:start] + info + rest[at:]
}

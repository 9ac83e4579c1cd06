// Package auth issues and verifies Starling access tokens: JWTs signed with
// HS256 by an API key's secret (PROTOCOL.md, "Access tokens").
//
// A token's claims are iss = the API key, sub = the participant identity,
// exp = the expiry, and grants = what the holder may do:
//
//	{"iss":"APIabc","sub":"alice","exp":1767225600,
//	 "grants":{"room":"standup","canPublish":true,"canSubscribe":true,"canPublishData":true}}
//
// canPublish, canSubscribe and canPublishData default to true when omitted,
// so a token that only names a room lets its holder take a normal part in
// it; admin and record default to false.
package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/starling-rtc/starling/internal/clock"
	"github.com/starling-rtc/starling/protocol"
)

// MinSecretLen is the shortest secret accepted: an HS256 secret shorter than
// the 32-byte hash can be brute-forced offline from any token it signed.
const MinSecretLen = 32

// MaxIdentity is the longest identity (sub) accepted, in bytes.
const MaxIdentity = 256

// MaxTokenLen bounds the token string, so nobody makes the server parse megabytes.
const MaxTokenLen = 8 << 10

// EnvKeys names the environment variable holding "key1:secret1,key2:secret2".
const EnvKeys = "STARLING_KEYS"

// Grants is the grants claim.
type Grants struct {
	// Room the token is for. A join token must name the room it joins; an
	// admin token with a room is limited to that room, without one it
	// covers every room.
	Room string `json:"room,omitempty"`
	// CanPublish, CanSubscribe and CanPublishData are true when omitted.
	CanPublish     *bool `json:"canPublish,omitempty"`
	CanSubscribe   *bool `json:"canSubscribe,omitempty"`
	CanPublishData *bool `json:"canPublishData,omitempty"`
	// Admin allows the admin HTTP API (/v1/rooms...).
	Admin bool `json:"admin,omitempty"`
	// Record allows starting and stopping recordings.
	Record bool `json:"record,omitempty"`
}

func orTrue(b *bool) bool { return b == nil || *b }

// Publish reports whether the holder may publish tracks.
func (g Grants) Publish() bool { return orTrue(g.CanPublish) }

// Subscribe reports whether the holder may receive others' tracks.
func (g Grants) Subscribe() bool { return orTrue(g.CanSubscribe) }

// PublishData reports whether the holder's data messages are relayed.
func (g Grants) PublishData() bool { return orTrue(g.CanPublishData) }

// Claims are a Starling token's claims.
type Claims struct {
	jwt.RegisteredClaims
	Grants Grants `json:"grants"`
}

// UnmarshalJSON reads the claims as the JWT library does, but refuses an
// exp, nbf or iat that is not a JSON number: RFC 7519 makes them
// NumericDates, and the library read a quoted number ("exp":"1767225600")
// as one, so this server took tokens other verifiers refuse, and a token
// minted wrongly worked here until it met one of them. null reads as
// absent, as the library reads it.
func (c *Claims) UnmarshalJSON(b []byte) error {
	var dates struct {
		Exp json.RawMessage `json:"exp"`
		Nbf json.RawMessage `json:"nbf"`
		Iat json.RawMessage `json:"iat"`
	}
	if err := json.Unmarshal(b, &dates); err != nil {
		return err
	}
	for _, d := range []struct {
		claim string
		raw   json.RawMessage
	}{{"exp", dates.Exp}, {"nbf", dates.Nbf}, {"iat", dates.Iat}} {
		if len(d.raw) == 0 || string(d.raw) == "null" {
			continue
		}
		if ch := d.raw[0]; ch != '-' && (ch < '0' || ch > '9') {
			return &dateTypeError{claim: d.claim}
		}
	}
	type plain Claims // without this method
	return json.Unmarshal(b, (*plain)(c))
}

// dateTypeError: a NumericDate claim that is not a JSON number.
type dateTypeError struct{ claim string }

func (e *dateTypeError) Error() string {
	return fmt.Sprintf("%q must be a NumericDate: a JSON number of seconds since 1970, not quoted", e.claim)
}

// Identity is the participant identity (sub).
func (c *Claims) Identity() string { return c.Subject }

// Keys maps API keys to their secrets.
type Keys map[string]string

// ParseKeys parses "key1:secret1,key2:secret2" (the STARLING_KEYS syntax).
// Spaces around items are ignored; an empty string gives no keys.
func ParseKeys(s string) (Keys, error) {
	keys := Keys{}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		k, secret, ok := strings.Cut(item, ":")
		k, secret = strings.TrimSpace(k), strings.TrimSpace(secret)
		if !ok || k == "" || secret == "" {
			return nil, fmt.Errorf("API key %q: want key:secret", redact(item))
		}
		if _, dup := keys[k]; dup {
			return nil, fmt.Errorf("API key %q is listed twice", k)
		}
		keys[k] = secret
	}
	return keys, nil
}

// redact hides what looks like a secret in an error message.
func redact(item string) string {
	if k, _, ok := strings.Cut(item, ":"); ok {
		return k + ":…"
	}
	if len(item) > 4 {
		return item[:4] + "…"
	}
	return item
}

// Check reports every problem with the keys (empty key, short secret).
func (k Keys) Check() []string {
	var errs []string
	for _, key := range k.Names() {
		secret := k[key]
		switch {
		case strings.ContainsAny(key, ":, \t"):
			errs = append(errs, fmt.Sprintf("API key %q: must not contain ':', ',' or spaces", key))
		case len(secret) < MinSecretLen:
			errs = append(errs, fmt.Sprintf("API key %q: secret is %d bytes, want at least %d (e.g. openssl rand -hex 32)", key, len(secret), MinSecretLen))
		}
	}
	return errs
}

// Names lists the keys, sorted.
func (k Keys) Names() []string {
	names := make([]string, 0, len(k))
	for n := range k {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Issue signs claims with secret (HS256), setting iss = key and exp = now + ttl.
func Issue(key, secret string, claims Claims, ttl time.Duration) (string, error) {
	if key == "" || secret == "" {
		return "", errors.New("auth: an API key and its secret are required")
	}
	if claims.Subject == "" {
		return "", errors.New("auth: an identity (sub) is required")
	}
	if ttl <= 0 {
		return "", errors.New("auth: ttl must be positive")
	}
	now := clock.Wall() // the wall clock tests can step
	claims.Issuer = key
	claims.IssuedAt = jwt.NewNumericDate(now)
	claims.NotBefore = jwt.NewNumericDate(now)
	claims.ExpiresAt = jwt.NewNumericDate(now.Add(ttl))
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
}

// Verifier checks tokens against a set of API keys.
type Verifier struct {
	keys   Keys
	leeway time.Duration
	now    func() time.Time
}

// NewVerifier makes a verifier for keys; nil or empty keys mean the server
// runs open and Verify always fails.
func NewVerifier(keys Keys) *Verifier {
	cp := make(Keys, len(keys))
	for k, s := range keys {
		cp[k] = s
	}
	return &Verifier{keys: cp, leeway: 5 * time.Second, now: clock.Wall}
}

// Enabled reports whether any key is configured (tokens are required).
func (v *Verifier) Enabled() bool { return v != nil && len(v.keys) > 0 }

// Secret returns the secret of an API key.
func (v *Verifier) Secret(key string) (string, bool) {
	if v == nil {
		return "", false
	}
	s, ok := v.keys[key]
	return s, ok
}

// Keys lists the configured API keys, sorted.
func (v *Verifier) Keys() []string {
	if v == nil {
		return nil
	}
	return v.keys.Names()
}

// Verify parses and checks a token: signature (HS256 only) by the secret of
// the key named in iss, expiry (required), not-before, and a non-empty sub.
// Every failure is a 401 protocol error whose message says what was wrong.
func (v *Verifier) Verify(token string) (*Claims, *protocol.Error) {
	unauthorized := func(format string, args ...any) *protocol.Error {
		return protocol.Errorf(protocol.CodeUnauthorized, format, args...)
	}
	if !v.Enabled() {
		return nil, unauthorized("token: the server has no API keys configured")
	}
	if token == "" {
		return nil, unauthorized(`token required: join with a "token" signed by one of the server's API keys`)
	}
	if len(token) > MaxTokenLen {
		return nil, unauthorized("token is longer than %d bytes", MaxTokenLen)
	}
	var claims Claims
	var unknownKey string
	parsed, err := jwt.ParseWithClaims(token, &claims, func(t *jwt.Token) (any, error) {
		iss, _ := t.Claims.GetIssuer()
		secret, ok := v.keys[iss]
		if !ok {
			unknownKey = iss
			return nil, errUnknownKey
		}
		return []byte(secret), nil
	},
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(v.leeway),
		jwt.WithTimeFunc(v.now),
	)
	var badDate *dateTypeError
	switch {
	case err == nil:
	case errors.As(err, &badDate):
		return nil, unauthorized("token claim %s", badDate.Error())
	case errors.Is(err, errUnknownKey):
		if unknownKey == "" {
			return nil, unauthorized(`token has no "iss" (API key)`)
		}
		return nil, unauthorized("token is signed with unknown API key %q", truncate(unknownKey, 64))
	case errors.Is(err, jwt.ErrTokenExpired):
		return nil, unauthorized("token has expired")
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return nil, unauthorized(`token has no "exp" (expiry)`)
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return nil, unauthorized("token is not valid yet (nbf/iat in the future: check the clocks)")
	case parsed != nil && parsed.Method != nil && parsed.Method.Alg() != jwt.SigningMethodHS256.Alg():
		return nil, unauthorized("token is signed with %q: only HS256 is accepted", truncate(parsed.Method.Alg(), 16))
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return nil, unauthorized("token signature is invalid (wrong secret?)")
	case errors.Is(err, jwt.ErrTokenUnverifiable), errors.Is(err, jwt.ErrTokenInvalidClaims):
		return nil, unauthorized("token is not acceptable: %s", truncate(err.Error(), 200))
	default: // malformed, undecodable
		return nil, unauthorized("token is malformed: want a JWT signed with HS256")
	}
	if claims.Subject == "" {
		return nil, unauthorized(`token has no "sub" (participant identity)`)
	}
	if len(claims.Subject) > MaxIdentity {
		return nil, unauthorized(`token "sub" is longer than %d bytes`, MaxIdentity)
	}
	// The room grant names a room as join and the HTTP paths do (white
	// space around it dropped), or a token for "standup " could not join
	// "standup". A grant of white space only is refused rather than read as
	// no room: for an admin token that would mean every room.
	if room := protocol.RoomName(claims.Grants.Room); room != claims.Grants.Room {
		if room == "" {
			return nil, unauthorized(`token "grants.room" is blank`)
		}
		claims.Grants.Room = room
	}
	return &claims, nil
}

var errUnknownKey = errors.New("unknown API key")

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// CanJoin checks that claims allow joining room: a 403 otherwise.
func (c *Claims) CanJoin(room string) *protocol.Error {
	if c.Grants.Room == "" {
		return protocol.Errorf(protocol.CodeForbidden, "token grants no room: it cannot join %q", room)
	}
	if c.Grants.Room != room {
		return protocol.Errorf(protocol.CodeForbidden, "token is for room %q, not %q", c.Grants.Room, room)
	}
	return nil
}

// CanAdmin checks that claims allow administering room ("" = the server as a
// whole, e.g. listing rooms): a 403 otherwise.
func (c *Claims) CanAdmin(room string) *protocol.Error {
	if !c.Grants.Admin {
		return protocol.Errorf(protocol.CodeForbidden, "token lacks the admin grant")
	}
	if c.Grants.Room != "" && c.Grants.Room != room {
		if room == "" {
			return protocol.Errorf(protocol.CodeForbidden, "token is an admin token for room %q only", c.Grants.Room)
		}
		return protocol.Errorf(protocol.CodeForbidden, "token is an admin token for room %q, not %q", c.Grants.Room, room)
	}
	return nil
}

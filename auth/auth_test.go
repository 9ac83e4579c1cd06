package auth

import (
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/starling-rtc/starling/protocol"
)

const (
	testKey    = "APIdev"
	testSecret = "0123456789abcdef0123456789abcdef" // 32 bytes
	otherKey   = "APIother"
	otherSec   = "fedcba9876543210fedcba9876543210"
)

func ptr(b bool) *bool { return &b }

func sign(t *testing.T, method jwt.SigningMethod, key any, claims jwt.Claims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestVerify(t *testing.T) {
	v := NewVerifier(Keys{testKey: testSecret, otherKey: otherSec})
	now := time.Now()
	good := func(mut func(*Claims)) Claims {
		c := Claims{Grants: Grants{Room: "r1"}}
		c.Issuer, c.Subject = testKey, "alice"
		c.ExpiresAt = jwt.NewNumericDate(now.Add(time.Hour))
		if mut != nil {
			mut(&c)
		}
		return c
	}
	hs := func(c Claims) string { return sign(t, jwt.SigningMethodHS256, []byte(testSecret), c) }
	issued, err := Issue(otherKey, otherSec, Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "bob"}, Grants: Grants{Room: "r2"}}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		token   string
		wantErr string // substring of the 401 message; "" = valid
		wantSub string
	}{
		{"valid", hs(good(nil)), "", "alice"},
		{"issued by Issue with another key", issued, "", "bob"},
		{"missing", "", "token required", ""},
		{"garbage", "not.a.jwt", "malformed", ""},
		{"expired", hs(good(func(c *Claims) { c.ExpiresAt = jwt.NewNumericDate(now.Add(-time.Minute)) })), "expired", ""},
		{"expired within leeway", hs(good(func(c *Claims) { c.ExpiresAt = jwt.NewNumericDate(now.Add(-2 * time.Second)) })), "", "alice"},
		{"no exp", hs(good(func(c *Claims) { c.ExpiresAt = nil })), `no "exp"`, ""},
		{"not yet valid", hs(good(func(c *Claims) { c.NotBefore = jwt.NewNumericDate(now.Add(time.Hour)) })), "not valid yet", ""},
		{"wrong secret", sign(t, jwt.SigningMethodHS256, []byte(otherSec), good(nil)), "signature is invalid", ""},
		{"unknown key", hs(good(func(c *Claims) { c.Issuer = "APInope" })), `unknown API key "APInope"`, ""},
		{"no iss", hs(good(func(c *Claims) { c.Issuer = "" })), `no "iss"`, ""},
		{"no sub", hs(good(func(c *Claims) { c.Subject = "" })), `no "sub"`, ""},
		{"sub too long", hs(good(func(c *Claims) { c.Subject = strings.Repeat("x", MaxIdentity+1) })), "longer than", ""},
		{"HS384 refused", sign(t, jwt.SigningMethodHS384, []byte(testSecret), good(nil)), "only HS256", ""},
		{"alg none refused", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, good(nil)), "only HS256", ""},
		{"too long", strings.Repeat("a", MaxTokenLen+1), "longer than", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, perr := v.Verify(tc.token)
			if tc.wantErr == "" {
				if perr != nil {
					t.Fatalf("Verify: %v", perr)
				}
				if c.Identity() != tc.wantSub {
					t.Fatalf("sub = %q, want %q", c.Identity(), tc.wantSub)
				}
				return
			}
			if perr == nil {
				t.Fatalf("Verify accepted the token, want a 401 with %q", tc.wantErr)
			}
			if perr.Code != protocol.CodeUnauthorized || !strings.Contains(perr.Message, tc.wantErr) {
				t.Fatalf("Verify = %d %q, want 401 containing %q", perr.Code, perr.Message, tc.wantErr)
			}
		})
	}
}

func TestVerifyWithoutKeys(t *testing.T) {
	for _, v := range []*Verifier{nil, NewVerifier(nil)} {
		if v.Enabled() {
			t.Fatal("a verifier without keys is enabled")
		}
		if _, err := v.Verify("x"); err == nil || err.Code != protocol.CodeUnauthorized {
			t.Fatalf("Verify without keys = %v, want 401", err)
		}
	}
}

func TestGrants(t *testing.T) {
	tests := []struct {
		name                string
		g                   Grants
		room                string
		joinErr, adminErr   int // 0 = allowed
		pub, sub, data      bool
		adminAll, adminRoom int
	}{
		{name: "defaults allow media and data", g: Grants{Room: "r"}, room: "r",
			adminErr: 403, pub: true, sub: true, data: true, adminAll: 403, adminRoom: 403},
		{name: "explicit denials", g: Grants{Room: "r", CanPublish: ptr(false), CanSubscribe: ptr(false), CanPublishData: ptr(false)},
			room: "r", adminErr: 403, adminAll: 403, adminRoom: 403},
		{name: "wrong room", g: Grants{Room: "r"}, room: "other", joinErr: 403, adminErr: 403,
			pub: true, sub: true, data: true, adminAll: 403, adminRoom: 403},
		{name: "no room", g: Grants{}, room: "r", joinErr: 403, adminErr: 403,
			pub: true, sub: true, data: true, adminAll: 403, adminRoom: 403},
		{name: "admin of every room", g: Grants{Admin: true}, room: "r", joinErr: 403,
			pub: true, sub: true, data: true},
		{name: "admin of one room", g: Grants{Admin: true, Room: "r"}, room: "other", joinErr: 403, adminErr: 403,
			pub: true, sub: true, data: true, adminAll: 403},
	}
	code := func(e *protocol.Error) int {
		if e == nil {
			return 0
		}
		return e.Code
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &Claims{Grants: tc.g}
			if got := code(c.CanJoin(tc.room)); got != tc.joinErr {
				t.Errorf("CanJoin(%q) = %d, want %d", tc.room, got, tc.joinErr)
			}
			if got := code(c.CanAdmin(tc.room)); got != tc.adminErr {
				t.Errorf("CanAdmin(%q) = %d, want %d", tc.room, got, tc.adminErr)
			}
			if got := code(c.CanAdmin("")); got != tc.adminAll {
				t.Errorf("CanAdmin(all) = %d, want %d", got, tc.adminAll)
			}
			if got := code(c.CanAdmin(tc.g.Room)); tc.g.Room != "" && got != tc.adminRoom {
				t.Errorf("CanAdmin(own room) = %d, want %d", got, tc.adminRoom)
			}
			if c.Grants.Publish() != tc.pub || c.Grants.Subscribe() != tc.sub || c.Grants.PublishData() != tc.data {
				t.Errorf("publish/subscribe/data = %v/%v/%v, want %v/%v/%v",
					c.Grants.Publish(), c.Grants.Subscribe(), c.Grants.PublishData(), tc.pub, tc.sub, tc.data)
			}
		})
	}
}

func TestParseKeys(t *testing.T) {
	tests := []struct {
		in      string
		want    Keys
		wantErr string
	}{
		{in: "", want: Keys{}},
		{in: "k1:s1", want: Keys{"k1": "s1"}},
		{in: " k1:s1 , k2:s:2 ,", want: Keys{"k1": "s1", "k2": "s:2"}},
		{in: "k1", wantErr: "want key:secret"},
		{in: "k1:", wantErr: "want key:secret"},
		{in: ":s", wantErr: "want key:secret"},
		{in: "k1:a,k1:b", wantErr: "twice"},
	}
	for _, tc := range tests {
		got, err := ParseKeys(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseKeys(%q) error = %v, want %q", tc.in, err, tc.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "s1") {
				t.Errorf("ParseKeys(%q) error leaks the secret: %v", tc.in, err)
			}
			continue
		}
		if err != nil || len(got) != len(tc.want) {
			t.Errorf("ParseKeys(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			continue
		}
		for k, s := range tc.want {
			if got[k] != s {
				t.Errorf("ParseKeys(%q)[%q] = %q, want %q", tc.in, k, got[k], s)
			}
		}
	}
	if errs := (Keys{"k": "short", testKey: testSecret}).Check(); len(errs) != 1 || !strings.Contains(errs[0], "at least 32") {
		t.Errorf("Check = %q, want one short-secret error", errs)
	}
}

func TestIssueValidation(t *testing.T) {
	c := Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "a"}}
	if _, err := Issue("", testSecret, c, time.Hour); err == nil {
		t.Error("Issue without key succeeded")
	}
	if _, err := Issue(testKey, testSecret, Claims{}, time.Hour); err == nil {
		t.Error("Issue without sub succeeded")
	}
	if _, err := Issue(testKey, testSecret, c, 0); err == nil {
		t.Error("Issue with ttl 0 succeeded")
	}
}

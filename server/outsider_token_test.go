package server_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// rawToken signs a token payload written by hand with the test key.
func rawToken(payload string) string {
	enc := base64.RawURLEncoding
	head := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc.EncodeToString([]byte(payload))
	mac := hmac.New(sha256.New, []byte(testAPISecret))
	mac.Write([]byte(head))
	return head + "." + enc.EncodeToString(mac.Sum(nil))
}

// TestOutsiderQuotedExpRefused: docs/PROTOCOL.md "Access tokens" asks for
// `exp`, a NumericDate (RFC 7519): a JSON number. A token whose exp is a
// quoted number, signed correctly, joined; it is refused with 401 whose
// message names the claim, on the socket and on WHIP alike. The same
// token with a numeric exp joins (the signature and the rest are good).
func TestOutsiderQuotedExpRefused(t *testing.T) {
	parallel(t)
	srv := startServer(t, withKeys)
	exp := time.Now().Add(time.Hour).Unix()
	payload := func(expJSON string) string {
		return fmt.Sprintf(`{"iss":%q,"sub":"quoted","exp":%s,"grants":{"room":"dates"}}`, testAPIKey, expJSON)
	}
	quoted := rawToken(payload(fmt.Sprintf(`"%d"`, exp)))

	o := outsiderDial(t, srv.SignalingURL())
	_, e := o.call(1, "join", map[string]any{"room": "dates", "token": quoted})
	if e == nil || e["code"] != float64(401) || !strings.Contains(fmt.Sprint(e["message"]), `"exp"`) {
		t.Fatalf("join with \"exp\":\"%d\": %v, want a 401 naming \"exp\"", exp, e)
	}
	r := httpDo(t, http.MethodPost, "http://"+srv.Addr()+"/v1/rooms/dates/whip", "application/sdp", quoted, "v=0\r\n")
	if r.status != http.StatusUnauthorized || !strings.Contains(r.body, `exp`) {
		t.Errorf("WHIP with \"exp\":\"%d\": %d %s, want 401 naming exp", exp, r.status, r.body)
	}
	o2 := outsiderDial(t, srv.SignalingURL())
	if _, e := o2.call(1, "join", map[string]any{"room": "dates", "token": rawToken(payload(fmt.Sprint(exp)))}); e != nil {
		t.Fatalf("join with a numeric exp: %v", e)
	}
}

package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"
)

// signRaw signs a payload written by hand (HS256), so claims can have
// the types a JWT library would never write.
func signRaw(secret, payload string) string {
	enc := base64.RawURLEncoding
	head := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc.EncodeToString([]byte(payload))
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(head))
	return head + "." + enc.EncodeToString(mac.Sum(nil))
}

// TestVerifyNumericDates: RFC 7519 §2 makes exp, nbf and iat NumericDates,
// JSON numbers. The JWT library read a quoted number ("exp":"1767225600")
// as one, so the server accepted tokens no other verifier would; they are
// refused (401) with a message naming the claim. Numbers, fractions
// included, still pass.
func TestVerifyNumericDates(t *testing.T) {
	v := NewVerifier(Keys{testKey: testSecret})
	now := time.Now().Unix()
	exp, past := now+3600, now-60
	tok := func(claims string) string {
		return signRaw(testSecret, fmt.Sprintf(`{"iss":%q,"sub":"alice",%s,"grants":{"room":"r"}}`, testKey, claims))
	}
	for _, c := range []struct{ claims, claim string }{
		{fmt.Sprintf(`"exp":"%d"`, exp), "exp"},
		{fmt.Sprintf(`"exp":%d,"nbf":"%d"`, exp, past), "nbf"},
		{fmt.Sprintf(`"exp":%d,"iat":"%d"`, exp, past), "iat"},
		{`"exp":true`, "exp"},
		{fmt.Sprintf(`"exp":[%d]`, exp), "exp"},
		{fmt.Sprintf(`"exp":{"t":%d}`, exp), "exp"},
	} {
		_, err := v.Verify(tok(c.claims))
		if err == nil {
			t.Errorf("a token with %s was accepted", c.claims)
			continue
		}
		if err.Code != 401 || !strings.Contains(err.Message, `"`+c.claim+`"`) || !strings.Contains(err.Message, "number") {
			t.Errorf("a token with %s: %d %q, want 401 saying %q must be a number", c.claims, err.Code, err.Message, c.claim)
		}
	}
	for _, claims := range []string{
		fmt.Sprintf(`"exp":%d`, exp),
		fmt.Sprintf(`"exp":%d.5,"nbf":%d,"iat":%d`, exp, past, past),
		fmt.Sprintf(`"exp":%d,"nbf":null`, exp),
	} {
		if _, err := v.Verify(tok(claims)); err != nil {
			t.Errorf("a token with %s: %v, want it accepted", claims, err)
		}
	}
}

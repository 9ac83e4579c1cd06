package signaling

import (
	"encoding/json"
	"testing"

	"github.com/starling-rtc/starling/protocol"
)

// FuzzDecode feeds arbitrary frames through the request decoder and the
// params decoder of every method: no input may panic, and every refusal
// carries a protocol error code with a message.
func FuzzDecode(f *testing.F) {
	for _, seed := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"join","params":{"room":"a","name":"b"}}`,
		`{"jsonrpc":"2.0","method":"candidate","params":{"target":"publisher","candidate":null}}`,
		`{"jsonrpc":"2.0","id":"x","method":"offer","params":{"sdp":"v=0","tracks":[{"trackId":"t","layers":[{"rid":"q","width":1}]}]}}`,
		`[{"jsonrpc":"2.0"}]`, `{"jsonrpc":"1.0","id":{},"method":7}`, `null`, `{"id":1e400}`, "\x00\xff",
		`{"jsonrpc":"2.0","id":2,"method":"setSubscription","params":{"trackId":"t","maxWidth":-1,"quality":"x"}}`,
	} {
		f.Add([]byte(seed))
	}
	targets := []func() any{
		func() any { return &protocol.JoinParams{} }, func() any { return &protocol.OfferParams{} },
		func() any { return &protocol.SDPParams{} }, func() any { return &protocol.CandidateParams{} },
		func() any { return &protocol.TrackIDsParams{} }, func() any { return &protocol.SetSubscriptionParams{} },
		func() any { return &protocol.MuteParams{} }, func() any { return &protocol.UnpublishParams{} },
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req, perr := parseRequest(data)
		if perr != nil {
			if perr.Code == 0 || perr.Message == "" {
				t.Fatalf("refusal without code or message: %+v", perr)
			}
			return
		}
		for _, newParams := range targets {
			if perr := DecodeParams(req.params, newParams()); perr != nil && (perr.Code != protocol.CodeInvalidParams || perr.Message == "") {
				t.Fatalf("params refusal with code %d %q, want %d with a message", perr.Code, perr.Message, protocol.CodeInvalidParams)
			}
		}
		_ = json.Valid(req.params)
	})
}

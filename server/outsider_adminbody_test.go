package server_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/starling-rtc/starling/protocol"
)

// TestOutsiderAdminBodyErrors: docs/admin-api.md "Errors": 400 with
// -32700 when "the body is not valid JSON", -32600 for no body or several
// objects (the API takes "one JSON object"), -32602 for a field missing or
// of the wrong type. A body cut short (`{"payload":`) was -32602 with Go's
// "unexpected EOF", a body that is JSON but not an object (`[]`, `"hi"`)
// -32602 naming Go's type admin.DataRequest, and a field of the wrong type
// named Go's struct field and type: the codes as documented, and messages
// in the API's own terms.
func TestOutsiderAdminBodyErrors(t *testing.T) {
	parallel(t)
	srv := startServer(t, nil)
	c := join(t, srv, "bodies", "alice")
	got := make(chan string, 16)
	c.OnData(func(m protocol.DataMessage) { got <- m.Payload })
	base := "http://" + srv.Addr() + "/v1/rooms/bodies"
	for _, tc := range []struct {
		method, path, body string
		code               int
		mention            string
	}{
		{http.MethodPost, "/data", `{"payload":`, -32700, "JSON"},
		{http.MethodPost, "/data", `{"payload":"hi"`, -32700, "JSON"},
		{http.MethodPost, "/data", `{payload:"hi"}`, -32700, "JSON"},
		{http.MethodPost, "/data", `[]`, -32600, "object"},
		{http.MethodPost, "/data", `"hi"`, -32600, "object"},
		{http.MethodPost, "/data", `null`, -32600, "object"},
		{http.MethodPost, "/data", `{"payload":"a"}{"payload":"b"}`, -32600, "one JSON object"},
		{http.MethodPost, "/data", ``, -32600, "body"},
		{http.MethodPost, "/data", `{"payload":5}`, -32602, `"payload"`},
		{http.MethodPost, "/data", `{"payload":"hi","to":[1]}`, -32602, `"to"`},
		// An empty list reached the whole room, as a missing "to" does.
		{http.MethodPost, "/data", `{"payload":"to nobody","to":[]}`, -32602, `"to"`},
		{http.MethodPatch, "/participants/" + c.ParticipantID(), `{"name":true}`, -32602, `"name"`},
		{http.MethodPost, "/participants/" + c.ParticipantID() + "/mute", `{"trackId":"TR_x","muted":"yes"}`, -32602, `"muted"`},
		{http.MethodPost, "/participants/" + c.ParticipantID() + "/mix", `{"gain":"loud"}`, -32602, `"gain"`},
	} {
		r := httpDo(t, tc.method, base+tc.path, "application/json", "", tc.body)
		what := tc.method + " " + tc.path + " " + tc.body
		var e struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		}
		if err := json.Unmarshal([]byte(r.body), &e); err != nil {
			t.Errorf("%s: %d %q, not a JSON error", what, r.status, r.body)
			continue
		}
		if r.status != http.StatusBadRequest || e.Code != tc.code {
			t.Errorf("%s: %d %s, want 400 with code %d", what, r.status, r.body, tc.code)
		}
		if !strings.Contains(e.Message, tc.mention) {
			t.Errorf("%s: message %q does not mention %s", what, e.Message, tc.mention)
		}
		for _, goism := range []string{"admin.", "Go ", "struct field", "unexpected EOF"} {
			if strings.Contains(e.Message, goism) {
				t.Errorf("%s: message %q speaks Go (%q), not the API", what, e.Message, goism)
			}
		}
	}
	// None of the refused bodies sent anything: the first message alice
	// gets is the good one sent after them.
	if r := httpDo(t, http.MethodPost, base+"/data", "application/json", "", `{"payload":"marker"}`); r.status != http.StatusOK {
		t.Fatalf("POST /data: %d %s", r.status, r.body)
	}
	select {
	case p := <-got:
		if p != "marker" {
			t.Errorf("alice got %q before the marker", p)
		}
	case <-ctxT(t, 20*time.Second).Done():
		t.Fatal("alice got no data message")
	}
}

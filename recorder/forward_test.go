package recorder_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/starling-rtc/starling/recorder"
)

// silentCluster is a cluster of three nodes seen from n0: n1 knows no
// such recording, n2 answers or not as told. Only what a lookup of
// another node's recording uses is implemented.
type silentCluster struct {
	recorder.Cluster
	n2Answers bool
}

func (c *silentCluster) NodeID() string                     { return "n0" }
func (c *silentCluster) OtherNodes() []string               { return []string{"n1", "n2"} }
func (c *silentCluster) RoomNodes(string) ([]string, error) { return []string{"n1", "n2"}, nil }
func (c *silentCluster) HearsMajority() bool                { return true }
func (c *silentCluster) Forward(node string, _ recorder.ForwardRequest) (recorder.ForwardReply, error) {
	if node == "n2" && !c.n2Answers {
		return recorder.ForwardReply{}, errors.New("nats: timeout")
	}
	return recorder.ForwardReply{Status: http.StatusNotFound, Body: []byte(`{"error":"recording not found"}`)}, nil
}

// TestLookupWithSilentNode: a recording looked up (GET, DELETE) through a
// node that does not hold it, while another node does not answer, is
// answered 503 "try again" naming that node, not 404: it may be there (a
// loaded cluster run stopped a just-started recording through another node
// and got 404). When every node answers that it has none, 404.
func TestLookupWithSilentNode(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	rec, err := recorder.NewManager(srv.Rooms(), recorder.Config{Dir: t.TempDir(), Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	cl := &silentCluster{}
	rec.SetCluster(cl)
	mux := http.NewServeMux()
	rec.Register(mux, func(h http.Handler) http.Handler { return h })
	hs := httptest.NewServer(mux)
	defer hs.Close()
	url := hs.URL + "/v1/rooms/some-room/recordings/RC_elsewhere"
	for _, method := range []string{"GET", "DELETE"} {
		code, body := do(t, method, url, "")
		msg, _ := body["error"].(string)
		if code != http.StatusServiceUnavailable || !strings.Contains(msg, "n2") || !strings.Contains(msg, "try again") {
			t.Errorf("%s with n2 silent: %d %v, want 503 naming n2", method, code, body)
		}
	}
	cl.n2Answers = true
	if code, body := do(t, "DELETE", url, ""); code != http.StatusNotFound {
		t.Errorf("DELETE with every node answering none: %d %v, want 404", code, body)
	}
}

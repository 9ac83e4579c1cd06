package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/protocol"
)

// SoakIncident explains one churn iteration that lost a data message or
// had an operation fail: who took part, what happened when, and what each
// client heard from the server. A soak that only counted ("10 of 1860
// lost") left no way to tell a server that dropped messages from a
// participant the server had ended, or from a test racing itself.
type SoakIncident struct {
	Room string `json:"room"`
	Pub  string `json:"publisher"`  // participant id
	Sub  string `json:"subscriber"` // participant id
	// Timeline: the iteration's steps, in order, each with its time since
	// the iteration started; then the lost messages and both clients'
	// notifications (the server's and the client's own events).
	Timeline []string `json:"timeline"`
	// Cause, when known: the server ended a participant the iteration
	// still used (a `leave` it did not ask for). The operations that
	// failed after it ("websocket: close sent", an admin call's 404) and
	// the messages lost follow from that one event: still a failure of
	// the soak, reported as one.
	Cause string `json:"cause,omitempty"`
}

// maxIncidents bounds what a soak keeps: the first few tell the story.
const maxIncidents = 5

// iterTrace is one iteration's timeline, kept in case it goes wrong.
type iterTrace struct {
	start time.Time
	mu    sync.Mutex
	lines []string
	bad   bool // an operation failed
}

func newIterTrace() *iterTrace { return &iterTrace{start: time.Now()} }

func (t *iterTrace) note(format string, args ...any) {
	line := fmt.Sprintf("%6.2fs ", time.Since(t.start).Seconds()) + fmt.Sprintf(format, args...)
	t.mu.Lock()
	t.lines = append(t.lines, line)
	t.mu.Unlock()
}

// counts says whether count takes err for a failed operation: an error
// other than the churn's end.
func counts(err error) bool {
	return err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

// op counts an operation (see soak.count) and notes its outcome.
func (t *iterTrace) op(s *soak, op string, err error) bool {
	switch {
	case err == nil:
		t.note("%s: ok", op)
	case counts(err):
		t.note("%s: FAILED: %v", op, err)
		t.mu.Lock()
		t.bad = true
		t.mu.Unlock()
	default:
		t.note("%s: %v (the churn ended)", op, err)
	}
	return s.count(op, err)
}

// incident keeps the iteration's story if it went wrong: lost lists the
// data messages that never arrived.
func (s *soak) incident(t *iterTrace, room string, pub, sub *client.Client, lost []string) {
	t.mu.Lock()
	bad := t.bad
	t.mu.Unlock()
	if !bad && len(lost) == 0 {
		return
	}
	inc := SoakIncident{Room: room}
	if pub != nil {
		inc.Pub = pub.ParticipantID()
	}
	if sub != nil {
		inc.Sub = sub.ParticipantID()
	}
	t.mu.Lock()
	inc.Timeline = append(inc.Timeline, t.lines...)
	t.mu.Unlock()
	if len(lost) > 0 {
		inc.Timeline = append(inc.Timeline, fmt.Sprintf("lost (%d): %s", len(lost), strings.Join(lost, ", ")))
	}
	for _, c := range []struct {
		who      string
		c        *client.Client
		expected string // the leave reason the iteration itself causes
	}{{"publisher", pub, ""}, {"subscriber", sub, protocol.ReasonKicked}} {
		if why := serverLeft(c.c); why != "" && why != c.expected && inc.Cause == "" {
			inc.Cause = fmt.Sprintf("the server ended the %s %s (leave: %s)", c.who, c.c.ParticipantID(), why)
		}
		if c.c != nil {
			inc.Timeline = append(inc.Timeline, "at the end (closed by the iteration): "+c.who+" "+clientState(c.c))
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.incidents) < maxIncidents {
		s.incidents = append(s.incidents, inc)
	}
}

// clientState is what a client knows: whether its session ended, its
// connections' states and the notifications it got (repeats folded).
func clientState(c *client.Client) string {
	var b strings.Builder
	ended := "live"
	select {
	case <-c.Done():
		ended = "ENDED"
	default:
	}
	fmt.Fprintf(&b, "%s: session %s", c.ParticipantID(), ended)
	if pc := c.Publisher(); pc != nil {
		fmt.Fprintf(&b, ", publisher pc %s", pc.ConnectionState())
	}
	if pc := c.Subscriber(); pc != nil {
		fmt.Fprintf(&b, ", subscriber pc %s", pc.ConnectionState())
	}
	b.WriteString("; events:")
	last, n := "", 0
	flush := func() {
		if n > 1 {
			fmt.Fprintf(&b, " ×%d", n)
		}
	}
	for _, e := range c.Events() {
		desc := e.Method
		switch e.Method {
		case protocol.MethodLeave, client.EventDisconnected, client.EventResumeFailed, "error":
			desc += " " + string(e.Params)
		}
		if desc == last {
			n++
			continue
		}
		flush()
		b.WriteString(" " + desc)
		last, n = desc, 1
	}
	flush()
	return b.String()
}

// serverLeft is the reason of the `leave` the server sent c, "" if none.
func serverLeft(c *client.Client) string {
	if c == nil {
		return ""
	}
	for _, e := range c.Events() {
		if e.Method == protocol.MethodLeave {
			var p protocol.LeaveParams
			_ = json.Unmarshal(e.Params, &p)
			return p.Reason
		}
	}
	return ""
}

package room

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestProtocolDocSaysConnectGrace: docs/PROTOCOL.md tells client writers
// how long the next subscriber offer may wait for the connection to come
// up; it must say the value the code uses.
func TestProtocolDocSaysConnectGrace(t *testing.T) {
	doc, err := os.ReadFile("../docs/PROTOCOL.md")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(strings.Fields(string(doc)), " ")
	lead := "the next subscriber `offer` waits until the connection is up at both ends, at most "
	i := strings.Index(text, lead)
	if i < 0 {
		t.Fatalf("docs/PROTOCOL.md no longer says how long a subscriber offer waits (%q)", lead)
	}
	want := fmt.Sprintf("%d s", int(connectGrace.Seconds()))
	if got := text[i+len(lead):]; !strings.HasPrefix(got, want) {
		t.Errorf("docs/PROTOCOL.md says the offer waits at most %.6q..., the code waits %s", got, want)
	}
}

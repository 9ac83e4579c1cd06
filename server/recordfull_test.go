package server_test

import (
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/starling-rtc/starling/auth"
	"github.com/starling-rtc/starling/config"
	rec "github.com/starling-rtc/starling/recorder"
	"github.com/starling-rtc/starling/webhook"
)

// Chaos (issue 17): the recordings disk fills up during a call. The
// recording stops with a recording_failed webhook that says why, its
// manifest is final (status failed), and the call goes on: the subscriber
// keeps getting every packet of the publisher's audio and video, in order,
// before and after the failure. (recorder/fault_test.go checks that the
// cut files decode; this is the server around it.)
func TestRecordingDiskFullCallGoesOn(t *testing.T) {
	parallelLong(t)
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root (recorder's TestTrackRecorderDiskFull injects the fault without it)")
	}
	dir := t.TempDir()
	// 100 KB: the manifest (32 KB, padded so it can be rewritten in place on
	// a full disk) plus its temporary copy, and about a second of media
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=100k", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	recv := &hookReceiver{first: true} // no failed first delivery here
	hs := httptest.NewServer(recv)
	defer hs.Close()
	srv := startServer(t, func(c *config.Config) {
		withKeys(c)
		c.Webhook.URLs = []string{hs.URL + "/hooks"}
		c.Recordings.Dir = dir
		c.Recordings.AutoRecord = []string{"full-*"}
	})
	const room = "full-disk"
	alice := join(t, srv, room, "alice", withToken(token(t, "alice", auth.Grants{Room: room}, time.Hour)))
	bob := join(t, srv, room, "bob", withToken(token(t, "bob", auth.Grants{Room: room}, time.Hour)))
	got := record(bob)
	media := publishFake(t, alice)

	var failed webhook.Event
	waitFor(t, 30*time.Second, "the recording_failed webhook", func() bool {
		recv.mu.Lock()
		defer recv.mu.Unlock()
		for _, e := range recv.events {
			if e.Event == rec.EventFailed {
				failed = e
				return true
			}
		}
		return false
	})
	if failed.Recording == nil || !strings.Contains(failed.Recording.Error, "no space left on device") || failed.Room.Name != room {
		t.Fatalf("recording_failed = %+v (recording %+v)", failed, failed.Recording)
	}
	m, err := rec.ReadManifest(failed.Recording.Manifest)
	if err != nil || m.Status != "failed" || !strings.Contains(m.Error, "no space left") {
		t.Fatalf("manifest after the failure: %+v %v", m, err)
	}
	// the call goes on: bob keeps receiving both tracks after the failure
	v, a := media.track("video").ID, media.track("audio").ID
	nv, na := len(got.payloads(v)), len(got.payloads(a))
	waitFor(t, 15*time.Second, "2 s more of media at bob after the failure", func() bool {
		return len(got.payloads(v)) >= nv+180 && len(got.payloads(a)) >= na+100
	})
	media.Stop()
	media.mu.Lock()
	sentV, sentA := media.sentVideo, media.sentAudio
	media.mu.Unlock()
	waitFor(t, 10*time.Second, "the last packets", func() bool {
		gv, ga := got.payloads(v), got.payloads(a)
		return len(gv) > 0 && len(ga) > 0 && string(gv[len(gv)-1]) == string(sentV[len(sentV)-1]) && string(ga[len(ga)-1]) == string(sentA[len(sentA)-1])
	})
	assertRun(t, "bob's video", sentV, got.payloads(v))
	assertRun(t, "bob's audio", sentA, got.payloads(a))
	t.Logf("recording failed with %q; bob got %d video and %d audio packets, %d and %d of them after the failure",
		failed.Recording.Error, len(got.payloads(v)), len(got.payloads(a)), len(got.payloads(v))-nv, len(got.payloads(a))-na)
}

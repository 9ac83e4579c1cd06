package server_test

import (
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/starling-rtc/starling/auth"
	"github.com/starling-rtc/starling/internal/clock"
	"github.com/starling-rtc/starling/protocol"
)

// TestWallClockSteps runs TestWallClockStepsChild in a process of its own:
// stepping the wall clock is process-wide, and tests running in parallel
// here must not see it.
func TestWallClockSteps(t *testing.T) {
	if os.Getenv("STARLING_CLOCK_STEP_CHILD") != "" {
		t.Skip("in the child")
	}
	// The step happens in the child process, and what the child waits for
	// (reports, a speaker change, a late joiner's video) is awaited, with
	// tolerances of seconds.
	parallelUnlessRace(t)
	cmd := exec.Command(os.Args[0], "-test.run", "^TestWallClockStepsChild$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "STARLING_CLOCK_STEP_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	t.Logf("child:\n%s", out)
}

// Chaos (issue 17): the server's wall clock jumps an hour forward, then two
// hours back, during a call. After each step: sender reports keep coming on
// every stream, their NTP time follows the wall clock while their RTP time
// keeps running with the media (no jump, no stall); a speaker change is
// announced; a late joiner's keyframe request is not held back (it gets
// video at once); token checks follow the wall clock (a token minted now is
// accepted, one minted before an hour's jump forward has expired).
func TestWallClockStepsChild(t *testing.T) {
	if os.Getenv("STARLING_CLOCK_STEP_CHILD") == "" {
		t.Skip("run by TestWallClockSteps in its own process")
	}
	srv := startServer(t, nil)
	const room = "clock-step"
	tap := newSRTap()
	viewer := join(t, srv, room, "viewer", withClientAPI(faultAPI(t, apiOptions{first: []interceptor.Factory{tap}})))
	speakers := logSpeakers(t, viewer)
	alice := publishLevels(t, srv, room, "alice", 20)
	bob := publishLevels(t, srv, room, "bob", 127)
	cam := publishFake(t, join(t, srv, room, "cam"))
	camVideo := cam.track("video").ID

	keyed := startServer(t, withKeys)
	early := token(t, "early", auth.Grants{Room: "tok"}, 30*time.Minute)

	loud, quiet := alice, bob
	total := time.Duration(0)
	for i, step := range []time.Duration{time.Hour, -2 * time.Hour} {
		t0 := time.Now()
		clock.Step(step)
		total += step
		t.Cleanup(func() { clock.Step(-step) })

		// sender reports: at least three more on every stream the viewer gets
		var ssrcs []uint32
		waitFor(t, 15*time.Second, "sender reports after the step", func() bool {
			tap.mu.Lock()
			defer tap.mu.Unlock()
			ssrcs = ssrcs[:0]
			for ssrc, reps := range tap.reports {
				n := 0
				for _, r := range reps {
					if r.at.After(t0) {
						n++
					}
				}
				if n < 3 {
					return false
				}
				ssrcs = append(ssrcs, ssrc)
			}
			return len(ssrcs) >= 3 // alice's and bob's audio, the camera's video (and its audio)
		})
		tap.mu.Lock()
		for _, ssrc := range ssrcs {
			var after []srReport
			for _, r := range tap.reports[ssrc] {
				if r.at.After(t0) {
					after = append(after, r)
				}
			}
			last, prev := after[len(after)-1], after[len(after)-2]
			// NTP follows the (stepped) wall clock
			if d := ntpSeconds(last.ntp) - 2208988800 - float64(time.Now().Add(total).UnixNano())/1e9; d > 2 || d < -5 {
				t.Errorf("step %d, ssrc %x: report's NTP time is %.1f s off the wall clock", i, ssrc, d)
			}
			// RTP keeps running with the media between two reports
			if !rtpFollows(last, prev) {
				t.Errorf("step %d, ssrc %x: RTP advanced %d ticks in %.3f s between reports", i, ssrc, int32(last.rtp-prev.rtp), ntpSeconds(last.ntp)-ntpSeconds(prev.ntp))
			}
		}
		tap.mu.Unlock()

		// speakers: the quiet one gets loud, the loud one quiet
		loud.set(127)
		quiet.set(20)
		loud, quiet = quiet, loud
		waitFor(t, 10*time.Second, "the speaker change announced after the step", func() bool {
			for _, e := range speakers.since(t0) {
				if len(e.ids) > 0 && e.ids[0] == loud.c.ParticipantID() {
					return true
				}
			}
			return false
		})

		// a late joiner gets the camera's video at once: keyframe requests
		// are throttled on a clock that did not jump
		late := join(t, srv, room, "late")
		got := record(late)
		waitFor(t, 10*time.Second, "video at a late joiner after the step", func() bool { return len(got.payloads(camVideo)) > 0 })

		// tokens follow the wall clock
		c := join(t, keyed, "tok", "now", withToken(token(t, "now", auth.Grants{Room: "tok"}, 30*time.Minute)))
		if err := c.Call(ctxT(t, 5*time.Second), protocol.MethodPing, protocol.Empty{}, nil); err != nil {
			t.Fatalf("step %d: a token minted after the step: %v", i, err)
		}
		if i == 0 {
			joinErr(t, keyed, "tok", early, protocol.CodeUnauthorized) // 30 min token, an hour later
		}
		t.Logf("step %+v (wall clock now %+v off): %d streams kept their sender reports, speaker change and late joiner's video in %v",
			step, total, len(ssrcs), time.Since(t0).Round(time.Millisecond))
	}
}

// rtpFollows reports whether the RTP time of two sender reports advanced
// about as their NTP time did, at 48 or 90 kHz: within 2 s, which a step of
// the SFU's clock mapped into RTP time (an hour) would break by far, and a
// starved fake publisher (its RTP clock advances per packet sent, and a busy
// machine delays its ticker) does not.
func rtpFollows(last, prev srReport) bool {
	dNTP := ntpSeconds(last.ntp) - ntpSeconds(prev.ntp)
	for _, rate := range []float64{48000, 90000} {
		if d := float64(int32(last.rtp-prev.rtp))/rate - dNTP; d > -2 && d < 2 {
			return true
		}
	}
	return false
}

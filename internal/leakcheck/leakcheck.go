// Package leakcheck runs a package's tests under goleak's check for
// goroutines that outlive them, giving those still ending the time to end.
package leakcheck

import (
	"time"

	"go.uber.org/goleak"
)

// settleWait bounds how long the check waits, once the tests are done,
// for goroutines that are still ending. goleak's own retries last about
// half a second; on a loaded 2-core machine under -race a goroutine whose
// end a Close started can take longer (pion's SRTP and SRTCP session
// readers end when their transport's endpoint closes, on pion's own
// goroutines: one was reported once). A goroutine that never ends is
// still reported, 10 s later.
const settleWait = 10 * time.Second

// pionSRTPAccept is a goroutine pion leaks, not Starling: srtp v3.1.3's
// session reader, given a packet of an SSRC it has not seen, sends the
// new stream to AcceptStream's channel (session_srtp.go, decrypt) and
// blocks there for good when the peer connection closed meanwhile and
// nobody accepts any more; the channel is closed only after that same
// goroutine returns. A packet of a new stream arriving as a connection
// closes is a race of a busy machine (seen once in a loaded suite run,
// "chan send" in decrypt). It is ignored by its top function alone: any
// other goroutine of ours that leaks is still reported.
var pionSRTPAccept = goleak.IgnoreTopFunction("github.com/pion/srtp/v3.(*SessionSRTP).decrypt")

// Main is goleak.VerifyTestMain(m, opts...) that waits, once m's tests
// have run, until no goroutine other than those opts ignore is left, at
// most settleWait, before the check. Call it from TestMain.
func Main(m goleak.TestingM, opts ...goleak.Option) {
	opts = append(opts, pionSRTPAccept)
	goleak.VerifyTestMain(settled{m, opts}, opts...)
}

type settled struct {
	m    goleak.TestingM
	opts []goleak.Option
}

func (s settled) Run() int {
	fds := startFDWatch()
	code := s.m.Run()
	fds.Stop()
	for deadline := time.Now().Add(settleWait); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if goleak.Find(s.opts...) == nil {
			break
		}
	}
	return code
}

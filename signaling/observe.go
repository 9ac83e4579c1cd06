package signaling

import (
	"time"

	"github.com/starling-rtc/starling/protocol"
)

// observe reports one answered message to Options.Observe; perr points at
// the error sent, read when observe runs (so it can be deferred).
func (c *Conn) observe(method string, start time.Time, perr **protocol.Error) {
	if c.opts.Observe == nil {
		return
	}
	code := 0
	if *perr != nil {
		code = (*perr).Code
	}
	c.opts.Observe(method, code, time.Since(start))
}

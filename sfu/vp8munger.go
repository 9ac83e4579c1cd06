package sfu

import "errors"

var (
	// ErrVP8Truncated reports a VP8 payload too short for its own descriptor.
	ErrVP8Truncated = errors.New("sfu: truncated VP8 payload descriptor")
	// ErrShortBuffer reports a destination smaller than the rewritten payload.
	ErrShortBuffer = errors.New("sfu: destination buffer too small")
	// ErrVP8Stale reports a picture from before the current mapping started.
	ErrVP8Stale = errors.New("sfu: VP8 picture from before the current mapping")
)

// vp8Desc is a parsed VP8 payload descriptor (RFC 7741 section 4.2).
type vp8Desc struct {
	size    int // descriptor length in bytes; the VP8 payload follows
	start   bool
	partID  uint8
	hasPID  bool
	pid15   bool // M bit: 15-bit picture id
	pid     uint16
	hasTL0  bool
	tl0     uint8
	hasTID  bool
	tid     uint8
	hasKey  bool
	keyIdx  uint8
	tkByte  byte // the raw TID|Y|KEYIDX byte, when T or K is set
	byte0   byte
	hasTIDK bool
}

// parseVP8 parses the descriptor at the start of p. It never reads past p.
func parseVP8(p []byte) (d vp8Desc, ok bool) {
	if len(p) == 0 {
		return d, false
	}
	b := p[0]
	d.byte0 = b
	d.start = b&0x10 != 0
	d.partID = b & 0x07
	if b&0x80 == 0 {
		d.size = 1
		return d, true
	}
	if len(p) < 2 {
		return d, false
	}
	x := p[1]
	i := 2
	if x&0x80 != 0 { // I
		var ok bool
		if d.pid, d.pid15, i, ok = readPictureID(p, i); !ok {
			return d, false
		}
		d.hasPID = true
	}
	if x&0x40 != 0 { // L
		if len(p) <= i {
			return d, false
		}
		d.hasTL0 = true
		d.tl0 = p[i]
		i++
	}
	if x&0x30 != 0 { // T or K share one byte
		if len(p) <= i {
			return d, false
		}
		d.hasTIDK = true
		d.hasTID = x&0x20 != 0
		d.hasKey = x&0x10 != 0
		d.tkByte = p[i]
		d.tid = p[i] >> 6
		d.keyIdx = p[i] & 0x1f
		i++
	}
	d.size = i
	return d, true
}

// readPictureID reads a VP8 or VP9 picture id at p[i]: M=1 means 15 bits
// in two bytes, else 7 bits in one. It returns the offset past it.
func readPictureID(p []byte, i int) (pid uint16, pid15 bool, next int, ok bool) {
	if len(p) <= i {
		return 0, false, i, false
	}
	if p[i]&0x80 == 0 {
		return uint16(p[i] & 0x7f), false, i + 1, true
	}
	if len(p) <= i+1 {
		return 0, false, i, false
	}
	return uint16(p[i]&0x7f)<<8 | uint16(p[i+1]), true, i + 2, true
}

// idMap keeps one wrapping descriptor counter continuous for the output,
// like Munger does for sequence numbers: within a mapping the output is the
// input plus a fixed offset (gaps stay gaps), and a new mapping continues
// at the last output plus step.
type idMap struct {
	valid   bool  // established for the current mapping
	mode    uint8 // input kind of the current mapping; a change remaps
	hiIn    uint64
	startIn uint64
	off     uint64 // out - in
	lastOut uint64 // highest extended output, across mappings
	hasOut  bool
}

// mapID maps v, an input counter of the given bit width, to the extended
// output. step is how far the first value of a new mapping lies past the
// last output. The very first mapping keeps input values unchanged.
func (c *idMap) mapID(v uint16, bits, mode uint8, step uint64) (uint64, bool) {
	size := uint64(1) << bits
	if !c.valid || c.mode != mode {
		in := uint64(v) + extBase // extBase is a multiple of every size
		out := in
		if c.hasOut {
			out = c.lastOut + step
		}
		c.valid, c.mode, c.hiIn, c.startIn, c.off = true, mode, in, in, out-in
		c.lastOut, c.hasOut = max(c.lastOut, out), true
		return out, true
	}
	in := c.hiIn + (uint64(v)-c.hiIn)&(size-1)
	if in-c.hiIn >= size/2 {
		in -= size // behind the highest: reordered
	}
	if in < c.startIn {
		return 0, false
	}
	c.hiIn = max(c.hiIn, in)
	out := in + c.off
	c.lastOut = max(c.lastOut, out)
	return out, true
}

// VP8Munger rewrites the VP8 payload descriptor of one down track so that
// PictureID, TL0PICIDX and KEYIDX stay continuous when the forwarded input
// changes (simulcast layer switch, resume). The output always carries a
// 15-bit PictureID; inputs with a 7-bit or no PictureID get a rebuilt
// descriptor. TL0PICIDX and TID/KEYIDX are carried only when the input has
// them. The zero value is ready to use; not safe for concurrent use.
//
// Input without PictureID gets one counted from frame starts (S=1,
// partition 0), so its packets must arrive in order for correct ids.
type VP8Munger struct {
	pid, tl0, keyIdx idMap
	frames           uint16 // frame starts seen, for input without PictureID
}

// Switch marks that the next packet starts a new input mapping; call it
// together with Munger.Switch.
func (v *VP8Munger) Switch() {
	v.pid.valid, v.tl0.valid, v.keyIdx.valid = false, false, false
}

// Input PictureID kinds; a change of kind within a mapping starts a new one.
const (
	pidNone uint8 = iota
	pid7
	pid15
)

// Rewrite writes the rewritten payload into dst (len(dst) >= len(payload)+4) and returns its length; 0 allocs.
// dst may be payload itself (same start, enough capacity in dst's length):
// the body is moved with copy before the descriptor is written.
func (v *VP8Munger) Rewrite(dst, payload []byte) (n int, err error) {
	d, ok := parseVP8(payload)
	if !ok {
		return 0, ErrVP8Truncated
	}
	hdr := 4 // byte 0, X, two PictureID bytes
	if d.hasTL0 {
		hdr++
	}
	if d.hasTIDK {
		hdr++
	}
	body := len(payload) - d.size
	if len(dst) < hdr+body {
		return 0, ErrShortBuffer
	}

	pidIn, bits, mode := d.pid, uint8(15), pid15
	switch {
	case !d.hasPID:
		if d.start && d.partID == 0 {
			v.frames++
		}
		pidIn, mode = v.frames&0x7fff, pidNone
	case !d.pid15:
		bits, mode = 7, pid7
	}
	pid, ok := v.pid.mapID(pidIn, bits, mode, 1)
	if !ok {
		return 0, ErrVP8Stale
	}
	var tl0, key uint64
	if d.hasTL0 {
		// A new mapping normally starts on a TL0 keyframe, one past the last
		// TL0 picture. A higher layer picture still refers to the last one.
		step := uint64(1)
		if d.hasTID && d.tid > 0 {
			step = 0
		}
		if tl0, ok = v.tl0.mapID(uint16(d.tl0), 8, 0, step); !ok {
			return 0, ErrVP8Stale
		}
	}
	if d.hasKey {
		if key, ok = v.keyIdx.mapID(uint16(d.keyIdx), 5, 0, 1); !ok {
			return 0, ErrVP8Stale
		}
	}

	copy(dst[hdr:], payload[d.size:])
	dst[0] = 0x80 | d.byte0&0x37 // X set; keep N, S, partition index; R cleared
	x := byte(0x80)
	if d.hasTL0 {
		x |= 0x40
	}
	if d.hasTID {
		x |= 0x20
	}
	if d.hasKey {
		x |= 0x10
	}
	dst[1] = x
	dst[2] = 0x80 | byte(pid>>8)&0x7f
	dst[3] = byte(pid)
	i := 4
	if d.hasTL0 {
		dst[i] = byte(tl0)
		i++
	}
	if d.hasTIDK {
		tk := d.tkByte
		if d.hasKey {
			tk = tk&^0x1f | byte(key)&0x1f
		}
		dst[i] = tk
	}
	return hdr + body, nil
}

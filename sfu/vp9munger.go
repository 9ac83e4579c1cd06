package sfu

// VP9Munger rewrites the VP9 payload descriptor (RFC 9628) of one down
// track so that the picture id and TL0PICIDX stay continuous when the
// forwarded input changes (simulcast layer switch, resume). A receiver's
// frame-reference tracking keys on the picture id: a jump back at a switch
// would make it take the new layer's frames for old ones. The rewrite is in
// place (same length): a 7-bit picture id stays 7-bit. The zero value is
// ready to use; not safe for concurrent use.
type VP9Munger struct {
	pid, tl0 idMap
}

// Switch marks that the next packet starts a new input mapping; call it
// together with Munger.Switch.
func (v *VP9Munger) Switch() {
	v.pid.valid, v.tl0.valid = false, false
}

// vp9Desc locates the fields of a VP9 payload descriptor.
type vp9Desc struct {
	size   int // descriptor bytes up to and including TL0PICIDX
	pidAt  int // offset of the picture id; 0 = none
	pid15  bool
	pid    uint16
	tl0At  int // offset of TL0PICIDX; 0 = none
	tid    uint8
	hasTID bool
}

// parseVP9 reads the descriptor's picture id and layer fields. It never
// reads past p.
func parseVP9(p []byte) (d vp9Desc, ok bool) {
	if len(p) < 1 {
		return d, false
	}
	b := p[0]
	const bitI, bitL, bitF = 0x80, 0x20, 0x10
	i := 1
	if b&bitI != 0 {
		d.pidAt = i
		var ok bool
		if d.pid, d.pid15, i, ok = readPictureID(p, i); !ok {
			return d, false
		}
	}
	if b&bitL != 0 {
		if len(p) <= i {
			return d, false
		}
		d.hasTID = true
		d.tid = p[i] >> 5
		i++
		if b&bitF == 0 { // non-flexible mode: TL0PICIDX follows
			if len(p) <= i {
				return d, false
			}
			d.tl0At = i
			i++
		}
	}
	d.size = i
	return d, true
}

// Rewrite copies payload into dst (len(dst) >= len(payload)) with the
// picture id and TL0PICIDX mapped, and returns its length; 0 allocs.
func (v *VP9Munger) Rewrite(dst, payload []byte) (n int, err error) {
	d, ok := parseVP9(payload)
	if !ok {
		return 0, ErrVP8Truncated
	}
	if len(dst) < len(payload) {
		return 0, ErrShortBuffer
	}
	var pid, tl0 uint64
	if d.pidAt != 0 {
		bits, mode := uint8(7), pid7
		if d.pid15 {
			bits, mode = 15, pid15
		}
		if pid, ok = v.pid.mapID(d.pid, bits, mode, 1); !ok {
			return 0, ErrVP8Stale
		}
	}
	if d.tl0At != 0 {
		step := uint64(1)
		if d.hasTID && d.tid > 0 {
			step = 0 // refers to the last TL0 picture
		}
		if tl0, ok = v.tl0.mapID(uint16(payload[d.tl0At]), 8, 0, step); !ok {
			return 0, ErrVP8Stale
		}
	}
	n = copy(dst, payload)
	if d.pidAt != 0 {
		if d.pid15 {
			dst[d.pidAt] = 0x80 | byte(pid>>8)&0x7f
			dst[d.pidAt+1] = byte(pid)
		} else {
			dst[d.pidAt] = byte(pid) & 0x7f
		}
	}
	if d.tl0At != 0 {
		dst[d.tl0At] = byte(tl0)
	}
	return n, nil
}

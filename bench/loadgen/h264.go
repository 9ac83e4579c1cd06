package loadgen

// Synthetic H.264 (RFC 6184, packetization-mode 1): each keyframe starts
// with a STAP-A of SPS (carrying the layer's size), PPS and an SEI, then an
// IDR slice; delta frames are non-IDR slices. A slice that does not fit one
// packet is sent as FU-A fragments. Headers are real (NAL headers, parameter
// sets, the first fields of each slice header); the slice data after them is
// filler, with the generator's stamp at the end of every packet.

// H.264 NAL unit types and headers (F=0, NRI, type).
const (
	h264NALSlice = 1
	h264NALIDR   = 5
	h264NALSEI   = 6
	h264NALSPS   = 7
	h264NALPPS   = 8
	h264STAPA    = 24
	h264FUA      = 28

	h264HdrIDR   = 0x60 | h264NALIDR   // nal_ref_idc 3
	h264HdrSlice = 0x40 | h264NALSlice // nal_ref_idc 2: a reference P frame
	h264HdrSPS   = 0x60 | h264NALSPS
	h264HdrPPS   = 0x60 | h264NALPPS
	h264HdrSEI   = h264NALSEI
	h264HdrSTAPA = 0x60 | h264STAPA

	// h264FUChunk is the slice data one FU-A packet carries (after the FU
	// indicator and header, before the stamp).
	h264FUChunk = maxRTPPacket - rtpHeaderLen - 2 - stampLen
	// h264SingleMax is the largest slice NAL unit (header included) sent
	// as a single NAL unit packet.
	h264SingleMax = maxRTPPacket - rtpHeaderLen - stampLen

	// log2(max_frame_num) in the SPS: frame_num counts modulo 16.
	h264FrameNumBits = 4
)

// H264Fmtp is the codec line the publishers offer: constrained baseline
// 3.1 (the SPS's profile), non-interleaved mode (FU-A, STAP-A).
const H264Fmtp = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"

// bitWriter writes MSB-first bits and Exp-Golomb codes.
type bitWriter struct {
	b []byte
	n int // bits written
}

func (w *bitWriter) bit(v uint) {
	if w.n%8 == 0 {
		w.b = append(w.b, 0)
	}
	if v != 0 {
		w.b[w.n/8] |= 0x80 >> (w.n % 8)
	}
	w.n++
}

func (w *bitWriter) bits(v uint, n int) {
	for i := n - 1; i >= 0; i-- {
		w.bit(v >> i & 1)
	}
}

// ue writes an unsigned Exp-Golomb code; se a signed one.
func (w *bitWriter) ue(v uint) {
	v++
	n := 0
	for x := v; x > 1; x >>= 1 {
		n++
	}
	w.bits(0, n)
	w.bits(v, n+1)
}

func (w *bitWriter) se(v int) {
	if v > 0 {
		w.ue(uint(2*v - 1))
	} else {
		w.ue(uint(-2 * v))
	}
}

// trailing writes rbsp_trailing_bits: a one, then zeros to the byte boundary.
func (w *bitWriter) trailing() {
	w.bit(1)
	for w.n%8 != 0 {
		w.bit(0)
	}
}

// escapeRBSP inserts emulation prevention bytes: no 00 00 0x (x ≤ 3) inside
// a NAL unit.
func escapeRBSP(rbsp []byte) []byte {
	out := make([]byte, 0, len(rbsp)+4)
	zeros := 0
	for _, b := range rbsp {
		if zeros >= 2 && b <= 3 {
			out = append(out, 3)
			zeros = 0
		}
		out = append(out, b)
		if b == 0 {
			zeros++
		} else {
			zeros = 0
		}
	}
	return out
}

// h264SPS is a constrained-baseline SPS NAL unit for w×h (4:2:0, frame
// cropping to the exact size), as in server/simulcast_codecs_test.go.
func h264SPS(w, h int) []byte {
	bw := &bitWriter{}
	bw.bits(66, 8)   // profile_idc: baseline
	bw.bits(0xe0, 8) // constraint_set0/1/2: constrained baseline (42e0..)
	bw.bits(31, 8)   // level_idc 3.1
	bw.ue(0)         // seq_parameter_set_id
	bw.ue(h264FrameNumBits - 4)
	bw.ue(2) // pic_order_cnt_type
	bw.ue(1) // max_num_ref_frames
	bw.bit(0)
	mbW, mbH := (w+15)/16, (h+15)/16
	bw.ue(uint(mbW - 1))
	bw.ue(uint(mbH - 1))
	bw.bit(1) // frame_mbs_only_flag
	bw.bit(1) // direct_8x8_inference_flag
	cropR, cropB := (mbW*16-w)/2, (mbH*16-h)/2
	bw.bit(1) // frame_cropping_flag
	bw.ue(0)
	bw.ue(uint(cropR))
	bw.ue(0)
	bw.ue(uint(cropB))
	bw.bit(0) // vui_parameters_present_flag
	bw.trailing()
	return append([]byte{h264HdrSPS}, escapeRBSP(bw.b)...)
}

// h264PPS is the matching PPS: CAVLC, one slice group, deblocking control
// present.
func h264PPS() []byte {
	bw := &bitWriter{}
	bw.ue(0)      // pic_parameter_set_id
	bw.ue(0)      // seq_parameter_set_id
	bw.bit(0)     // entropy_coding_mode_flag: CAVLC
	bw.bit(0)     // bottom_field_pic_order_in_frame_present_flag
	bw.ue(0)      // num_slice_groups_minus1
	bw.ue(0)      // num_ref_idx_l0_default_active_minus1
	bw.ue(0)      // num_ref_idx_l1_default_active_minus1
	bw.bit(0)     // weighted_pred_flag
	bw.bits(0, 2) // weighted_bipred_idc
	bw.se(0)      // pic_init_qp_minus26
	bw.se(0)      // pic_init_qs_minus26
	bw.se(0)      // chroma_qp_index_offset
	bw.bit(1)     // deblocking_filter_control_present_flag
	bw.bit(0)     // constrained_intra_pred_flag
	bw.bit(0)     // redundant_pic_cnt_present_flag
	bw.trailing()
	return append([]byte{h264HdrPPS}, escapeRBSP(bw.b)...)
}

// h264SliceHeader writes the start of a slice NAL unit: its header byte and
// the slice header up to the macroblock data (first_mb_in_slice 0, I or P,
// frame_num, for an IDR idr_pic_id, reference marking, QP delta 0,
// deblocking on).
func h264SliceHeader(idr bool, frameNum uint) []byte {
	bw := &bitWriter{}
	bw.ue(0) // first_mb_in_slice
	if idr {
		bw.ue(7) // slice_type: I, all slices of the picture
	} else {
		bw.ue(5) // P, all slices
	}
	bw.ue(0) // pic_parameter_set_id
	bw.bits(frameNum, h264FrameNumBits)
	if idr {
		bw.ue(0)  // idr_pic_id
		bw.bit(0) // no_output_of_prior_pics_flag
		bw.bit(0) // long_term_reference_flag
	} else {
		bw.bit(0) // num_ref_idx_active_override_flag
		bw.bit(0) // ref_pic_list_modification_flag_l0
		bw.bit(0) // adaptive_ref_pic_marking_mode_flag
	}
	bw.se(0) // slice_qp_delta
	bw.ue(0) // disable_deblocking_filter_idc
	// Macroblock data follows; the filler takes over at the byte boundary.
	hdr := byte(h264HdrSlice)
	if idr {
		hdr = h264HdrIDR
	}
	return append([]byte{hdr}, escapeRBSP(bw.b)...)
}

// h264SliceHeaders are the slice starts: [0] an IDR, [1+n] a P slice with
// frame_num n.
var h264SliceHeaders = func() (out [1 + 1<<h264FrameNumBits][]byte) {
	out[0] = h264SliceHeader(true, 0)
	for n := range 1 << h264FrameNumBits {
		out[1+n] = h264SliceHeader(false, uint(n))
	}
	return out
}()

// h264SEIUUID names the generator's user data (SEI user_data_unregistered).
var h264SEIUUID = [16]byte{'s', 't', 'a', 'r', 'l', 'i', 'n', 'g', '-', 'l', 'o', 'a', 'd', '-', 't', 's'}

// h264ParamSets is the first packet of every keyframe without its stamp: a
// STAP-A with the SPS, the PPS and an SEI (user_data_unregistered) whose 12
// bytes of user data are the stamp, appended when sent. (The stamp must end
// the payload, so this SEI has no rbsp_trailing_bits.)
func h264ParamSets(w, h int) []byte {
	out := []byte{h264HdrSTAPA}
	for _, nal := range [][]byte{h264SPS(w, h), h264PPS()} {
		out = append(out, byte(len(nal)>>8), byte(len(nal)))
		out = append(out, nal...)
	}
	seiLen := 1 + 2 + len(h264SEIUUID) + stampLen
	out = append(out, byte(seiLen>>8), byte(seiLen), h264HdrSEI, 5, byte(len(h264SEIUUID)+stampLen))
	return append(out, h264SEIUUID[:]...)
}

// h264Packets is how many packets carry a slice NAL unit of size bytes.
func h264Packets(size int) int {
	if size <= h264SingleMax {
		return 1
	}
	return (size - 1 + h264FUChunk - 1) / h264FUChunk
}

// buildH264 writes packet part (of parts) of a slice NAL unit of size
// bytes (its header byte included) into buf and returns the payload: the
// whole NAL unit when parts is 1, else a FU-A fragment of it (chunks
// balanced like libwebrtc's packetizer); the stamp at the end. body is the
// filler the slice data is copied from; hdr is the slice's start
// (h264SliceHeaders).
func buildH264(buf, body, hdr []byte, size, part, parts int, ns int64) []byte {
	if parts == 1 {
		n := copy(buf, hdr)
		copy(buf[n:size], body[n:size])
		p := buf[:size+stampLen]
		putStamp(p, ns)
		return p
	}
	data := size - 1 // the NAL header byte becomes the FU indicator and header
	chunk := data / parts
	if part < data%parts {
		chunk++
	}
	p := buf[:2+chunk+stampLen]
	p[0] = hdr[0]&0xe0 | h264FUA // FU indicator: F, NRI of the NAL unit
	p[1] = hdr[0] & 0x1f         // FU header: the NAL unit's type
	switch part {
	case 0:
		p[1] |= 0x80 // S
		n := copy(p[2:2+chunk], hdr[1:])
		copy(p[2+n:2+chunk], body[2+n:])
	case parts - 1:
		p[1] |= 0x40 // E
		copy(p[2:2+chunk], body[2:])
	default:
		copy(p[2:2+chunk], body[2:])
	}
	putStamp(p, ns)
	return p
}

// sendH264 sends one frame: on a keyframe the parameter sets first, then
// the slice of size bytes as one NAL unit or FU-A fragments.
func (s *sender) sendH264(l *videoLayer, st *layerState, body []byte, key bool, size int) {
	var hdr []byte
	if key {
		st.frameNum = 0
		hdr = h264SliceHeaders[0]
		n := copy(st.scratch, st.params)
		p := st.scratch[:n+stampLen]
		putStamp(p, monoNow())
		st.pkt.Payload = p
		st.pkt.Marker = false
		s.write(l, st.pkt)
		st.pkt.SequenceNumber++
	} else {
		st.frameNum = (st.frameNum + 1) % (1 << h264FrameNumBits)
		hdr = h264SliceHeaders[1+st.frameNum]
	}
	size = max(size, len(hdr)+1)
	parts := h264Packets(size)
	for part := 0; part < parts; part++ {
		st.pkt.Payload = buildH264(st.scratch, body, hdr, size, part, parts, monoNow())
		st.pkt.Marker = part == parts-1
		s.write(l, st.pkt)
		st.pkt.SequenceNumber++
	}
}

// bitReader reads MSB-first bits and Exp-Golomb codes from an RBSP.
type bitReader struct {
	b []byte
	n int
}

func (r *bitReader) bits(n int) (uint, bool) {
	var v uint
	for range n {
		if r.n >= len(r.b)*8 {
			return 0, false
		}
		v = v<<1 | uint(r.b[r.n/8]>>(7-r.n%8)&1)
		r.n++
	}
	return v, true
}

func (r *bitReader) ue() (uint, bool) {
	zeros := 0
	for {
		b, ok := r.bits(1)
		if !ok || zeros > 31 {
			return 0, false
		}
		if b == 1 {
			break
		}
		zeros++
	}
	v, ok := r.bits(zeros)
	return 1<<zeros - 1 + v, ok
}

// unescapeRBSP removes emulation prevention bytes into dst (reused).
func unescapeRBSP(dst, nal []byte) []byte {
	dst = dst[:0]
	zeros := 0
	for _, b := range nal {
		if zeros >= 2 && b == 3 {
			zeros = 0
			continue
		}
		dst = append(dst, b)
		if b == 0 {
			zeros++
		} else {
			zeros = 0
		}
	}
	return dst
}

// h264SPSSize reads the picture size from an SPS NAL unit (header byte
// included): the profiles without chroma fields (baseline, main, extended)
// and the high ones without scaling matrices, frame-coded 4:2:0. scratch is
// reused for the unescaped bytes.
func h264SPSSize(nal []byte, scratch *[]byte) (w, h int, ok bool) {
	if len(nal) < 5 || nal[0]&0x1f != h264NALSPS {
		return 0, 0, false
	}
	*scratch = unescapeRBSP(*scratch, nal[1:])
	rb := *scratch
	r := &bitReader{b: rb[3:]} // after profile_idc, constraint flags, level_idc
	good := true
	ue := func() uint {
		v, k := r.ue()
		good = good && k
		return v
	}
	u := func(n int) uint {
		v, k := r.bits(n)
		good = good && k
		return v
	}
	ue() // seq_parameter_set_id
	switch rb[0] {
	case 100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135:
		if chroma := ue(); chroma != 1 {
			return 0, 0, false // only 4:2:0
		}
		ue() // bit_depth_luma_minus8
		ue() // bit_depth_chroma_minus8
		u(1) // qpprime_y_zero_transform_bypass_flag
		if u(1) != 0 {
			return 0, 0, false // scaling matrices: not parsed
		}
	}
	ue()          // log2_max_frame_num_minus4
	switch ue() { // pic_order_cnt_type
	case 0:
		ue() // log2_max_pic_order_cnt_lsb_minus4
	case 1:
		u(1) // delta_pic_order_always_zero_flag
		r.ue()
		r.ue() // offsets (se, read as ue: only skipped)
		for range ue() {
			r.ue()
		}
	}
	ue() // max_num_ref_frames
	u(1) // gaps_in_frame_num_value_allowed_flag
	mbW, mbH := ue()+1, ue()+1
	if u(1) != 1 { // frame_mbs_only_flag
		return 0, 0, false
	}
	u(1) // direct_8x8_inference_flag
	var cl, cr, ct, cb uint
	if u(1) == 1 {
		cl, cr, ct, cb = ue(), ue(), ue(), ue()
	}
	if !good {
		return 0, 0, false
	}
	w = int(mbW*16) - 2*int(cl+cr)
	h = int(mbH*16) - 2*int(ct+cb)
	return w, h, w > 0 && h > 0
}

// h264FrameSize returns the size from the SPS at the start of a keyframe:
// a single SPS NAL unit or one inside a STAP-A. Other packets cost one
// byte's look.
func h264FrameSize(p []byte, scratch *[]byte) (w, h int, ok bool) {
	if len(p) < 1 {
		return 0, 0, false
	}
	switch p[0] & 0x1f {
	case h264NALSPS:
		return h264SPSSize(p, scratch)
	case h264STAPA:
		for i := 1; i+2 < len(p); {
			n := int(p[i])<<8 | int(p[i+1])
			i += 2
			if n == 0 || i+n > len(p) {
				return 0, 0, false
			}
			if p[i]&0x1f == h264NALSPS {
				return h264SPSSize(p[i:i+n], scratch)
			}
			i += n
		}
	}
	return 0, 0, false
}

package bitstream

// H264SPS is a constrained-baseline SPS NAL unit (header byte included)
// for w×h: 4:2:0, frame cropping to the exact size, picture order count
// type 2, no VUI.
func H264SPS(w, h int, log2MaxFrameNumMinus4 uint) []byte {
	bw := &Writer{}
	bw.Bits(66, 8)   // profile_idc: baseline
	bw.Bits(0xe0, 8) // constraint_set0/1/2: constrained baseline (42e0..)
	bw.Bits(31, 8)   // level_idc 3.1
	bw.UE(0)         // seq_parameter_set_id
	bw.UE(log2MaxFrameNumMinus4)
	bw.UE(2) // pic_order_cnt_type
	bw.UE(1) // max_num_ref_frames
	bw.Bit(0)
	mbW, mbH := (w+15)/16, (h+15)/16
	bw.UE(uint(mbW - 1))
	bw.UE(uint(mbH - 1))
	bw.Bit(1) // frame_mbs_only_flag
	bw.Bit(1) // direct_8x8_inference_flag
	cropR, cropB := (mbW*16-w)/2, (mbH*16-h)/2
	bw.Bit(1) // frame_cropping_flag
	bw.UE(0)
	bw.UE(uint(cropR))
	bw.UE(0)
	bw.UE(uint(cropB))
	bw.Bit(0) // vui_parameters_present_flag
	bw.Trailing()
	return append([]byte{0x67}, EscapeRBSP(bw.Bytes())...)
}

// H264SPSSize reads the picture size from an SPS NAL unit (header byte
// included): the profiles without chroma fields (baseline, main, extended)
// and the high ones without scaling matrices, frame-coded 4:2:0. scratch is
// reused for the unescaped bytes.
func H264SPSSize(nal []byte, scratch *[]byte) (w, h int, ok bool) {
	if len(nal) < 5 || nal[0]&0x1f != 7 {
		return 0, 0, false
	}
	*scratch = UnescapeRBSP(*scratch, nal[1:])
	rb := *scratch
	r := NewReader(rb[3:]) // after profile_idc, constraint flags, level_idc
	good := true
	ue := func() uint {
		v, k := r.UE()
		good = good && k
		return v
	}
	u := func(n int) uint {
		v, k := r.Bits(n)
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
		r.UE()
		r.UE() // offsets (se, read as ue: only skipped)
		for range ue() {
			r.UE()
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

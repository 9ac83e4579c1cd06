package loadgen

import "github.com/starling-rtc/starling/internal/bitstream"

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

// h264SPS is the SPS NAL unit of a layer of w×h.
func h264SPS(w, h int) []byte { return bitstream.H264SPS(w, h, h264FrameNumBits-4) }

// h264PPS is the matching PPS: CAVLC, one slice group, deblocking control
// present.
func h264PPS() []byte {
	bw := &bitstream.Writer{}
	bw.UE(0)      // pic_parameter_set_id
	bw.UE(0)      // seq_parameter_set_id
	bw.Bit(0)     // entropy_coding_mode_flag: CAVLC
	bw.Bit(0)     // bottom_field_pic_order_in_frame_present_flag
	bw.UE(0)      // num_slice_groups_minus1
	bw.UE(0)      // num_ref_idx_l0_default_active_minus1
	bw.UE(0)      // num_ref_idx_l1_default_active_minus1
	bw.Bit(0)     // weighted_pred_flag
	bw.Bits(0, 2) // weighted_bipred_idc
	bw.SE(0)      // pic_init_qp_minus26
	bw.SE(0)      // pic_init_qs_minus26
	bw.SE(0)      // chroma_qp_index_offset
	bw.Bit(1)     // deblocking_filter_control_present_flag
	bw.Bit(0)     // constrained_intra_pred_flag
	bw.Bit(0)     // redundant_pic_cnt_present_flag
	bw.Trailing()
	return append([]byte{h264HdrPPS}, bitstream.EscapeRBSP(bw.Bytes())...)
}

// h264SliceHeader writes the start of a slice NAL unit: its header byte and
// the slice header up to the macroblock data (first_mb_in_slice 0, I or P,
// frame_num, for an IDR idr_pic_id, reference marking, QP delta 0,
// deblocking on).
func h264SliceHeader(idr bool, frameNum uint) []byte {
	bw := &bitstream.Writer{}
	bw.UE(0) // first_mb_in_slice
	if idr {
		bw.UE(7) // slice_type: I, all slices of the picture
	} else {
		bw.UE(5) // P, all slices
	}
	bw.UE(0) // pic_parameter_set_id
	bw.Bits(frameNum, h264FrameNumBits)
	if idr {
		bw.UE(0)  // idr_pic_id
		bw.Bit(0) // no_output_of_prior_pics_flag
		bw.Bit(0) // long_term_reference_flag
	} else {
		bw.Bit(0) // num_ref_idx_active_override_flag
		bw.Bit(0) // ref_pic_list_modification_flag_l0
		bw.Bit(0) // adaptive_ref_pic_marking_mode_flag
	}
	bw.SE(0) // slice_qp_delta
	bw.UE(0) // disable_deblocking_filter_idc
	// Macroblock data follows; the filler takes over at the byte boundary.
	hdr := byte(h264HdrSlice)
	if idr {
		hdr = h264HdrIDR
	}
	return append([]byte{hdr}, bitstream.EscapeRBSP(bw.Bytes())...)
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

// h264FrameSize returns the size from the SPS at the start of a keyframe:
// a single SPS NAL unit or one inside a STAP-A. Other packets cost one
// byte's look.
func h264FrameSize(p []byte, scratch *[]byte) (w, h int, ok bool) {
	if len(p) < 1 {
		return 0, 0, false
	}
	switch p[0] & 0x1f {
	case h264NALSPS:
		return bitstream.H264SPSSize(p, scratch)
	case h264STAPA:
		for i := 1; i+2 < len(p); {
			n := int(p[i])<<8 | int(p[i+1])
			i += 2
			if n == 0 || i+n > len(p) {
				return 0, 0, false
			}
			if p[i]&0x1f == h264NALSPS {
				return bitstream.H264SPSSize(p[i:i+n], scratch)
			}
			i += n
		}
	}
	return 0, 0, false
}

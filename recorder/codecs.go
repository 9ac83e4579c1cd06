package recorder

import (
	"encoding/binary"
	"errors"

	"github.com/at-wat/ebml-go/webm"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/starling-rtc/starling/sfu"
)

// codecInfo is what the recorder needs to know about a codec.
type codecInfo struct {
	kind     sfu.CodecKind
	codecID  string // Matroska CodecID
	docType  string // "webm" or "matroska"
	ext      string // file extension
	video    bool
	clock    uint32
	maxLate  uint16 // packets the jitter buffer waits for a missing one
	newDepak func() rtp.Depacketizer
}

var errUnsupportedCodec = errors.New("codec not supported for recording")

// lookupCodec maps a codec to its container settings. Opus, VP8, VP9 and
// AV1 go to WebM; H.264 to Matroska (WebM does not allow it), which ffmpeg
// remuxes to MP4 with -c copy.
func lookupCodec(kind sfu.CodecKind) (codecInfo, error) {
	switch kind {
	case sfu.CodecOpus:
		return codecInfo{kind: kind, codecID: "A_OPUS", docType: "webm", ext: ".webm", clock: 48000, maxLate: 32,
			newDepak: func() rtp.Depacketizer { return &codecs.OpusPacket{} }}, nil
	case sfu.CodecVP8:
		return codecInfo{kind: kind, codecID: "V_VP8", docType: "webm", ext: ".webm", video: true, clock: 90000, maxLate: 256,
			newDepak: func() rtp.Depacketizer { return &codecs.VP8Packet{} }}, nil
	case sfu.CodecVP9:
		return codecInfo{kind: kind, codecID: "V_VP9", docType: "webm", ext: ".webm", video: true, clock: 90000, maxLate: 256,
			newDepak: func() rtp.Depacketizer { return &codecs.VP9Packet{} }}, nil
	case sfu.CodecAV1:
		return codecInfo{kind: kind, codecID: "V_AV1", docType: "webm", ext: ".webm", video: true, clock: 90000, maxLate: 256,
			newDepak: func() rtp.Depacketizer { return &codecs.AV1Depacketizer{} }}, nil
	case sfu.CodecH264:
		return codecInfo{kind: kind, codecID: "V_MPEG4/ISO/AVC", docType: "matroska", ext: ".mkv", video: true, clock: 90000, maxLate: 256,
			newDepak: func() rtp.Depacketizer { return &codecs.H264Packet{IsAVC: true} }}, nil
	}
	return codecInfo{}, errUnsupportedCodec
}

// frameInfo is what a depacketized frame tells about itself.
type frameInfo struct {
	keyframe      bool
	width, height int    // from a keyframe, 0 if unknown
	private       []byte // codec private data derived from a keyframe (avcC, av1C)
}

// inspectFrame looks at a depacketized frame. For H.264 (AVC, 4-byte
// lengths) and AV1 it also builds the CodecPrivate from in-band parameter
// sets; for VP8/VP9 the dimensions come from the keyframe header.
func inspectFrame(kind sfu.CodecKind, data []byte) frameInfo {
	switch kind {
	case sfu.CodecOpus:
		return frameInfo{keyframe: true}
	case sfu.CodecVP8:
		if len(data) < 10 || data[0]&0x01 != 0 {
			return frameInfo{}
		}
		fi := frameInfo{keyframe: true}
		if data[3] == 0x9d && data[4] == 0x01 && data[5] == 0x2a {
			fi.width = int(binary.LittleEndian.Uint16(data[6:]) & 0x3fff)
			fi.height = int(binary.LittleEndian.Uint16(data[8:]) & 0x3fff)
		}
		return fi
	case sfu.CodecVP9:
		return inspectVP9(data)
	case sfu.CodecH264:
		return inspectH264(data)
	case sfu.CodecAV1:
		return inspectAV1(data)
	}
	return frameInfo{}
}

// opusHead is the OpusHead CodecPrivate (RFC 7845) with no pre-skip: the
// recording starts mid-stream, so there are no encoder priming samples.
func opusHead(channels int) []byte {
	if channels <= 0 || channels > 2 {
		channels = 2
	}
	b := []byte{'O', 'p', 'u', 's', 'H', 'e', 'a', 'd', 1, byte(channels), 0, 0, 0, 0, 0, 0, 0, 0, 0}
	binary.LittleEndian.PutUint32(b[12:], 48000)
	return b
}

// trackEntry builds the Matroska TrackEntry for the first frame's info.
func trackEntry(ci codecInfo, name string, channels int, fi frameInfo) webm.TrackEntry {
	te := webm.TrackEntry{Name: name, TrackNumber: 1, TrackUID: 1, CodecID: ci.codecID}
	if ci.video {
		te.TrackType = 1
		w, h := fi.width, fi.height
		if w <= 0 || h <= 0 {
			w, h = 640, 480 // unknown: decoders take the real size from the stream
		}
		te.Video = &webm.Video{PixelWidth: uint64(w), PixelHeight: uint64(h)}
		te.CodecPrivate = fi.private
		return te
	}
	te.TrackType = 2
	if channels <= 0 {
		channels = 2
	}
	te.Audio = &webm.Audio{SamplingFrequency: 48000, Channels: uint64(channels)}
	te.CodecPrivate = opusHead(channels)
	te.SeekPreRoll = 80000000 // 80 ms, as WebM asks for Opus
	return te
}

// bitReader reads big-endian bits; reading past the end yields zeros and
// sets bad.
type bitReader struct {
	b   []byte
	pos int
	bad bool
}

func (r *bitReader) u(n int) uint64 {
	var v uint64
	for i := 0; i < n; i++ {
		byteIdx := r.pos >> 3
		if byteIdx >= len(r.b) {
			r.bad = true
			return v
		}
		bit := (r.b[byteIdx] >> (7 - uint(r.pos&7))) & 1
		v = v<<1 | uint64(bit)
		r.pos++
	}
	return v
}

// ue reads an unsigned Exp-Golomb code (H.264).
func (r *bitReader) ue() uint64 {
	zeros := 0
	for r.u(1) == 0 {
		zeros++
		if zeros > 31 || r.bad {
			r.bad = true
			return 0
		}
	}
	return (1<<zeros - 1) + r.u(zeros)
}

func (r *bitReader) se() int64 {
	v := r.ue()
	if v&1 == 1 {
		return int64(v+1) / 2
	}
	return -int64(v / 2)
}

// inspectVP9 reads the uncompressed header of the first frame in a VP9
// frame (or superframe): keyframe flag and size.
func inspectVP9(data []byte) frameInfo {
	r := &bitReader{b: data}
	if r.u(2) != 2 { // frame_marker
		return frameInfo{}
	}
	lo, hi := r.u(1), r.u(1)
	profile := hi<<1 | lo
	if profile == 3 {
		r.u(1)
	}
	if r.u(1) == 1 { // show_existing_frame
		return frameInfo{}
	}
	if r.u(1) != 0 { // frame_type: 0 = KEY_FRAME
		return frameInfo{}
	}
	r.u(2) // show_frame, error_resilient_mode
	if r.u(24) != 0x498342 {
		return frameInfo{keyframe: true}
	}
	if profile >= 2 {
		r.u(1)
	}
	if cs := r.u(3); cs != 7 { // not CS_RGB
		r.u(1)
		if profile == 1 || profile == 3 {
			r.u(3)
		}
	} else if profile == 1 || profile == 3 {
		r.u(1)
	}
	w, h := int(r.u(16))+1, int(r.u(16))+1
	if r.bad {
		return frameInfo{keyframe: true}
	}
	return frameInfo{keyframe: true, width: w, height: h}
}

// inspectH264 walks AVC (4-byte length prefixed) NAL units: an IDR slice
// makes a keyframe; SPS and PPS make the avcC record and the size.
func inspectH264(data []byte) frameInfo {
	var fi frameInfo
	var sps, pps []byte
	for len(data) >= 4 {
		n := int(binary.BigEndian.Uint32(data))
		data = data[4:]
		if n <= 0 || n > len(data) {
			break
		}
		nal := data[:n]
		data = data[n:]
		switch nal[0] & 0x1f {
		case 5:
			fi.keyframe = true
		case 7:
			if sps == nil {
				sps = nal
			}
		case 8:
			if pps == nil {
				pps = nal
			}
		}
	}
	if fi.keyframe && sps != nil && pps != nil && len(sps) >= 4 {
		fi.width, fi.height = h264Size(sps)
		rec := []byte{1, sps[1], sps[2], sps[3], 0xff, 0xe1}
		rec = binary.BigEndian.AppendUint16(rec, uint16(len(sps)))
		rec = append(rec, sps...)
		rec = append(rec, 1)
		rec = binary.BigEndian.AppendUint16(rec, uint16(len(pps)))
		rec = append(rec, pps...)
		fi.private = rec
	}
	return fi
}

// unescapeRBSP removes emulation prevention bytes (00 00 03).
func unescapeRBSP(b []byte) []byte {
	out := make([]byte, 0, len(b))
	zeros := 0
	for _, c := range b {
		if zeros >= 2 && c == 3 {
			zeros = 0
			continue
		}
		if c == 0 {
			zeros++
		} else {
			zeros = 0
		}
		out = append(out, c)
	}
	return out
}

// h264Size parses a sequence parameter set for the cropped picture size.
func h264Size(sps []byte) (int, int) {
	r := &bitReader{b: unescapeRBSP(sps[1:])}
	profile := r.u(8)
	r.u(16) // constraint flags, level
	r.ue()  // seq_parameter_set_id
	chroma := uint64(1)
	switch profile {
	case 100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135:
		chroma = r.ue()
		if chroma == 3 {
			r.u(1)
		}
		r.ue()           // bit_depth_luma_minus8
		r.ue()           // bit_depth_chroma_minus8
		r.u(1)           // qpprime_y_zero_transform_bypass_flag
		if r.u(1) == 1 { // seq_scaling_matrix_present_flag
			lists := 8
			if chroma == 3 {
				lists = 12
			}
			for i := 0; i < lists; i++ {
				if r.u(1) == 1 {
					size := 16
					if i >= 6 {
						size = 64
					}
					last, next := int64(8), int64(8)
					for j := 0; j < size; j++ {
						if next != 0 {
							next = (last + r.se() + 256) % 256
						}
						if next != 0 {
							last = next
						}
					}
				}
			}
		}
	}
	r.ue()          // log2_max_frame_num_minus4
	switch r.ue() { // pic_order_cnt_type
	case 0:
		r.ue()
	case 1:
		r.u(1)
		r.se()
		r.se()
		n := r.ue()
		for i := uint64(0); i < n && !r.bad; i++ {
			r.se()
		}
	}
	r.ue() // max_num_ref_frames
	r.u(1) // gaps_in_frame_num_value_allowed_flag
	wMbs := r.ue() + 1
	hMapUnits := r.ue() + 1
	frameMbsOnly := r.u(1)
	if frameMbsOnly == 0 {
		r.u(1)
	}
	r.u(1) // direct_8x8_inference_flag
	w := int(wMbs * 16)
	h := int((2 - frameMbsOnly) * hMapUnits * 16)
	if r.u(1) == 1 { // frame_cropping_flag
		l, rt, t, b := r.ue(), r.ue(), r.ue(), r.ue()
		cx, cy := uint64(1), 2-frameMbsOnly
		if chroma == 1 || chroma == 2 {
			cx = 2
		}
		if chroma == 1 {
			cy *= 2
		}
		w -= int((l + rt) * cx)
		h -= int((t + b) * cy)
	}
	if r.bad || w <= 0 || h <= 0 {
		return 0, 0
	}
	return w, h
}

// leb128 reads an unsigned LEB128 number; n = 0 on error.
func leb128(b []byte) (v uint64, n int) {
	for i := 0; i < 8 && i < len(b); i++ {
		v |= uint64(b[i]&0x7f) << (7 * i)
		if b[i]&0x80 == 0 {
			return v, i + 1
		}
	}
	return 0, 0
}

// inspectAV1 walks the OBUs of a temporal unit (obu_size present, as pion's
// depacketizer writes them): a sequence header means a keyframe in WebRTC
// (senders repeat it on every keyframe); it gives the size and the av1C.
func inspectAV1(data []byte) frameInfo {
	var fi frameInfo
	for len(data) > 0 {
		h := data[0]
		typ := (h >> 3) & 0x0f
		hasExt := h&0x04 != 0
		hasSize := h&0x02 != 0
		hl := 1
		if hasExt {
			hl = 2
		}
		if len(data) < hl || !hasSize {
			break
		}
		size, n := leb128(data[hl:])
		if n == 0 || hl+n+int(size) > len(data) {
			break
		}
		obu := data[:hl+n+int(size)]
		payload := data[hl+n : hl+n+int(size)]
		data = data[hl+n+int(size):]
		if typ == 1 { // OBU_SEQUENCE_HEADER
			fi.keyframe = true
			prof, level, tier, w, ht := av1SequenceHeader(payload)
			fi.width, fi.height = w, ht
			// av1C: marker+version, profile+level, tier + 8-bit 4:2:0
			// (what WebRTC encoders send), no presentation delay, then
			// the sequence header OBU as configOBUs.
			fi.private = append([]byte{0x81, prof<<5 | level&0x1f, tier<<7 | 0x0c, 0}, obu...)
		}
	}
	return fi
}

// av1SequenceHeader reads profile, first level and tier, and the maximum
// frame size from a sequence header OBU payload.
func av1SequenceHeader(p []byte) (profile, level, tier byte, w, h int) {
	r := &bitReader{b: p}
	profile = byte(r.u(3))
	r.u(1) // still_picture
	reduced := r.u(1)
	if reduced == 1 {
		level = byte(r.u(5))
	} else {
		decoderModel := uint64(0)
		bufferDelayLen := uint64(0)
		if r.u(1) == 1 { // timing_info_present_flag
			r.u(32)
			r.u(32)
			if r.u(1) == 1 { // equal_picture_interval: uvlc
				zeros := 0
				for r.u(1) == 0 && !r.bad && zeros < 32 {
					zeros++
				}
				r.u(zeros)
			}
			decoderModel = r.u(1)
			if decoderModel == 1 {
				bufferDelayLen = r.u(5) + 1
				r.u(32)
				r.u(5)
				r.u(5)
			}
		}
		initialDelay := r.u(1)
		count := int(r.u(5)) + 1
		for i := 0; i < count && !r.bad; i++ {
			r.u(12)
			l := byte(r.u(5))
			var t byte
			if l > 7 {
				t = byte(r.u(1))
			}
			if i == 0 {
				level, tier = l, t
			}
			if decoderModel == 1 && r.u(1) == 1 {
				r.u(int(bufferDelayLen))
				r.u(int(bufferDelayLen))
				r.u(1)
			}
			if initialDelay == 1 && r.u(1) == 1 {
				r.u(4)
			}
		}
	}
	wb, hb := int(r.u(4))+1, int(r.u(4))+1
	w, h = int(r.u(wb))+1, int(r.u(hb))+1
	if r.bad {
		return profile, level, tier, 0, 0
	}
	return profile, level, tier, w, h
}

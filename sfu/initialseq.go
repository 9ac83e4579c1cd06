package sfu

// maxInitialSeq bounds the first sequence number of every stream Starling
// sends to a subscriber (a down track's media and its RTX): they start at
// random in [1, maxInitialSeq), never in the upper half of the space.
//
// Why (issue 18, a viewer whose stream never started): SRTP never sends its
// rollover counter (ROC). A receiver that hears an SSRC for the first time
// takes ROC 0 (RFC 3711 3.3.1; pion's srtp and libsrtp alike), while the
// sender's ROC counts every wrap of the 16-bit sequence number since the
// stream's first packet. A stream that starts near 65535 wraps after a few
// packets; if the receiver loses all of those (a starved client whose
// socket overflows as 300 viewers start at once, a lossy first second), the
// first packet it gets was sent with ROC 1, every packet fails
// authentication, and the stream stays dead for good: the server sends,
// nothing is lost on its side, the client's pion never sees a packet, so it
// never fires OnTrack. Starting below 2^15 means a receiver would have to
// lose 32,768 packets in a row (minutes of video) before its first one for
// that to happen. libwebrtc's senders and pion's own sequencer start below
// 2^15 for the same reason.
const maxInitialSeq = 1 << 15

// initialSeq is a stream's random first sequence number, in
// [1, maxInitialSeq). Never 0, which DownTrack.rtxSeq uses for "not yet
// chosen".
func initialSeq() uint16 {
	return uint16(1 + randUint32()%(maxInitialSeq-1))
}

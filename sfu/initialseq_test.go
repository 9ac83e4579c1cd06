package sfu

import (
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
)

// TestStreamsStartInLowerHalfOfSequenceSpace: every down track's first
// packet on the wire, media and RTX, has a sequence number below 2^15
// (initialseq.go). 200 down tracks: with the whole 16-bit range, as before
// issue 18's fix, all 200 would land in the lower half with probability
// 2^-200.
func TestStreamsStartInLowerHalfOfSequenceSpace(t *testing.T) {
	r := newBenchReceiver(vp8Codec)
	l := r.testLayer(0)
	const n = 200
	ws := make([]*recordingWriter, n)
	ds := make([]*DownTrack, n)
	for i := range ds {
		ws[i] = &recordingWriter{}
		ds[i] = attachDownTrack(t, r, rtxContext(ws[i]))
	}
	defer func() {
		for _, d := range ds {
			d.Close()
		}
	}()
	key, _ := benchPackets()
	// The packet's time is an hour ahead: the NACKs come one down track
	// after the other, the last ones more than a second after the packet
	// on a starved machine under -race, and a resend older than
	// maxResendAge is refused (TestRetransmitFromCache's subject, not this
	// test's).
	r.now.Store(time.Now().Add(time.Hour).UnixNano())
	r.forward(l, &rtp.Header{Version: 2, SequenceNumber: 1000, Timestamp: 1000, SSRC: 42}, key)
	flush := func(i int, d *DownTrack) {
		if !d.flush(flushWait) {
			t.Fatalf("down track %d: its send queue not handled in %s", i, flushWait)
		}
	}
	for i, d := range ds {
		flush(i, d)
		w := ws[i]
		w.mu.Lock()
		if len(w.hdrs) != 1 {
			w.mu.Unlock()
			t.Fatalf("down track %d sent %d packets, want 1", i, len(w.hdrs))
		}
		first := w.hdrs[0].SequenceNumber
		w.mu.Unlock()
		if first == 0 || first >= maxInitialSeq {
			t.Fatalf("down track %d started at sequence number %d, want 1..%d", i, first, maxInitialSeq-1)
		}
		d.handleRTCP([]rtcp.Packet{nackFor(500, first)})
		flush(i, d)
		w.mu.Lock()
		if len(w.hdrs) != 2 || w.hdrs[1].SSRC != 501 {
			w.mu.Unlock()
			t.Fatalf("down track %d: no retransmission on the RTX stream after a NACK (%d packets)", i, len(w.hdrs))
		}
		rtxFirst := w.hdrs[1].SequenceNumber
		w.mu.Unlock()
		if rtxFirst == 0 || rtxFirst >= maxInitialSeq {
			t.Fatalf("down track %d: RTX stream started at sequence number %d, want 1..%d", i, rtxFirst, maxInitialSeq-1)
		}
	}
}

// decryptedAfterLoss encrypts total packets of one SSRC starting at
// sequence number start with a fresh sender context, as Starling does for
// a new stream (pion's path and the direct path alike), drops the first
// lost of them, and returns how many of the rest a fresh receiver context
// (pion's srtp, as in the Go client) decrypts.
func decryptedAfterLoss(t *testing.T, profile srtp.ProtectionProfile, start uint16, lost, total int) int {
	t.Helper()
	keyLen, err := profile.KeyLen()
	if err != nil {
		t.Fatal(err)
	}
	saltLen, err := profile.SaltLen()
	if err != nil {
		t.Fatal(err)
	}
	key, salt := make([]byte, keyLen), make([]byte, saltLen)
	for i := range key {
		key[i] = byte(i + 1)
	}
	tx, err := srtp.CreateContext(key, salt, profile)
	if err != nil {
		t.Fatal(err)
	}
	rx, err := srtp.CreateContext(key, salt, profile)
	if err != nil {
		t.Fatal(err)
	}
	pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SSRC: 4242}, Payload: []byte{0xde, 0xad, 0xbe, 0xef}}
	var enc, dec []byte
	ok := 0
	for i := range total {
		pkt.SequenceNumber = start + uint16(i)
		plain, err := pkt.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if enc, err = tx.EncryptRTP(enc[:0], plain, nil); err != nil {
			t.Fatal(err)
		}
		if i < lost {
			continue
		}
		if dec, err = rx.DecryptRTP(dec[:0], enc, nil); err == nil {
			ok++
		}
	}
	return ok
}

// TestEarlyLossKeepsSRTPInSync is issue 18's mechanism on pion's real SRTP:
// a receiver that hears a stream first after the sender's sequence number
// wrapped (its rollover counter went to 1, the receiver assumes 0) never
// decrypts a packet of it, while a stream that starts below 2^15 survives
// the loss of every packet up to its first wrap: 32,768 at worst.
func TestEarlyLossKeepsSRTPInSync(t *testing.T) {
	for _, profile := range []srtp.ProtectionProfile{srtp.ProtectionProfileAeadAes128Gcm, srtp.ProtectionProfileAes128CmHmacSha1_80} {
		// What maxInitialSeq prevents: a start near the top of the
		// space, the first 10 packets lost, nothing decrypts after.
		if got := decryptedAfterLoss(t, profile, 65530, 10, 100); got != 0 {
			t.Fatalf("profile %v: the receiver decrypted %d packets of a stream first heard after its wrap; pion's srtp may now recover the rollover counter (then maxInitialSeq is a belt and braces)", profile, got)
		}
		// The worst start initialSeq picks, losing all but the last
		// packet before the wrap: every packet after decrypts.
		start := uint16(maxInitialSeq - 1)
		lost := 65536 - int(start) - 1
		if got := decryptedAfterLoss(t, profile, start, lost, lost+100); got != 100 {
			t.Fatalf("profile %v: start %d, first %d packets lost: decrypted %d of the 100 after, want all", profile, start, lost, got)
		}
	}
}

package server_test

import "testing"

// VP8 picture ids through the down track's VP8Munger (sfu/vp8munger.go):
// its first mapping forwards them unchanged, and each later one (the down
// track restarted at a keyframe: paused by congestion control and resumed,
// the watchdog's restart, a resumed transport) continues one past the last
// picture id it sent, its offset then fixed until the next. A packet that
// reached the subscriber after such a restart is one the publisher sent,
// with another picture id: TestGarbageOnLiveTrack once failed on one (a
// keyframe start with picture id 0x0076 that mallory had sent with
// another) under load.

// vp8Norm is a publishFake VP8 payload (X, I and M set: a 15-bit picture id
// in bytes 2-3, as the munger writes it too) without its picture id.
func vp8Norm(p []byte) (key string, pid uint16, ok bool) {
	if len(p) < 4 || p[0]&0x80 == 0 || p[1]&0x80 == 0 || p[2]&0x80 == 0 {
		return "", 0, false
	}
	n := append([]byte(nil), p...)
	n[2], n[3] = 0, 0
	return string(n), uint16(p[2]&0x7f)<<8 | uint16(p[3]), true
}

// vp8KeyStart: the first packet of a keyframe, where a mapping may start.
func vp8KeyStart(p []byte) bool {
	return len(p) > 4 && p[0]&0x10 != 0 && p[0]&0x07 == 0 && p[4]&0x01 == 0
}

// checkVP8Rewrite fails t unless every packet in got is one of sent with
// its picture id mapped by a mapping: offset 0 (the first), or that of a
// keyframe start whose picture id is one past one got holds (a later
// mapping continues one past the last picture id sent). It returns how
// many packets carried a picture id other than the one sent. The body of
// publishFake's payloads repeats every 256 frames, so a packet may match
// several sent ones; any of their offsets may be its mapping's.
func checkVP8Rewrite(t *testing.T, sent, got [][]byte) (remapped int) {
	t.Helper()
	const mask = 0x7fff
	sentPIDs := map[string][]uint16{} // normalised payload -> picture ids it was sent with
	exact := map[string]bool{}
	for _, p := range sent {
		k, pid, ok := vp8Norm(p)
		if !ok {
			t.Fatalf("mallory sent a VP8 payload without a 15-bit picture id: % x", p[:min(len(p), 8)])
		}
		sentPIDs[k] = append(sentPIDs[k], pid)
		exact[string(p)] = true
	}
	offsets := func(p []byte) (offs []uint16, out uint16, ok bool) {
		k, out, ok := vp8Norm(p)
		if !ok {
			return nil, 0, false
		}
		for _, in := range sentPIDs[k] {
			offs = append(offs, (out-in)&mask)
		}
		return offs, out, len(offs) > 0
	}
	gotPIDs := map[uint16]bool{}
	for _, p := range got {
		if _, out, ok := vp8Norm(p); ok {
			gotPIDs[out] = true
		}
	}
	mappings := map[uint16]bool{0: true}
	for _, p := range got {
		if offs, out, ok := offsets(p); ok && vp8KeyStart(p) && gotPIDs[(out-1)&mask] {
			for _, o := range offs {
				mappings[o] = true
			}
		}
	}
	for i, p := range got {
		offs, out, ok := offsets(p)
		if !ok {
			t.Fatalf("bob received mallory's VP8 video packet %d (%d bytes: % x...) that mallory never sent as media, even with another picture id",
				i, len(p), p[:min(len(p), 8)])
		}
		mapped := false
		for _, o := range offs {
			mapped = mapped || mappings[o]
		}
		if !mapped {
			t.Fatalf("bob received mallory's VP8 video packet %d (%d bytes: % x...) with picture id %#04x, offset from the ones sent by %v: no mapping's (%v)",
				i, len(p), p[:min(len(p), 8)], out, offs, mappings)
		}
		if !exact[string(p)] {
			remapped++
		}
	}
	return remapped
}

// containsRewritten reports whether got holds any of want, picture ids
// aside.
func containsRewritten(got, want [][]byte) bool {
	set := map[string]bool{}
	for _, w := range want {
		if k, _, ok := vp8Norm(w); ok {
			set[k] = true
		}
	}
	for _, g := range got {
		if k, _, ok := vp8Norm(g); ok && set[k] {
			return true
		}
	}
	return false
}

package sfu

import (
	"encoding/binary"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestBatchConnWriteHeld: held datagrams all arrive, in order, whether a
// frame's last packet releases them, the hold timer does (a frame whose
// last packet never comes), or holdMax of them are held; Close stops the
// hold timer's work with the flusher.
func TestBatchConnWriteHeld(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	sendSock, recv := listenLoopback(t), listenLoopback(t)
	defer recv.Close()
	_ = recv.SetReadBuffer(4 << 20)
	b := newBatchConn(sendSock, true, nil)
	to := recv.LocalAddr().(*net.UDPAddr).AddrPort()
	got := make(chan uint32, 256)
	go func() {
		buf := make([]byte, 2000)
		for {
			n, err := recv.Read(buf)
			if err != nil {
				return
			}
			if n == 1000 {
				got <- binary.BigEndian.Uint32(buf)
			}
		}
	}()
	next := uint32(0)
	write := func(last bool) {
		p := make([]byte, 1000)
		binary.BigEndian.PutUint32(p, next)
		next++
		if _, err := b.WriteHeld(p, to, last); err != nil {
			t.Fatal(err)
		}
	}
	want := uint32(0)
	expect := func(what string) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for want < next {
			select {
			case seq := <-got:
				if seq != want {
					t.Fatalf("%s: datagram %d arrived, expected %d (lost or reordered)", what, seq, want)
				}
				want++
			case <-deadline:
				t.Fatalf("%s: datagram %d of %d never arrived", what, want, next)
			}
		}
	}
	for range 4 { // a frame: three held packets and its last
		write(false)
	}
	write(true)
	expect("a frame ended by its last packet")
	write(false)
	write(false)
	expect("a frame whose last packet was lost (released by the hold timer)")
	for range 3 * holdMax {
		write(false)
	}
	expect("a long frame (released every holdMax packets)")
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.WriteHeld(make([]byte, 1000), to, false); err == nil {
		t.Fatal("held write after Close succeeded")
	}
}

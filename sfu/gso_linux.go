package sfu

import (
	"encoding/binary"
	"errors"
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// gsoSupported reports whether the kernel offers UDP generic segmentation
// offload (UDP_SEGMENT, Linux 4.18+) on this socket.
func gsoSupported(c *net.UDPConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	ok := false
	_ = rc.Control(func(fd uintptr) {
		_, err := unix.GetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT)
		ok = err == nil
	})
	return ok
}

// gsoControlLen is the size of one UDP_SEGMENT control message.
var gsoControlLen = unix.CmsgSpace(2)

// putGSOControl writes a UDP_SEGMENT control message for segments of size
// bytes into oob, which is gsoControlLen long.
func putGSOControl(oob []byte, size int) {
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Level = unix.IPPROTO_UDP
	h.Type = unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(oob[unix.CmsgLen(0):], uint16(size))
}

// gsoRefused reports whether a send failed because the route cannot take
// segmented datagrams (no checksum offload: EIO; segment too large for the
// path MTU, or the option refused: EINVAL), so segmentation must stop.
func gsoRefused(err error) bool {
	return errors.Is(err, syscall.EIO) || errors.Is(err, syscall.EINVAL)
}

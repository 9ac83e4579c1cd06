//go:build !linux

package udpgro

import "net"

var oobSize = 0

func enable(*net.UDPConn) bool { return false }

func segmentSize([]byte) int { return 0 }

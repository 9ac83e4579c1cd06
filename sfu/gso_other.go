//go:build !linux

package sfu

import "net"

func gsoSupported(*net.UDPConn) bool { return false }

var gsoControlLen = 0

func putGSOControl([]byte, int) {}

func gsoRefused(error) bool { return false }

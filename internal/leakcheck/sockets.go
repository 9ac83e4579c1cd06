package leakcheck

import (
	"bufio"
	"encoding/hex"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// socketKinds names the sockets among open files, by inode (the "12345" of
// a "socket:[12345]" link): a TCP socket by its state and, unless it
// listens, the address it is connected to ("tcp CLOSE-WAIT to
// 127.0.0.1:4222"); others by protocol. "socket" alone says nothing of
// what opened thousands of them; the far address and state usually do (a
// reconnect loop whose failed attempts stay open shows as one address in
// CLOSE-WAIT). Sockets not found in /proc/self/net stay "socket".
func socketKinds() map[string]string {
	kinds := map[string]string{}
	for _, proto := range []string{"tcp", "tcp6"} {
		readNetTable("/proc/self/net/"+proto, 9, func(f []string) string {
			st := tcpStates[f[3]]
			if st == "" {
				st = "state " + f[3]
			}
			if st == "LISTEN" {
				return "tcp LISTEN"
			}
			return "tcp " + st + " to " + procAddr(f[2])
		}, kinds)
	}
	for _, proto := range []string{"udp", "udp6"} {
		readNetTable("/proc/self/net/"+proto, 9, func([]string) string { return "udp" }, kinds)
	}
	readNetTable("/proc/self/net/unix", 6, func([]string) string { return "unix" }, kinds)
	readNetTable("/proc/self/net/netlink", 9, func([]string) string { return "netlink" }, kinds)
	return kinds
}

// tcpStates are the kernel's TCP states as /proc/net/tcp writes them.
var tcpStates = map[string]string{
	"01": "ESTABLISHED", "02": "SYN-SENT", "03": "SYN-RECV", "04": "FIN-WAIT-1",
	"05": "FIN-WAIT-2", "06": "TIME-WAIT", "07": "CLOSE", "08": "CLOSE-WAIT",
	"09": "LAST-ACK", "0A": "LISTEN", "0B": "CLOSING",
}

// readNetTable reads a /proc/net table whose inode is field inodeField
// (after its header line), naming each socket with name.
func readNetTable(path string, inodeField int, name func([]string) string, kinds map[string]string) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // the header
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) <= inodeField || len(fields) < 4 {
			continue
		}
		kinds[fields[inodeField]] = name(fields)
	}
}

// procAddr decodes a /proc/net/tcp address ("0100007F:1F90": the IP as
// 32-bit words in host order, little-endian here; the port in hex).
func procAddr(s string) string {
	h, p, ok := strings.Cut(s, ":")
	port, err := strconv.ParseUint(p, 16, 16)
	raw, herr := hex.DecodeString(h)
	if !ok || err != nil || herr != nil || (len(raw) != 4 && len(raw) != 16) {
		return s
	}
	for i := 0; i+4 <= len(raw); i += 4 { // each word's bytes are reversed
		raw[i], raw[i+1], raw[i+2], raw[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
	}
	ip, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(ip.Unmap(), uint16(port)).String()
}

// socketInode is the inode of a "socket:[12345]" link target, or "".
func socketInode(target string) string {
	if s, ok := strings.CutPrefix(target, "socket:["); ok {
		return strings.TrimSuffix(s, "]")
	}
	return ""
}

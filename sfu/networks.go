package sfu

import (
	"fmt"
	"log/slog"
	"net"

	"github.com/pion/webrtc/v4"
)

// mediaNetworks is the candidates' network types: one address-family rule
// for UDP and ICE-TCP alike. The families are those of the media sockets
// (the bind IP's; on every interface IPv4 only, as the per-interface UDP
// mux listens), narrowed with node IPs to the families a node IP covers.
//
// ICE-TCP used to gather both families whatever the UDP sockets did: with
// --node-ip 203.0.113.7 pion's rewrite rule replaced the IPv4 addresses
// and kept each local IPv6 one, so a server behind NAT advertised private
// TCP candidates (fd00::2) next to the public one, and a server without
// --node-ip IPv6 TCP candidates but no IPv6 UDP one.
func mediaNetworks(bindIP string, nodeIPs []string, tcp bool, log *slog.Logger) ([]webrtc.NetworkType, error) {
	v4, v6 := true, false
	if ip := net.ParseIP(bindIP); ip != nil && !ip.IsUnspecified() {
		v4 = ip.To4() != nil
		v6 = !v4
	}
	if len(nodeIPs) > 0 {
		var n4, n6 bool
		for _, s := range nodeIPs {
			ip := net.ParseIP(s)
			switch {
			case ip == nil:
				return nil, fmt.Errorf("node IP %q is not an IP address", s)
			case ip.To4() != nil:
				n4 = true
				if !v4 {
					log.Warn("node IP not advertised: the media sockets are IPv6 (--media-bind-ip)", "node_ip", s)
				}
			default:
				n6 = true
				if !v6 {
					log.Warn("node IP not advertised: the media sockets are IPv4 (bind an IPv6 address with --media-bind-ip)", "node_ip", s)
				}
			}
		}
		v4, v6 = v4 && n4, v6 && n6
		if !v4 && !v6 {
			return nil, fmt.Errorf("node IPs %v: none is of the media sockets' address family (IPv4 unless --media-bind-ip is IPv6)", nodeIPs)
		}
	}
	var networks []webrtc.NetworkType
	if v4 {
		networks = append(networks, webrtc.NetworkTypeUDP4)
		if tcp {
			networks = append(networks, webrtc.NetworkTypeTCP4)
		}
	}
	if v6 {
		networks = append(networks, webrtc.NetworkTypeUDP6)
		if tcp {
			networks = append(networks, webrtc.NetworkTypeTCP6)
		}
	}
	return networks, nil
}

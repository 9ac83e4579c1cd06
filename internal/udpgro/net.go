package udpgro

import (
	"net"

	"github.com/pion/transport/v5"
	"github.com/pion/transport/v5/stdnet"
)

// Net is the operating system's network for pion, with UDP sockets read
// with GRO (webrtc.SettingEngine.SetNet).
type Net struct{ *stdnet.Net }

// NewNet returns the system network with GRO reads.
func NewNet() (*Net, error) {
	n, err := stdnet.NewNet()
	if err != nil {
		return nil, err
	}
	return &Net{n}, nil
}

// ListenUDP opens the socket and wraps it.
func (n *Net) ListenUDP(network string, laddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := net.ListenUDP(network, laddr)
	if err != nil {
		return nil, err
	}
	return Wrap(c), nil
}

package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"slices"

	"github.com/pion/webrtc/v4"

	"github.com/starling-rtc/starling/turnsrv"
)

// TURN is the embedded TURN server, or nil when it is off.
func (s *Server) TURN() *turnsrv.Server { return s.ext.turn }

// setupTURN starts the embedded TURN server when enabled and makes every
// join result carry a TURN entry with credentials for that participant.
func (s *Server) setupTURN() error {
	t := s.cfg.TURN
	if !t.Enabled {
		return nil
	}
	secret, key := "", t.APIKey
	if key == "" {
		if keys := s.auth.Keys(); len(keys) > 0 {
			key = keys[0]
		}
	}
	if key != "" {
		var ok bool
		if secret, ok = s.auth.Secret(key); !ok {
			return fmt.Errorf("turn.api_key %q is not a configured key", key)
		}
	} else { // open server: credentials only need to hold for this process
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return err
		}
		secret = hex.EncodeToString(b)
	}
	preferred := append([]string{t.RelayIP}, s.cfg.RTC.NodeIP...)
	relayIP := turnsrv.DefaultRelayIP(append(preferred, s.cfg.RTC.BindIP)...)
	if relayIP == nil {
		return errors.New("turn: cannot tell this host's address; set turn.relay_ip (--turn-relay-ip)")
	}
	nodeIPs := map[string]bool{}
	for _, ip := range s.cfg.RTC.NodeIP {
		nodeIPs[net.ParseIP(ip).String()] = true
	}
	mediaPorts := s.engine.UDPPorts()
	srv, err := turnsrv.Start(turnsrv.Config{
		ListenIP: s.cfg.RTC.BindIP, Port: t.Port, TCP: t.TCP, RelayIP: relayIP, Host: t.Host,
		Secret: secret, CredentialTTL: t.CredentialTTL.Std(), Logger: s.log,
		AllowedPeer: func(ip net.IP) bool { // this node's media addresses only: never an open relay
			return nodeIPs[ip.String()] || turnsrv.LocalAddress(ip)
		},
		AllowedPort: func(port int) bool { return slices.Contains(mediaPorts, port) }, // and its media ports
	})
	if err != nil {
		return err
	}
	static := iceServers(s.cfg.RTC.ICEServers)
	s.rooms.SetICEServerFunc(func(identity string) []webrtc.ICEServer {
		out := append([]webrtc.ICEServer{}, static...)
		if e, err := srv.ICEServer(identity); err == nil {
			out = append(out, e)
		}
		return out
	})
	s.ext.turn = srv
	s.ext.stops = append(s.ext.stops, func(context.Context) error { return srv.Close() })
	s.log.Info("TURN server on", "udp", srv.UDPPort(), "tcp", srv.TCPPort(), "relay_ip", relayIP.String(), "credentials_from", key)
	return nil
}

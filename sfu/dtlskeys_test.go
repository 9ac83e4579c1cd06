package sfu

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/crypto/selfsign"
	"github.com/pion/srtp/v3"
)

// TestDTLSKeysMatchExporter runs real DTLS handshakes over loopback with
// pion's DTLS and checks that the keys dtlsKeys derives from the key log and
// the ServerHello are the ones pion's own exporter gives the server, for
// each cipher suite hash, with and without the extended master secret, and
// for each SRTP profile browsers use.
func TestDTLSKeysMatchExporter(t *testing.T) {
	for _, tc := range []struct {
		name    string
		suite   dtls.CipherSuiteID
		ems     dtls.ExtendedMasterSecretType
		profile dtls.SRTPProtectionProfile
	}{
		{"AES-128-GCM SHA-256, EMS, AEAD_AES_128_GCM", dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, dtls.RequireExtendedMasterSecret, dtls.SRTP_AEAD_AES_128_GCM},
		{"AES-256-GCM SHA-384, EMS, AEAD_AES_256_GCM", dtls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, dtls.RequireExtendedMasterSecret, dtls.SRTP_AEAD_AES_256_GCM},
		{"AES-256-CBC SHA, no EMS, AES128_CM_HMAC_SHA1_80", dtls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, dtls.DisableExtendedMasterSecret, dtls.SRTP_AES128_CM_HMAC_SHA1_80},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var keys dtlsKeys
			server := dtlsHandshake(t, tc.suite, tc.ems, tc.profile, &keys)
			k, ok := keys.srtpKeys()
			if !ok {
				t.Fatal("no keys learnt from the handshake")
			}
			key, salt, profile := k.key, k.salt, k.profile
			if profile != srtp.ProtectionProfile(tc.profile) {
				t.Fatalf("profile %v, want %v", profile, tc.profile)
			}
			state, ok := server.ConnectionState()
			if !ok {
				t.Fatal("no connection state")
			}
			cfg := srtp.Config{Profile: profile}
			if err := cfg.ExtractSessionKeysFromDTLS(&state, false); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(key, cfg.Keys.LocalMasterKey) || !bytes.Equal(salt, cfg.Keys.LocalMasterSalt) {
				t.Fatalf("derived key %x salt %x, pion's exporter gives %x %x", key, salt, cfg.Keys.LocalMasterKey, cfg.Keys.LocalMasterSalt)
			}
			if !bytes.Equal(k.remoteKey, cfg.Keys.RemoteMasterKey) || !bytes.Equal(k.remoteSalt, cfg.Keys.RemoteMasterSalt) {
				t.Fatalf("derived remote key %x salt %x, pion's exporter gives %x %x", k.remoteKey, k.remoteSalt, cfg.Keys.RemoteMasterKey, cfg.Keys.RemoteMasterSalt)
			}
		})
	}
}

// TestDTLSKeysIncomplete: without the ServerHello (Starling was the DTLS
// client) or the key log line, there are no keys, and stray key log lines
// are ignored.
func TestDTLSKeysIncomplete(t *testing.T) {
	var k dtlsKeys
	for _, line := range []string{"", "garbage\n", "CLIENT_RANDOM zz 00\n", "CLIENT_RANDOM 00 00\n",
		"CLIENT_RANDOM " + string(bytes.Repeat([]byte("ab"), 32)) + " 0102\n"} {
		if n, err := k.Write([]byte(line)); err != nil || n != len(line) {
			t.Fatalf("Write(%q) = %d, %v", line, n, err)
		}
	}
	if _, ok := k.srtpKeys(); ok {
		t.Fatal("keys without a ServerHello")
	}
}

// dtlsHandshake runs a DTLS client and server over loopback UDP; the server has
// keys' hooks. It returns the server's connection.
func dtlsHandshake(t *testing.T, suite dtls.CipherSuiteID, ems dtls.ExtendedMasterSecretType,
	profile dtls.SRTPProtectionProfile, keys *dtlsKeys) *dtls.Conn {
	t.Helper()
	cert, err := selfsign.GenerateSelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	sa, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ca, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	shared := []dtls.Option{
		dtls.WithCertificates(cert), dtls.WithInsecureSkipVerify(true),
		dtls.WithCipherSuites(suite), dtls.WithExtendedMasterSecret(ems),
		dtls.WithSRTPProtectionProfiles(profile),
	}
	serverOpts := []dtls.ServerOption{dtls.WithKeyLogWriter(keys), dtls.WithServerHelloMessageHook(keys.serverHello)}
	clientOpts := []dtls.ClientOption{}
	for _, o := range shared {
		serverOpts = append(serverOpts, o)
		clientOpts = append(clientOpts, o)
	}
	server, err := dtls.ServerWithOptions(sa, ca.LocalAddr(), serverOpts...)
	if err != nil {
		t.Fatal(err)
	}
	client, err := dtls.ClientWithOptions(ca, sa.LocalAddr(), clientOpts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close(); _ = server.Close() })
	done := make(chan error, 1)
	go func() { done <- client.Handshake() }()
	if err := server.Handshake(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("client handshake timed out")
	}
	return server
}

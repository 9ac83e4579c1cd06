package sfu

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"sync"

	"github.com/pion/dtls/v3/pkg/crypto/prf"
	"github.com/pion/dtls/v3/pkg/protocol/extension"
	"github.com/pion/dtls/v3/pkg/protocol/handshake"
	"github.com/pion/srtp/v3"
)

// dtlsKeys learns one connection's SRTP keys while pion's DTLS handshake
// runs, so that the direct send path (srtpdirect.go) can encrypt with them.
// pion keeps its SRTP contexts and the DTLS connection to itself; what it
// does offer, per SettingEngine, is a hook on the ServerHello it sends (the
// server random, the cipher suite, the SRTP profile it chose) and the key
// log (client random and master secret). Together these are exactly the
// inputs of the RFC 5705 exporter that RFC 5764 derives SRTP keys from.
// The server random is only ours to see when Starling is the DTLS server,
// which it is on every subscriber connection a client answers "active" (all
// browsers, pion's default); otherwise keys stay unknown and media takes
// pion's path.
//
// The secrets live in this struct only, as pion's own copies do in its
// DTLS state: nothing is written anywhere.
type dtlsKeys struct {
	mu           sync.Mutex
	haveHello    bool
	serverRandom [handshake.RandomLength]byte
	suite        uint16
	profile      srtp.ProtectionProfile
	haveSecret   bool
	clientRandom [handshake.RandomLength]byte
	master       []byte
}

// serverHello is the SettingEngine's ServerHello hook: it notes what the
// message carries and sends it unchanged.
func (k *dtlsKeys) serverHello(m handshake.MessageServerHello) handshake.Message {
	var profile srtp.ProtectionProfile
	for _, e := range m.Extensions {
		u, ok := e.(*extension.UseSRTP)
		if ok && len(u.ProtectionProfiles) == 1 && len(u.MasterKeyIdentifier) == 0 {
			profile = srtp.ProtectionProfile(u.ProtectionProfiles[0])
		}
	}
	if m.CipherSuiteID != nil && profile != 0 {
		k.mu.Lock()
		k.haveHello = true
		k.serverRandom = m.Random.MarshalFixed()
		k.suite = *m.CipherSuiteID
		k.profile = profile
		k.mu.Unlock()
	}
	return &m
}

// Write takes pion's key log: "CLIENT_RANDOM <client random> <master secret>".
func (k *dtlsKeys) Write(p []byte) (int, error) {
	f := bytes.Fields(p)
	if len(f) != 3 || string(f[0]) != "CLIENT_RANDOM" {
		return len(p), nil
	}
	var cr [handshake.RandomLength]byte
	if hex.DecodedLen(len(f[1])) != len(cr) {
		return len(p), nil
	}
	if _, err := hex.Decode(cr[:], f[1]); err != nil {
		return len(p), nil
	}
	master := make([]byte, hex.DecodedLen(len(f[2])))
	if _, err := hex.Decode(master, f[2]); err != nil {
		return len(p), nil
	}
	k.mu.Lock()
	k.haveSecret, k.clientRandom, k.master = true, cr, master
	k.mu.Unlock()
	return len(p), nil
}

// srtpKeys derives the DTLS server's SRTP master key and salt (what the
// server encrypts with) and the client's (what the server decrypts with).
// ok is false until the handshake has given both halves, or when Starling
// was the DTLS client.
func (k *dtlsKeys) srtpKeys() (keys *directKeys, ok bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.haveHello || !k.haveSecret {
		return nil, false
	}
	cfg := srtp.Config{Profile: k.profile}
	if err := cfg.ExtractSessionKeysFromDTLS(k, false); err != nil {
		return nil, false
	}
	return &directKeys{key: cfg.Keys.LocalMasterKey, salt: cfg.Keys.LocalMasterSalt,
		remoteKey: cfg.Keys.RemoteMasterKey, remoteSalt: cfg.Keys.RemoteMasterSalt, profile: k.profile}, true
}

var errExporterContext = errors.New("keying material exporter: context not supported")

// ExportKeyingMaterial is RFC 5705's exporter as DTLS 1.2 computes it: the
// PRF of the cipher suite over label, client random and server random.
// Call with k.mu held.
func (k *dtlsKeys) ExportKeyingMaterial(label string, context []byte, length int) ([]byte, error) {
	if len(context) != 0 {
		return nil, errExporterContext
	}
	seed := make([]byte, 0, len(label)+2*handshake.RandomLength)
	seed = append(seed, label...)
	seed = append(seed, k.clientRandom[:]...)
	seed = append(seed, k.serverRandom[:]...)
	return prf.PHash(k.master, seed, length, suiteHash(k.suite))
}

// suiteHash is the PRF hash of a DTLS 1.2 cipher suite: SHA-384 for the
// AES-256-GCM suites, SHA-256 for every other suite pion offers.
func suiteHash(id uint16) prf.HashFunc {
	switch id {
	case 0xc02c, 0xc030: // TLS_ECDHE_{ECDSA,RSA}_WITH_AES_256_GCM_SHA384
		return sha512.New384
	}
	return sha256.New
}

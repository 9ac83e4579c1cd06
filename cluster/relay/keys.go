package relay

import (
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"

	"github.com/pion/srtp/v3"
)

// profile is the SRTP protection profile of every relay stream: AEAD, so
// one pass encrypts and authenticates.
const profile = srtp.ProtectionProfileAeadAes128Gcm

const (
	keyLen  = 16 // AES-128
	saltLen = 12 // the AEAD profiles' master salt
)

// epoch is a node's random per-Transport value, sent in every datagram and
// mixed into its sending keys: a restarted node (same secret, same node id)
// gets fresh keys, so SRTP indexes starting over never repeat a nonce.
type epoch [epochLen]byte

func newEpoch() (epoch, error) {
	var e epoch
	_, err := rand.Read(e[:])
	return e, err
}

// deriveKeys is the SRTP master key and salt for media sent by node from to
// node to under from's epoch: HKDF-SHA256 of the cluster secret, with both
// ids (length-prefixed, so "ab"+"c" differs from "a"+"bc") and the epoch as
// the info.
func deriveKeys(secret []byte, from, to string, e epoch) (key, salt []byte, err error) {
	info := make([]byte, 0, 32+len(from)+len(to))
	info = append(info, "starling relay v1 "...)
	info = binary.BigEndian.AppendUint16(info, uint16(len(from)))
	info = append(info, from...)
	info = binary.BigEndian.AppendUint16(info, uint16(len(to)))
	info = append(info, to...)
	info = append(info, e[:]...)
	km, err := hkdf.Key(sha256.New, secret, []byte("starling-cluster-relay"), string(info), keyLen+saltLen)
	if err != nil {
		return nil, nil, err
	}
	return km[:keyLen], km[keyLen:], nil
}

// sendKeys holds the key material one node sends to one peer with; each
// stream (export layer) makes its own srtp.Context from it, so the layers'
// read goroutines never share a context.
type sendKeys struct {
	key, salt []byte
}

func (k sendKeys) context() (*srtp.Context, error) {
	return srtp.CreateContext(k.key, k.salt, profile)
}

// Replay windows of the receiving contexts: a NACK answer arrives up to
// about a second late, some hundreds of packets behind the newest.
const (
	rtpReplayWindow  = 2048
	rtcpReplayWindow = 256
)

func receiveContext(secret []byte, from, to string, e epoch) (*srtp.Context, error) {
	key, salt, err := deriveKeys(secret, from, to, e)
	if err != nil {
		return nil, err
	}
	return srtp.CreateContext(key, salt, profile,
		srtp.SRTPReplayProtection(rtpReplayWindow), srtp.SRTCPReplayProtection(rtcpReplayWindow))
}

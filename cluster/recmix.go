package cluster

import (
	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/cluster/relay"
	"github.com/starling-rtc/starling/sfu"
)

// The audio mix on an edge node ranks remote voices by their node's
// activeSpeakers, which come from the publisher's RFC 6464 audio levels. A
// publisher that sends none (a bare client, not a browser) is never ranked
// there, so the origin says so in its export reply and the edge's import
// reports it like a local receiver does (SendsAudioLevels false): the
// edge's mixer then measures that voice from its decoded audio.

// noAudioLevels: src is a local audio receiver without audio levels.
func noAudioLevels(src sfu.Source) bool {
	lv, ok := src.(interface{ SendsAudioLevels() bool })
	return ok && src.Kind() == webrtc.RTPCodecTypeAudio && !lv.SendsAudioLevels()
}

// withLevels is the import the room gets: the import itself, or for a
// voice without audio levels the import saying so.
func withLevels(imp *relay.Import, rep exportReply) sfu.Source {
	if rep.NoAudioLevels && rep.Kind == webrtc.RTPCodecTypeAudio {
		return levellessImport{imp}
	}
	return imp
}

// levellessImport is an import whose publisher sends no audio levels.
type levellessImport struct{ *relay.Import }

// SendsAudioLevels is false, as for a local receiver without them.
func (levellessImport) SendsAudioLevels() bool { return false }

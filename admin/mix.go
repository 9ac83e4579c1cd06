package admin

import (
	"net/http"

	"github.com/starling-rtc/starling/protocol"
)

// MixRequest is the body of POST .../participants/{id}/mix: a participant's
// voice in the room's live audio mix. Omitted fields are unchanged.
type MixRequest struct {
	// Gain is linear, 0..4 (1 = as sent, 0.5 = -6 dB).
	Gain *float64 `json:"gain,omitempty"`
	// Muted leaves the participant out of the mix; those who receive its
	// track individually still hear it.
	Muted *bool `json:"muted,omitempty"`
}

// MixState is the answer: the participant's settings in the mix.
type MixState struct {
	Gain  float64 `json:"gain"`
	Muted bool    `json:"muted"`
}

func (a *API) mix(w http.ResponseWriter, r *http.Request) {
	name, id := r.PathValue("room"), r.PathValue("id")
	if _, ok := a.authorize(w, r, name, false); !ok {
		return
	}
	var req MixRequest
	if !decode(w, r, &req) {
		return
	}
	if req.Gain == nil && req.Muted == nil {
		writeError(w, protocol.Errorf(protocol.CodeInvalidParams, `invalid params: "gain" or "muted" is required`))
		return
	}
	if a.opts.SetMix != nil {
		// In a cluster, any node, with or without a part of the room: the
		// setting is stored for the room and applied by every node that
		// has or gets a part of it.
		if st, clustered, err := a.opts.SetMix(name, id, req.Gain, req.Muted); clustered {
			if err != nil {
				writeError(w, asProtocol(err))
				return
			}
			writeJSON(w, http.StatusOK, st)
			return
		}
	}
	rm := a.opts.Rooms.Room(name)
	if rm == nil {
		writeError(w, protocol.Errorf(protocol.CodeNotFound, "no room %q", name))
		return
	}
	p := rm.Participant(id)
	if p == nil {
		writeError(w, protocol.Errorf(protocol.CodeNotFound, "no participant %q in room %q", id, name))
		return
	}
	if req.Gain != nil {
		if err := rm.SetMixGain(p.ID(), *req.Gain); err != nil {
			writeError(w, asProtocol(err))
			return
		}
	}
	if req.Muted != nil {
		if err := rm.SetMixMuted(p.ID(), *req.Muted); err != nil {
			writeError(w, asProtocol(err))
			return
		}
	}
	gain, muted := rm.MixPref(p.ID())
	writeJSON(w, http.StatusOK, MixState{Gain: gain, Muted: muted})
}

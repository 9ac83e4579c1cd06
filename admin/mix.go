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
	p, ok := a.participant(w, r)
	if !ok {
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
	rm := p.Room()
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

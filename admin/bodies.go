package admin

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/starling-rtc/starling/protocol"
)

// Request bodies: one JSON object each, checked before anything is done.

// decodeUpdate reads and checks a PATCH .../participants/{id} body.
func decodeUpdate(w http.ResponseWriter, r *http.Request, req *UpdateRequest) bool {
	if !decode(w, r, req) {
		return false
	}
	switch {
	case req.Name == nil && req.Metadata == nil:
		writeError(w, protocol.Errorf(protocol.CodeInvalidParams, `invalid params: give "name" and/or "metadata"`))
		return false
	case req.Name != nil && utf8.RuneCountInString(*req.Name) > maxName:
		writeError(w, protocol.Errorf(protocol.CodeInvalidParams, `invalid params: "name" is longer than %d characters`, maxName))
		return false
	case req.Metadata != nil && len(*req.Metadata) > maxMetadata:
		writeError(w, protocol.Errorf(protocol.CodeTooLarge, `"metadata" is larger than %d bytes`, maxMetadata))
		return false
	}
	return true
}

// decodeData reads and checks a POST .../data body.
func (a *API) decodeData(w http.ResponseWriter, r *http.Request, req *DataRequest) bool {
	if !decode(w, r, req) {
		return false
	}
	switch {
	case req.Payload == nil:
		writeError(w, protocol.Errorf(protocol.CodeInvalidParams, `invalid params: "payload" is required`))
		return false
	case len(*req.Payload) > a.opts.MaxDataMessage:
		writeError(w, protocol.Errorf(protocol.CodeTooLarge, `"payload" is %d bytes, the limit is %d`, len(*req.Payload), a.opts.MaxDataMessage))
		return false
	}
	return true
}

// decodeMute reads and checks a POST .../mute body.
func decodeMute(w http.ResponseWriter, r *http.Request, req *MuteRequest) bool {
	if !decode(w, r, req) {
		return false
	}
	if req.TrackID == "" || req.Muted == nil {
		writeError(w, protocol.Errorf(protocol.CodeInvalidParams, `invalid params: "trackId" and "muted" are required`))
		return false
	}
	return true
}

// decode reads a JSON object body, refusing unknown fields and big bodies.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(strings.ToLower(ct), "application/json") {
		writeError(w, protocol.Errorf(protocol.CodeInvalidRequest, "invalid request: Content-Type must be application/json (curl: -H 'Content-Type: application/json')"))
		return false
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			writeError(w, protocol.Errorf(protocol.CodeTooLarge, "request body is larger than %d bytes", maxBody))
		case errors.Is(err, io.EOF):
			writeError(w, protocol.Errorf(protocol.CodeInvalidRequest, "invalid request: a JSON object body is required"))
		default:
			var syn *json.SyntaxError
			if errors.As(err, &syn) {
				writeError(w, protocol.Errorf(protocol.CodeParseError, "parse error: the body is not valid JSON"))
			} else {
				writeError(w, protocol.Errorf(protocol.CodeInvalidParams, "invalid params: %v", err))
			}
		}
		return false
	}
	if dec.More() {
		writeError(w, protocol.Errorf(protocol.CodeInvalidRequest, "invalid request: one JSON object per request"))
		return false
	}
	return true
}

package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"reflect"
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
	case req.To != nil && len(req.To) == 0:
		// "to": [] read as "everyone" (as a missing "to" is) sent a message
		// meant for a list that came out empty to the whole room.
		writeError(w, protocol.Errorf(protocol.CodeInvalidParams, `invalid params: "to" lists no participant: leave it out to reach everyone`))
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

// decode reads a JSON object body, refusing unknown fields and big
// bodies, with the codes of docs/admin-api.md "Errors": -32700 for what
// is not JSON (a body cut short included), -32600 for no body, one that
// is not an object or several objects, -32602 for a field of the wrong
// type, named as the client wrote it (encoding/json's messages name Go's
// struct fields and types).
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	fail := func(code int, format string, args ...any) bool {
		writeError(w, protocol.Errorf(code, format, args...))
		return false
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(strings.ToLower(ct), "application/json") {
		return fail(protocol.CodeInvalidRequest, "invalid request: Content-Type must be application/json (curl: -H 'Content-Type: application/json')")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return fail(protocol.CodeTooLarge, "request body is larger than %d bytes", maxBody)
	case err != nil:
		return fail(protocol.CodeInvalidRequest, "invalid request: the body could not be read")
	}
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return fail(protocol.CodeInvalidRequest, "invalid request: a JSON object body is required")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	err = dec.Decode(v)
	var syntax *json.SyntaxError
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax) || errors.Is(err, io.ErrUnexpectedEOF):
		return fail(protocol.CodeParseError, "parse error: the body is not valid JSON")
	case body[0] != '{':
		return fail(protocol.CodeInvalidRequest, "invalid request: the body must be one JSON object")
	case errors.As(err, &typeErr):
		return fail(protocol.CodeInvalidParams, "invalid params: field %q has %s where %s belongs", typeErr.Field, jsonKind(typeErr.Value), goKind(typeErr.Type))
	case err != nil: // an unknown field: "json: unknown field \"x\""
		return fail(protocol.CodeInvalidParams, "invalid params: %s", strings.TrimPrefix(err.Error(), "json: "))
	case dec.More():
		return fail(protocol.CodeInvalidRequest, "invalid request: one JSON object per request")
	}
	return true
}

// jsonKind names the JSON value encoding/json's UnmarshalTypeError.Value
// describes ("number", "string", "bool", "array", "object", "number 1e999").
func jsonKind(value string) string {
	kind, _, _ := strings.Cut(value, " ")
	switch kind {
	case "bool":
		return "a boolean"
	case "array", "object":
		return "an " + kind
	case "":
		return "a value"
	}
	return "a " + kind
}

// goKind names the JSON value a Go type is read from.
func goKind(t reflect.Type) string {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil {
		return "another value"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	}
	return "an object"
}

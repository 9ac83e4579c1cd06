package signaling

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"

	"github.com/starling-rtc/starling/protocol"
)

// DecodeParams strictly decodes params into v (a pointer to a struct):
// missing or null params are treated as {}; a value of the wrong JSON type
// gives a CodeInvalidParams error whose message names the field and the
// expected type, e.g. `invalid params: field "room" must be a string`.
//
// Unknown fields are ignored on purpose: the protocol allows new optional
// fields, and a newer client must still be able to talk to this server.
// Required fields and value ranges are the caller's to check.
func DecodeParams(raw json.RawMessage, v any) *protocol.Error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, nullJSON) {
		raw = emptyJSON
	}
	err := json.Unmarshal(raw, v)
	if err == nil {
		return nil
	}
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		return typeError(typeErr, reflect.TypeOf(v))
	case errors.As(err, &syntaxErr):
		return protocol.Errorf(protocol.CodeInvalidParams, "invalid params: not valid JSON")
	}
	// Anything else (v not a pointer, a custom UnmarshalJSON failing) is
	// either our bug or a value the type itself rejects.
	var invalid *json.InvalidUnmarshalError
	if errors.As(err, &invalid) {
		return protocol.Errorf(protocol.CodeInternal, "internal error: cannot decode params")
	}
	return protocol.Errorf(protocol.CodeInvalidParams, "invalid params: %v", err)
}

func typeError(e *json.UnmarshalTypeError, target reflect.Type) *protocol.Error {
	declared, field := fieldType(target, e.Field)
	if declared == nil {
		declared, field = e.Type, e.Field
	}
	want := describeType(declared, strings.HasPrefix(e.Value, "number"))
	if field == "" {
		return protocol.Errorf(protocol.CodeInvalidParams, "invalid params: params must be %s", want)
	}
	return protocol.Errorf(protocol.CodeInvalidParams, "invalid params: field %q must be %s", field, want)
}

// fieldType finds the declared Go type of a dotted field path as reported by
// UnmarshalTypeError, and the path as the client wrote it. The error itself
// only has the innermost type, which for "trackIds": [1] is string; the
// declared []string lets the message say "an array of strings". The
// reported path also names embedded structs, which the client never sees.
// Nil when the path cannot be followed.
func fieldType(t reflect.Type, path string) (reflect.Type, string) {
	if t == nil {
		return nil, ""
	}
	t = deref(t)
	if path == "" {
		return t, ""
	}
	var shown []string
	for _, name := range strings.Split(path, ".") {
		for t.Kind() == reflect.Slice || t.Kind() == reflect.Array || t.Kind() == reflect.Map {
			t = deref(t.Elem()) // the path has no indexes or keys
		}
		if t.Kind() != reflect.Struct {
			return nil, ""
		}
		f, ok := jsonField(t, name)
		if !ok {
			return nil, ""
		}
		if !f.Anonymous {
			shown = append(shown, name)
		}
		t = deref(f.Type)
	}
	return t, strings.Join(shown, ".")
}

// jsonField looks one path element up: a JSON name (tag or Go name,
// case-insensitively, as encoding/json matches) or an embedded struct's name.
func jsonField(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if tag == "-" || (!f.IsExported() && !f.Anonymous) {
			continue
		}
		if f.Anonymous && tag == "" {
			if f.Name == name {
				return f, true
			}
			continue
		}
		if tag == "" {
			tag = f.Name
		}
		if strings.EqualFold(tag, name) {
			f.Anonymous = false // a tagged embedded struct is an ordinary field
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func deref(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

// describeType says in words what JSON a Go type accepts. gotNumber means a
// number reached an integer field, so it was fractional or out of range and
// the message gives the range where it is a useful one.
func describeType(t reflect.Type, gotNumber bool) string {
	t = deref(t)
	switch {
	case isText(t):
		return "a string"
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8:
		return "a base64 string"
	case t.Kind() == reflect.Slice || t.Kind() == reflect.Array:
		return "an array of " + plural(t.Elem())
	case t.Kind() == reflect.Map:
		return "an object with " + plural(t.Elem()) + " as values"
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if gotNumber && t.Bits() < 64 {
			return fmt.Sprintf("an integer between %d and %d", int64(-1)<<(t.Bits()-1), int64(1)<<(t.Bits()-1)-1)
		}
		return "an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		if gotNumber && t.Bits() < 64 {
			return fmt.Sprintf("an integer between 0 and %d", uint64(math.MaxUint64)>>(64-t.Bits()))
		}
		return "a non-negative integer"
	}
	switch p := plural(t); p {
	case "objects":
		return "an object"
	default:
		return "a " + strings.TrimSuffix(p, "s")
	}
}

// plural names a JSON type in the plural, for array and map elements.
func plural(t reflect.Type) string {
	t = deref(t)
	if isText(t) {
		return "strings"
	}
	switch t.Kind() {
	case reflect.String:
		return "strings"
	case reflect.Bool:
		return "booleans"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return "integers"
	case reflect.Float32, reflect.Float64:
		return "numbers"
	case reflect.Slice, reflect.Array:
		return "arrays"
	case reflect.Struct, reflect.Map:
		return "objects"
	}
	return "values"
}

// isText reports types that decode from a JSON string through
// encoding.TextUnmarshaler (enums, ids) unless they are objects anyway.
func isText(t reflect.Type) bool {
	if t.Kind() == reflect.Struct {
		return false
	}
	return t.Implements(textUnmarshaler) || reflect.PointerTo(t).Implements(textUnmarshaler)
}

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

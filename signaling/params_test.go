package signaling

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/starling-rtc/starling/protocol"
)

func TestDecodeParams(t *testing.T) {
	type embedded struct {
		Inner string `json:"inner"`
	}
	type custom struct {
		embedded
		Plain  string
		Grid   [][]int8          `json:"grid"`
		Labels map[string]string `json:"labels"`
		Ratio  float64           `json:"ratio"`
		Blob   []byte            `json:"blob"`
		Any    any               `json:"any"`
	}
	tests := []struct {
		name    string
		raw     string
		into    func() any
		want    any    // decoded value when no error
		wantErr string // exact message; code is always -32602 unless wantCode
		code    int
	}{
		{name: "missing params", raw: ``, into: func() any { return &protocol.Empty{} }, want: &protocol.Empty{}},
		{name: "null params", raw: `null`, into: func() any { return &protocol.JoinParams{} }, want: &protocol.JoinParams{}},
		{name: "empty object", raw: ` {} `, into: func() any { return &protocol.MuteParams{} }, want: &protocol.MuteParams{}},
		{name: "valid join", raw: `{"room":"r","autoSubscribe":false}`, into: func() any { return &protocol.JoinParams{} },
			want: &protocol.JoinParams{Room: "r", AutoSubscribe: new(false)}},
		{name: "unknown fields are ignored", raw: `{"trackId":"t","muted":true,"future":{"x":1}}`, into: func() any { return &protocol.MuteParams{} },
			want: &protocol.MuteParams{TrackID: "t", Muted: true}},
		{name: "string field", raw: `{"room":5}`, into: func() any { return &protocol.JoinParams{} },
			wantErr: `invalid params: field "room" must be a string`},
		{name: "boolean field", raw: `{"autoSubscribe":"yes"}`, into: func() any { return &protocol.JoinParams{} },
			wantErr: `invalid params: field "autoSubscribe" must be a boolean`},
		{name: "integer field", raw: `{"trackId":"t","maxWidth":"wide"}`, into: func() any { return &protocol.SetSubscriptionParams{} },
			wantErr: `invalid params: field "maxWidth" must be an integer`},
		{name: "fractional integer", raw: `{"maxHeight":1.5}`, into: func() any { return &protocol.SetSubscriptionParams{} },
			wantErr: `invalid params: field "maxHeight" must be an integer`},
		{name: "array field", raw: `{"tracks":{}}`, into: func() any { return &protocol.OfferParams{} },
			wantErr: `invalid params: field "tracks" must be an array of objects`},
		{name: "array element", raw: `{"trackIds":["a",1]}`, into: func() any { return &protocol.TrackIDsParams{} },
			wantErr: `invalid params: field "trackIds" must be an array of strings`},
		{name: "nested field", raw: `{"sdp":"v=0","tracks":[{"trackId":"a","layers":[{"rid":"f","width":"big"}]}]}`, into: func() any { return &protocol.OfferParams{} },
			wantErr: `invalid params: field "tracks.layers.width" must be an integer`},
		{name: "object field", raw: `{"target":"publisher","candidate":"a=candidate"}`, into: func() any { return &protocol.CandidateParams{} },
			wantErr: `invalid params: field "candidate" must be an object`},
		{name: "small integer out of range", raw: `{"candidate":{"candidate":"c","sdpMLineIndex":70000}}`, into: func() any { return &protocol.CandidateParams{} },
			wantErr: `invalid params: field "candidate.sdpMLineIndex" must be an integer between 0 and 65535`},
		{name: "null candidate is end of candidates", raw: `{"target":"subscriber","candidate":null}`, into: func() any { return &protocol.CandidateParams{} },
			want: &protocol.CandidateParams{Target: "subscriber"}},
		{name: "array params", raw: `["room"]`, into: func() any { return &protocol.JoinParams{} },
			wantErr: `invalid params: params must be an object`},
		{name: "string params", raw: `"room"`, into: func() any { return &protocol.JoinParams{} },
			wantErr: `invalid params: params must be an object`},
		{name: "malformed", raw: `{"room":`, into: func() any { return &protocol.JoinParams{} },
			wantErr: `invalid params: not valid JSON`},
		{name: "embedded field", raw: `{"inner":true}`, into: func() any { return &custom{} },
			wantErr: `invalid params: field "inner" must be a string`},
		{name: "untagged field", raw: `{"plain":1}`, into: func() any { return &custom{} },
			wantErr: `invalid params: field "Plain" must be a string`},
		{name: "nested arrays", raw: `{"grid":[[1,"x"]]}`, into: func() any { return &custom{} },
			wantErr: `invalid params: field "grid" must be an array of arrays`},
		{name: "map values", raw: `{"labels":{"a":1}}`, into: func() any { return &custom{} },
			wantErr: `invalid params: field "labels" must be an object with strings as values`},
		{name: "number field", raw: `{"ratio":"1"}`, into: func() any { return &custom{} },
			wantErr: `invalid params: field "ratio" must be a number`},
		{name: "bytes field", raw: `{"blob":5}`, into: func() any { return &custom{} },
			wantErr: `invalid params: field "blob" must be a base64 string`},
		{name: "any accepts anything", raw: `{"any":[1,{"a":null}]}`, into: func() any { return &custom{} },
			want: &custom{Any: []any{1.0, map[string]any{"a": nil}}}},
		{name: "non-pointer target is a server bug", raw: `{}`, into: func() any { return protocol.Empty{} },
			wantErr: `internal error: cannot decode params`, code: protocol.CodeInternal},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := tc.into()
			err := DecodeParams(json.RawMessage(tc.raw), v)
			if tc.wantErr != "" {
				code := tc.code
				if code == 0 {
					code = protocol.CodeInvalidParams
				}
				if err == nil || err.Code != code || err.Message != tc.wantErr {
					t.Fatalf("got %v, want %d: %s", err, code, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error %v", err)
			}
			if !reflect.DeepEqual(v, tc.want) {
				t.Errorf("decoded %#v, want %#v", v, tc.want)
			}
		})
	}
}

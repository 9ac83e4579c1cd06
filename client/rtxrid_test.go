package client

import (
	"testing"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
)

// TestRTXRID: RTX packets of a simulcast layer carry repaired-rid, not
// rid; media packets keep their rid.
func TestRTXRID(t *testing.T) {
	const ridID, rridID = 10, 11
	info := &interceptor.StreamInfo{SSRC: 1, SSRCRetransmission: 2, RTPHeaderExtensions: []interceptor.RTPHeaderExtension{
		{URI: sdp.SDESMidURI, ID: 9}, {URI: sdp.SDESRTPStreamIDURI, ID: ridID}, {URI: sdp.SDESRepairRTPStreamIDURI, ID: rridID},
	}}
	var got []rtp.Header
	w := (&rtxRID{}).BindLocalStream(info, interceptor.RTPWriterFunc(func(h *rtp.Header, _ []byte, _ interceptor.Attributes) (int, error) {
		got = append(got, h.Clone())
		return 0, nil
	}))
	for _, ssrc := range []uint32{1, 2} {
		h := &rtp.Header{Version: 2, SSRC: ssrc}
		if err := h.SetExtension(9, []byte("0")); err != nil {
			t.Fatal(err)
		}
		if err := h.SetExtension(ridID, []byte("f")); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(h, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	if media := got[0]; string(media.GetExtension(ridID)) != "f" || media.GetExtension(rridID) != nil {
		t.Fatalf("media packet changed: rid %q, rrid %q", media.GetExtension(ridID), media.GetExtension(rridID))
	}
	if rtx := got[1]; rtx.GetExtension(ridID) != nil || string(rtx.GetExtension(rridID)) != "f" || string(rtx.GetExtension(9)) != "0" {
		t.Fatalf("RTX packet: rid %q, rrid %q, mid %q; want no rid, rrid f, mid 0",
			rtx.GetExtension(ridID), rtx.GetExtension(rridID), rtx.GetExtension(9))
	}
}

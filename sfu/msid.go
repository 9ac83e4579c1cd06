package sfu

import (
	"strings"

	"github.com/pion/sdp/v3"
)

// msidForPion rewrites a publisher offer so that pion gives each incoming
// track the msid track id ParseOffer read from the section (the id the
// client's offer names, docs/PROTOCOL.md "msid"). pion reads it
// differently in two ways, and such a track arrived with the id "" and was
// never published:
//   - an ssrc's track id is the msid seen so far in the section: an a=msid
//     after the a=ssrc lines (SDP puts no order on attributes) counts for
//     none of them;
//   - an a=msid with one token (RFC 8830: the stream id, no track id) names
//     no track for pion, where ParseOffer takes the token as the track id.
//
// So a section whose track id came from a media-level a=msid gets that one
// line, in two-token form, before its first a=ssrc line. Sections that
// need nothing (the usual browser offer) leave the SDP as it was.
func msidForPion(raw string) string {
	var s sdp.SessionDescription
	if err := s.UnmarshalString(raw); err != nil {
		return raw // checkRemote and pion report it
	}
	changed := false
	for _, md := range s.MediaDescriptions {
		if k := md.MediaName.Media; k != "audio" && k != "video" {
			continue
		}
		stream, track, msidAt, firstSSRC, ok := "", "", -1, -1, true
		for i, a := range md.Attributes {
			switch a.Key {
			case "msid":
				f := strings.Fields(a.Value)
				switch len(f) {
				case 2:
					stream, track = f[0], f[1]
				case 1:
					stream, track, ok = "-", f[0], false
				}
				if firstSSRC >= 0 {
					ok = false // after an a=ssrc line
				}
				msidAt = i
			case "ssrc", "ssrc-group":
				if firstSSRC < 0 {
					firstSSRC = i
				}
			}
		}
		if msidAt < 0 || ok || track == "" {
			continue
		}
		attrs := make([]sdp.Attribute, 0, len(md.Attributes))
		for i, a := range md.Attributes {
			if i == firstSSRC {
				attrs = append(attrs, sdp.NewAttribute("msid", stream+" "+track))
			}
			if a.Key != "msid" {
				attrs = append(attrs, a)
			}
		}
		if firstSSRC < 0 {
			attrs = append(attrs, sdp.NewAttribute("msid", stream+" "+track))
		}
		md.Attributes = attrs
		changed = true
	}
	if !changed {
		return raw
	}
	b, err := s.Marshal()
	if err != nil {
		return raw
	}
	return string(b)
}

// ridsForPion keeps the first MaxLayers "a=rid:<id> send" lines of each
// media section of a publisher offer and drops the others: Starling uses
// up to three encodings of a track (the room keeps the first three in SDP
// order), and pion answers every rid it is given, so a client offering
// four was told the fourth was received, and encoded and sent it for
// nothing. The a=simulcast line may still name it: pion answers from the
// rid lines.
func ridsForPion(raw string) string {
	if strings.Count(raw, "a=rid:") <= MaxLayers {
		return raw
	}
	var b strings.Builder
	b.Grow(len(raw))
	n := 0
	for _, l := range strings.SplitAfter(raw, "\n") {
		if strings.HasPrefix(l, "m=") {
			n = 0
		}
		if v, ok := strings.CutPrefix(l, "a=rid:"); ok {
			if f := strings.Fields(v); len(f) >= 2 && f[1] == "send" {
				if n++; n > MaxLayers {
					continue
				}
			}
		}
		b.WriteString(l)
	}
	return b.String()
}

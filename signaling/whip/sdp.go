package whip

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/sfu"
)

// prepareWHIPOffer gives every sending media section an msid and
// announces its tracks. Starling links a section to its track by the msid
// track id; WHIP clients need not send one (some put it on a=ssrc lines
// only, some omit it), so the server names such a track itself.
func prepareWHIPOffer(offer string) (string, []protocol.TrackAnnouncement, *httpError) {
	var s sdp.SessionDescription
	if err := s.UnmarshalString(offer); err != nil {
		return "", nil, fail(http.StatusBadRequest, "the SDP offer does not parse: "+err.Error())
	}
	changed := false
	for i, md := range s.MediaDescriptions {
		kind := md.MediaName.Media
		if kind != "audio" && kind != "video" {
			continue
		}
		if _, ok := md.Attribute("msid"); ok {
			continue
		}
		value := ""
		for _, a := range md.Attributes { // a=ssrc:<ssrc> msid:<stream> <track>
			if a.Key != "ssrc" {
				continue
			}
			if _, rest, ok := strings.Cut(a.Value, " msid:"); ok && len(strings.Fields(rest)) == 2 {
				value = rest
				break
			}
		}
		if value == "" {
			mid, _ := md.Attribute("mid")
			if mid == "" {
				mid = fmt.Sprint(i)
			}
			value = "whip whip-" + kind + "-" + mid
		}
		md.WithValueAttribute("msid", value)
		changed = true
	}
	if changed {
		b, err := s.Marshal()
		if err != nil {
			return "", nil, fail(http.StatusBadRequest, "the SDP offer does not parse: "+err.Error())
		}
		offer = string(b)
	}
	offered, err := sfu.ParseOffer(offer)
	if err != nil {
		return "", nil, offerError(err)
	}
	anns := make([]protocol.TrackAnnouncement, 0, len(offered))
	seen := map[string]bool{}
	for _, o := range offered {
		if seen[o.TrackID] {
			return "", nil, fail(http.StatusBadRequest, "two media sections send the same msid track "+o.TrackID)
		}
		seen[o.TrackID] = true
		source := protocol.SourceMicrophone
		if o.Kind == "video" {
			source = protocol.SourceCamera
		}
		anns = append(anns, protocol.TrackAnnouncement{TrackID: o.TrackID, Source: source})
	}
	return offer, anns, nil
}

// linkHeaders are RFC 9725's Link header values for the ICE servers
// (section 4.6): STUN and TURN, TURN with its credentials.
func linkHeaders(servers []webrtc.ICEServer) []string {
	var out []string
	for _, s := range servers {
		for _, u := range s.URLs {
			v := "<" + u + `>; rel="ice-server"`
			if s.Username != "" {
				v += "; username=" + quote(s.Username)
				if c, ok := s.Credential.(string); ok {
					v += "; credential=" + quote(c) + `; credential-type="password"`
				}
			}
			out = append(out, v)
		}
	}
	return out
}

// quote makes an HTTP quoted-string.
func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// etagOf names an ICE session by the server's credentials in sdp: a
// restart changes them, and so the entity tag.
func etagOf(sdp string) string {
	var ufrag, pwd string
	for _, line := range strings.Split(sdp, "\n") {
		line = strings.TrimSpace(line)
		if v, ok := strings.CutPrefix(line, "a=ice-ufrag:"); ok && ufrag == "" {
			ufrag = v
		}
		if v, ok := strings.CutPrefix(line, "a=ice-pwd:"); ok && pwd == "" {
			pwd = v
		}
	}
	sum := sha256.Sum256([]byte(ufrag + ":" + pwd))
	return `"` + hex.EncodeToString(sum[:8]) + `"`
}

// sdpFrag is an RFC 8840 trickle ICE fragment.
type sdpFrag struct {
	ufrag, pwd string
	candidates []fragCandidate
}

type fragCandidate struct {
	mid  string
	line string // "candidate:..." without "a="
}

// parseFrag reads a trickle-ice-sdpfrag body. Candidates belong to the
// media section (mid) above them; the session has one transport (BUNDLE),
// so a candidate before any m= line goes to the first section.
func parseFrag(body string) (*sdpFrag, *httpError) {
	f := &sdpFrag{}
	mid := "0"
	for _, raw := range strings.Split(body, "\n") {
		line := strings.TrimSpace(raw)
		switch {
		case line == "":
		case strings.HasPrefix(line, "a=ice-ufrag:"):
			f.ufrag = strings.TrimPrefix(line, "a=ice-ufrag:")
		case strings.HasPrefix(line, "a=ice-pwd:"):
			f.pwd = strings.TrimPrefix(line, "a=ice-pwd:")
		case strings.HasPrefix(line, "a=mid:"):
			mid = strings.TrimPrefix(line, "a=mid:")
		case strings.HasPrefix(line, "a=candidate:"):
			if len(f.candidates) >= 64 {
				return nil, fail(http.StatusBadRequest, "more than 64 candidates in one fragment")
			}
			f.candidates = append(f.candidates, fragCandidate{mid: mid, line: strings.TrimPrefix(line, "a=")})
		case strings.HasPrefix(line, "a="), strings.HasPrefix(line, "m="):
			// a=ice-options, a=end-of-candidates, a=group, m= lines: nothing to do
		default:
			return nil, fail(http.StatusBadRequest, fmt.Sprintf("not an sdpfrag line: %.80q", line))
		}
	}
	return f, nil
}

// answerFrag is the server's side of an ICE restart as a fragment: its new
// credentials and candidates, on the first media section (the BUNDLE
// transport).
func answerFrag(local string) string {
	var s sdp.SessionDescription
	if err := s.UnmarshalString(local); err != nil || len(s.MediaDescriptions) == 0 {
		return ""
	}
	var b strings.Builder
	ufrag, pwd := "", ""
	md := s.MediaDescriptions[0]
	for _, attrs := range [][]sdp.Attribute{s.Attributes, md.Attributes} {
		for _, a := range attrs {
			switch a.Key {
			case "ice-ufrag":
				ufrag = a.Value
			case "ice-pwd":
				pwd = a.Value
			}
		}
	}
	fmt.Fprintf(&b, "a=ice-ufrag:%s\r\na=ice-pwd:%s\r\n", ufrag, pwd)
	mid, _ := md.Attribute("mid")
	fmt.Fprintf(&b, "m=%s 9 %s %s\r\na=mid:%s\r\n", md.MediaName.Media,
		strings.Join(md.MediaName.Protos, "/"), strings.Join(md.MediaName.Formats, " "), mid)
	for _, a := range md.Attributes {
		if a.Key == "candidate" {
			fmt.Fprintf(&b, "a=candidate:%s\r\n", a.Value)
		}
	}
	b.WriteString("a=end-of-candidates\r\n")
	return b.String()
}

// receivesMedia reports whether a WHEP offer has an audio or video
// section that may receive (recvonly or sendrecv, not stopped), so a
// useless offer is refused before its participant joins the room.
func receivesMedia(offer string) bool {
	var s sdp.SessionDescription
	if s.UnmarshalString(offer) != nil {
		return false
	}
	for _, md := range s.MediaDescriptions {
		if k := md.MediaName.Media; k != "audio" && k != "video" {
			continue
		}
		if _, bundleOnly := md.Attribute("bundle-only"); md.MediaName.Port.Value == 0 && !bundleOnly {
			continue
		}
		_, sendonly := md.Attribute("sendonly")
		_, inactive := md.Attribute("inactive")
		if !sendonly && !inactive {
			return true
		}
	}
	return false
}

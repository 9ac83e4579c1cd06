package sfu

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/pion/sdp/v3"
)

// OfferedTrack is one media section of a publisher offer that sends media.
type OfferedTrack struct {
	MID      string
	Kind     string // "audio" or "video"
	StreamID string
	TrackID  string   // the msid track id: links the section to the client's metadata
	RIDs     []string // simulcast encodings, in the order offered
}

// ErrNoRTCPMux: an offered media section does not multiplex RTCP with RTP.
// docs/PROTOCOL.md requires rtcp-mux; without it the client would send its
// RTCP (receiver reports, NACK, PLI) to a second transport that never exists.
var ErrNoRTCPMux = errors.New("rtcp-mux is required")

// ErrNoBundle: an offer has several media sections in use that are not
// all in one a=group:BUNDLE. Starling runs one ICE and DTLS transport per
// connection (docs/PROTOCOL.md: "Bundle is always on"); it answered such an
// offer as if bundled, and the client's transports for the other sections
// never connected (aiortc: the audio of a WHIP offer published, the video
// never did, the connection stuck "connecting").
var ErrNoBundle = errors.New("bundle is required")

// ErrDuplicateRID: a media section declares the same rid twice (RFC 8851
// makes them unique in a section). Such an offer was answered with the rid
// twice, and the track had two layers of one encoding.
var ErrDuplicateRID = errors.New("a rid is declared twice")

// Refused reports whether err is ParseOffer's refusal of an offer that
// parses but that Starling cannot answer (as opposed to one it cannot read).
func Refused(err error) bool {
	return errors.Is(err, ErrNoRTCPMux) || errors.Is(err, ErrNoBundle) || errors.Is(err, ErrDuplicateRID)
}

// ParseOffer lists the media sections of an offer that send a track. It
// rejects SDP that does not parse, so the client gets a clear error before
// pion sees it.
func ParseOffer(raw string) ([]OfferedTrack, error) {
	var s sdp.SessionDescription
	if err := s.UnmarshalString(raw); err != nil {
		return nil, err
	}
	if len(s.MediaDescriptions) > 64 {
		return nil, errors.New("too many media sections (max 64)")
	}
	if err := checkBundle(&s); err != nil {
		return nil, err
	}
	var out []OfferedTrack
	for _, md := range s.MediaDescriptions {
		kind := md.MediaName.Media
		if kind != "audio" && kind != "video" {
			continue
		}
		if md.MediaName.Port.Value == 0 {
			// Port 0 is a stopped section, unless it is bundle-only: with
			// max-bundle, Firefox offers every section but the first that way.
			if _, bundleOnly := md.Attribute("bundle-only"); !bundleOnly {
				continue
			}
		}
		if _, mux := md.Attribute("rtcp-mux"); !mux && md.MediaName.Port.Value != 0 {
			mid, _ := md.Attribute("mid")
			return nil, fmt.Errorf("%w: the %s section (mid %q) has no a=rtcp-mux", ErrNoRTCPMux, kind, mid)
		}
		t := OfferedTrack{Kind: kind}
		sending := true
		fromSSRC := false // TrackID came from an a=ssrc line, not a=msid
		for _, a := range md.Attributes {
			switch a.Key {
			case "mid":
				t.MID = a.Value
			case "msid":
				if f := strings.Fields(a.Value); len(f) == 2 {
					t.StreamID, t.TrackID, fromSSRC = f[0], f[1], false
				} else if len(f) == 1 {
					t.TrackID, fromSSRC = f[0], false
				}
			case "ssrc":
				// The older form, "a=ssrc:<ssrc> msid:<stream> <track>",
				// is all GStreamer's webrtcbin writes; a media-level
				// a=msid, where both are present, wins.
				if t.TrackID == "" || fromSSRC {
					if v, ok := strings.CutPrefix(afterSSRC(a.Value), "msid:"); ok {
						if f := strings.Fields(v); len(f) == 2 {
							t.StreamID, t.TrackID, fromSSRC = f[0], f[1], true
						}
					}
				}
			case "rid":
				if f := strings.Fields(a.Value); len(f) >= 2 && f[1] == "send" {
					if slices.Contains(t.RIDs, f[0]) {
						return nil, fmt.Errorf("%w: rid %q in the %s section (mid %q)", ErrDuplicateRID, f[0], kind, midOf(md))
					}
					t.RIDs = append(t.RIDs, f[0])
				}
			case "recvonly", "inactive":
				sending = false
			}
		}
		if sending && t.TrackID != "" {
			out = append(out, t)
		}
	}
	return out, nil
}

// afterSSRC drops the leading "<ssrc> " of an a=ssrc value.
func afterSSRC(v string) string {
	if i := strings.IndexByte(v, ' '); i >= 0 {
		return strings.TrimSpace(v[i+1:])
	}
	return ""
}

// withoutRTCPCandidates removes the component-2 (RTCP) candidates pion
// writes into a local description next to each component-1 one. rtcp-mux
// is required (RTCP shares the RTP transport), so they only cost bytes and
// suggest to a client that a second transport exists.
func withoutRTCPCandidates(sdp string) string {
	if !strings.Contains(sdp, "a=candidate:") {
		return sdp
	}
	var b strings.Builder
	b.Grow(len(sdp))
	for rest := sdp; rest != ""; {
		line := rest
		if i := strings.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i+1], rest[i+1:]
		} else {
			rest = ""
		}
		if c, ok := strings.CutPrefix(line, "a=candidate:"); ok {
			if f := strings.Fields(c); len(f) > 1 && f[1] == "2" {
				continue
			}
		}
		b.WriteString(line)
	}
	return b.String()
}

// checkBundle returns ErrNoBundle unless every media section in use (not
// port 0, or bundle-only) is in the same a=group:BUNDLE; an offer with one
// such section needs no group.
func checkBundle(s *sdp.SessionDescription) error {
	var inUse []*sdp.MediaDescription
	for _, md := range s.MediaDescriptions {
		_, bundleOnly := md.Attribute("bundle-only")
		if md.MediaName.Port.Value != 0 || bundleOnly {
			inUse = append(inUse, md)
		}
	}
	if len(inUse) < 2 {
		return nil
	}
	var groups [][]string
	for _, a := range s.Attributes {
		if f := strings.Fields(a.Value); a.Key == "group" && len(f) > 0 && f[0] == "BUNDLE" {
			groups = append(groups, f[1:])
		}
	}
	var group []string // the group of the first section in use
	for _, md := range inUse {
		mid, _ := md.Attribute("mid")
		if mid == "" {
			continue // refused elsewhere: an offer needs a=mid (remotecheck.go)
		}
		if group == nil {
			for _, g := range groups {
				if slices.Contains(g, mid) {
					group = g
				}
			}
		}
		if group == nil || !slices.Contains(group, mid) {
			what := "is in no a=group:BUNDLE"
			if group != nil {
				what = "is not in the a=group:BUNDLE of the others"
			}
			return fmt.Errorf("%w: the %s section (mid %q) %s: offer every section in one bundle group (RTCPeerConnection's bundlePolicy \"max-bundle\" or \"balanced\")",
				ErrNoBundle, md.MediaName.Media, mid, what)
		}
	}
	return nil
}

// midOf is a media section's mid ("" without one).
func midOf(md *sdp.MediaDescription) string {
	mid, _ := md.Attribute("mid")
	return mid
}

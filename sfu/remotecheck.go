package sfu

import (
	"errors"
	"fmt"
	"strings"

	"github.com/pion/ice/v4"
	"github.com/pion/sdp/v3"
)

// checkRemote refuses a remote description (a client's offer or answer)
// that pion would take only in part. pion's SetRemoteDescription moves the
// signaling state first and only then reads the ICE credentials, the
// candidates and (of an offer) the mids; a description failing there left
// the connection stuck: a publisher connection in have-remote-offer refused
// every later offer ("invalid proposed signaling state transition"), and a
// subscriber connection counted the bad answer as applied, so the good one
// that followed was refused and the participant was dropped at the
// negotiation timeout. Refused here, nothing changes and the client may send
// a good one. The checks follow pion's (webrtc/v4 sdp.go extractICEDetails).
//
// An answer (sections >= 0: the offer's number of media sections) must also
// answer each section of the offer: pion took an answer without media
// sections, and the connection never came up.
func checkRemote(text string, offer bool, sections int) error {
	var d sdp.SessionDescription
	if err := d.UnmarshalString(text); err != nil {
		return nil // pion refuses it before changing anything
	}
	if sections >= 0 && len(d.MediaDescriptions) != sections {
		return fmt.Errorf("the answer has %d media sections, the offer %d: answer each section of the offer", len(d.MediaDescriptions), sections)
	}
	if offer {
		for i, m := range d.MediaDescriptions {
			if mid, _ := m.Attribute("mid"); mid == "" {
				return fmt.Errorf("the %s section (m-line %d) has no a=mid", m.MediaName.Media, i)
			}
		}
	}
	// A BUNDLE group naming a mid no section has leaves pion without the
	// section it reads the transport from: say so rather than what it lacks.
	lost := error(nil)
	if b := bundleID(&d); b != "" && candidateSection(&d) == nil {
		lost = fmt.Errorf("the BUNDLE group names mid %q, which no media section has", b)
	}
	if f := fingerprintOf(&d); f == "" {
		if lost != nil {
			return lost
		}
		return errors.New("no a=fingerprint")
	} else if len(strings.Split(f, " ")) != 2 {
		return fmt.Errorf("a=fingerprint:%s is not \"<hash> <value>\"", f)
	}
	ufrag, _ := d.Attribute("ice-ufrag")
	pwd, _ := d.Attribute("ice-pwd")
	if m := candidateSection(&d); m != nil {
		if ufrag == "" {
			ufrag, _ = m.Attribute("ice-ufrag")
			pwd, _ = m.Attribute("ice-pwd")
		}
		good, bad := 0, error(nil)
		for _, a := range m.Attributes {
			if !a.IsICECandidate() {
				continue
			}
			_, err := ice.UnmarshalCandidate(a.Value)
			switch {
			case err == nil:
				good++
			case errors.Is(err, ice.ErrUnknownCandidateTyp), errors.Is(err, ice.ErrDetermineNetworkType):
				// pion skips these
			default:
				bad = err
			}
		}
		if good == 0 && bad != nil {
			return fmt.Errorf("bad a=candidate: %w", bad)
		}
	}
	if ufrag == "" && lost != nil {
		return lost
	}
	if ufrag == "" {
		return errors.New("no a=ice-ufrag")
	}
	if pwd == "" {
		return errors.New("no a=ice-pwd")
	}
	return nil
}

// candidateSection is the media section pion reads ICE details from: the
// first BUNDLE group's first mid, else the first section.
func candidateSection(d *sdp.SessionDescription) *sdp.MediaDescription {
	bundle := bundleID(d)
	for _, m := range d.MediaDescriptions {
		mid, _ := m.Attribute("mid")
		if bundle == "" || mid == bundle {
			return m
		}
	}
	return nil
}

// bundleID is the first mid of the BUNDLE group, "" without one.
func bundleID(d *sdp.SessionDescription) string {
	if g, ok := d.Attribute("group"); ok {
		if f := strings.Fields(g); len(f) > 1 && f[0] == "BUNDLE" {
			return f[1]
		}
	}
	return ""
}

// fingerprintOf is the DTLS fingerprint pion reads: the session's, else
// that of the BUNDLE group's first section, else the first section's that
// has one.
func fingerprintOf(d *sdp.SessionDescription) string {
	if f, ok := d.Attribute("fingerprint"); ok && f != "" {
		return f
	}
	bundle := bundleID(d)
	for _, m := range d.MediaDescriptions {
		if mid, _ := m.Attribute("mid"); bundle != "" && mid != bundle {
			continue
		}
		if f, ok := m.Attribute("fingerprint"); ok && f != "" {
			return f
		}
	}
	return ""
}

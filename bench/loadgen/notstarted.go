package loadgen

import (
	"fmt"
	"strings"
)

// maxNotStarted bounds the streams listed by name in a summary.
const maxNotStarted = 20

// notStarted names the (receiver, track) pairs that got no packet by the
// end of the window, with what the receiver's side knew of the track: to
// tell a track the server never offered, one the client negotiated but got
// nothing for (the server never sent, or pion dropped it: "Incoming
// unhandled RTP ssrc" in the log with -v), and a subscriber connection
// that never came up. Issue 18 asked why a viewer's video never started.
func (r *runner) notStarted(b snapshot) (list []string, total int) {
	sent := map[string][]*sender{} // room → its forwarded tracks
	owner := map[*sender]*participant{}
	for _, p := range r.parts {
		if p.c == nil {
			continue
		}
		for _, sd := range p.senders {
			if !sd.muted && sd.serverID != "" {
				sent[p.room] = append(sent[p.room], sd)
				owner[sd] = p
			}
		}
	}
	for _, p := range r.parts {
		if p.c == nil || !p.receive {
			continue
		}
		got := map[string]bool{}
		mixing := false
		for _, st := range p.streamList() {
			if b.streams[st].packets > 0 {
				got[st.trackID] = true
				mixing = mixing || st.mix
			}
		}
		if r.cfg.Mix && !mixing {
			// With the mix, the receiver's audio is one stream: the mix.
			total++
			if len(list) < maxNotStarted {
				list = append(list, p.name+": the audio mix")
			}
		}
		for _, sd := range sent[p.room] {
			if owner[sd] == p || got[sd.serverID] || (r.cfg.Mix && !sd.video) {
				continue
			}
			total++
			if len(list) < maxNotStarted {
				list = append(list, fmt.Sprintf("%s: %s %s (%s)", p.name, kindName(sd.video), sd.serverID, subscriberState(p, sd.serverID)))
			}
		}
	}
	return list, total
}

func kindName(video bool) string {
	if video {
		return "video"
	}
	return "audio"
}

// subscriberState describes the receiver's subscriber connection and
// whether its remote description (the server's last offer) has the track.
func subscriberState(p *participant, trackID string) string {
	pc := p.c.Subscriber()
	if pc == nil {
		return "no subscriber connection"
	}
	offered := "not in the server's last offer"
	if d := pc.RemoteDescription(); d == nil {
		offered = "no offer applied"
	} else if strings.Contains(d.SDP, " "+trackID+"\r\n") || strings.Contains(d.SDP, " "+trackID+"\n") {
		offered = "offered"
	}
	return fmt.Sprintf("%s; connection %s, signaling %s", offered, pc.ConnectionState(), pc.SignalingState())
}

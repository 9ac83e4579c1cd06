package protocol

import "strings"

// RoomName is the name a room is known by, from the name a client gave:
// white space around it dropped (`" standup "` is `standup`). Every place
// that takes a room name from outside (join, a token's grants.room, the
// admin API's, the recording routes' and WHIP/WHEP's {room} path) goes
// through it, so one room is not two names that compare unequal: a token
// for "standup " refused the join of "standup" that the join's trimming
// had made of it.
func RoomName(s string) string { return strings.TrimSpace(s) }

package room

// Participant returns a participant of the room by id, or nil.
func (r *Room) Participant(id string) *Participant {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.participants[id]
}

// Package signaling serves Starling's JSON-RPC 2.0 signaling protocol over
// WebSocket (docs/PROTOCOL.md, "Transport" and "Errors").
//
// The package is split in two layers. The transport (this package's Conn,
// NewHandler and DecodeParams) owns the socket: framing, JSON-RPC envelope
// validation, pings, timeouts, back-pressure and orderly close. Everything a
// method means is delegated to a Dispatcher, one per socket, which the room
// logic implements. Keeping the two apart lets the transport be tested with a
// fake Dispatcher and lets the room logic ignore WebSocket details.
//
// Each Conn runs exactly two goroutines: a reader, which parses frames and
// calls the Dispatcher in order, and a writer, which is the only goroutine
// writing data frames. Everything sent (responses and notifications) goes
// through one bounded queue, so a slow peer can never block the room: when
// the queue is full the connection is dropped instead.
package signaling

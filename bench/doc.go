// Package bench holds end-to-end benchmarks that run a Starling node and the
// load generator in one process, for CPU and heap profiles:
//
//	go test -run xxx -bench Fanout -benchtime 1x -cpuprofile /tmp/cpu.out ./bench/ [-args -subscribers 50 -congestion-control=false]
//	go tool pprof -tagfocus side=server -top /tmp/cpu.out
//
// With -args -preset meeting -publishers 10 -record, the room is a meeting
// (simulcast unless -simulcast off; -codec h264 for H.264) and is recorded while it runs (starling-load --record), to see what the
// recorder costs the server: go tool pprof -tagfocus side=server -focus recorder.
//
// The server's goroutines carry the pprof label side=server and the load
// generator's side=generator (goroutines inherit labels from the goroutine
// that starts them), so one profile splits into the two sides. For CPU% and
// µs per forwarded packet of the server alone, run cmd/starling-load against
// a separate starling process instead (docs/benchmarks.md).
package bench

#!/usr/bin/env bash
# Recording under load, for docs/benchmarks.md: a meeting (every publisher
# sends VP8 + Opus and receives the others, plus a few viewers) through a
# separate starling process on loopback, without and with a room recording
# of the meeting, alternating so that machine noise hits both alike.
#
#   bench/record.sh [OUTDIR]        (default /tmp/starling-record-bench)
#
# Modes, run in this order each round: "norec" (no recording), "rec" (the
# recording starts after the joins and stops after the measured window),
# and, with STOP_AFTER set, "recstop" (the recording is stopped STOP_AFTER
# into the run, inside the window, so finalising the files is measured).
#
# Environment: PUBLISHERS (10), SUBSCRIBERS (3 extra viewers), VIDEO_BITRATE
# (500k), DURATION (30s), WARMUP (5s), ROUNDS (2), STOP_AFTER (20s; empty =
# no recstop runs), SERVER_ARGS (default "--congestion-control=false"),
# SERVER_BIN (a prebuilt server; default: build ./cmd/starling into OUTDIR),
# IDLE (20: wait until the machine is under this % of one core before each
# run), IDLE_WAIT (600: give up waiting after this many seconds; the "other"
# column then shows the noise).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/starling-record-bench}
pubs=${PUBLISHERS:-10} subs=${SUBSCRIBERS:-3} vbr=${VIDEO_BITRATE:-500k}
duration=${DURATION:-30s} warmup=${WARMUP:-5s} rounds=${ROUNDS:-2}
stop_after=${STOP_AFTER-20s} idle=${IDLE:-20} idle_wait=${IDLE_WAIT:-600}
server_args=${SERVER_ARGS---congestion-control=false}
mkdir -p "$out"
bin=${SERVER_BIN:-}
if [ -z "$bin" ]; then
	go build -o "$out/starling" ./cmd/starling
	bin="$out/starling"
fi
go build -o "$out/starling-load" ./cmd/starling-load
extra=()
for a in $server_args; do extra+=("--server-arg=$a"); done

. bench/lib.sh # busy_pct (the cd above made the repository root the working directory)

modes=(norec rec)
[ -n "$stop_after" ] && modes+=(recstop)
for round in $(seq 1 "$rounds"); do
	for mode in "${modes[@]}"; do
		for _ in $(seq 1 $((idle_wait / 3))); do
			[ "$(busy_pct)" -lt "$idle" ] && break
		done
		rec=()
		case $mode in
		rec) rec=(--record) ;;
		recstop) rec=(--record --record-stop-after "$stop_after") ;;
		esac
		name="$mode-$round"
		"$out/starling-load" --preset meeting --publishers "$pubs" --subscribers "$subs" --video-bitrate "$vbr" \
			--duration "$duration" --warmup "$warmup" --join-concurrency 8 ${rec[@]+"${rec[@]}"} \
			--start-server --server-bin "$bin" ${extra[@]+"${extra[@]}"} --json "$out/$name.json" \
			>"$out/$name.txt" 2>"$out/$name.log" || echo "$name: exit status $?"
		echo "$name done"
	done
done

echo
echo "| run | delay p50 / p95 / p99 / max (ms) | loss | server CPU | server RSS | µs/fwd pkt | generator CPU | other | recorded |"
echo "|---|---|---|---|---|---|---|---|---|"
for round in $(seq 1 "$rounds"); do
	for mode in "${modes[@]}"; do
		f="$out/$mode-$round.json"
		[ -s "$f" ] || continue
		jq -r --arg n "$mode-$round" '"| \($n) | \(.delayMs.p50*100|round/100) / \(.delayMs.p95*100|round/100) / \(.delayMs.p99*10|round/10) / \(.delayMs.max|round) | \(.loss.percent*1000|round/1000)% | \(.server.cpuPercent*10|round/10)% | \(.server.rssMB|round) MB | \(.server.usPerForwardedPacket*10|round/10) | \(.generator.cpuPercent*10|round/10)% | \(.machine.otherPercent*10|round/10)% | \(if .recordings then (.recordings | map("\(.status), \(.files) files, \(.bytes/1e5|round/10) MB, \(.videoFrames) video frames, \(.droppedPackets) dropped, stop \(.stopMs/1000*10|round/10) s") | join("; ")) else "-" end) |"' "$f"
	done
done

#!/usr/bin/env bash
# Webinar fan-out figures for docs/benchmarks.md: one publisher (VP8 2.5
# Mbit/s + Opus) to N subscribers through a separate starling process on
# loopback, server CPU and RSS from /proc.
#
#   bench/webinar.sh [OUTDIR] [SUBSCRIBERS...]     (default: /tmp/starling-bench 50 100 150)
#
# Environment: DURATION (30s), WARMUP (5s), ATTEMPTS (3), MAX_OTHER (15: a
# run where other processes used more than this % of one core is repeated,
# keeping the quietest attempt), IDLE (20: wait until the machine is under
# this % before each attempt), IDLE_WAIT (600: give up waiting after this
# many seconds and run anyway; the summary's "machine" row shows the noise),
# SERVER_ARGS (extra server flags, e.g. "--congestion-control=false"), TAG
# (file name suffix for the results).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/starling-bench}
shift || true
subs=("$@")
[ ${#subs[@]} -gt 0 ] || subs=(50 100 150)
duration=${DURATION:-30s} warmup=${WARMUP:-5s} attempts=${ATTEMPTS:-3}
max_other=${MAX_OTHER:-15} idle=${IDLE:-20} idle_wait=${IDLE_WAIT:-600}
tag=${TAG:-}
extra=()
for a in ${SERVER_ARGS:-}; do extra+=("--server-arg=$a"); done
mkdir -p "$out"
go build -o "$out/starling" ./cmd/starling
go build -o "$out/starling-load" ./cmd/starling-load

. bench/lib.sh # busy_pct (the cd above made the repository root the working directory)

for n in "${subs[@]}"; do
	best=""
	for attempt in $(seq 1 "$attempts"); do
		for _ in $(seq 1 $((idle_wait / 3))); do
			[ "$(busy_pct)" -lt "$idle" ] && break
		done
		name="webinar$tag-$n"
		json="$out/$name-$attempt.json"
		"$out/starling-load" --preset webinar --subscribers "$n" --duration "$duration" --warmup "$warmup" \
			--join-concurrency 8 --start-server --server-bin "$out/starling" ${extra[@]+"${extra[@]}"} --quiet --json "$json" \
			>"$out/$name-$attempt.txt" 2>"$out/$name-$attempt.log" || true
		other=$(sed -n 's/.*"otherPercent": \([0-9.]*\).*/\1/p' "$json" 2>/dev/null | cut -d. -f1)
		echo "$name attempt=$attempt other=${other:-?}%"
		if [ -z "$best" ] || [ "${other:-999}" -lt "$best_other" ]; then
			best=$attempt best_other=${other:-999}
		fi
		[ "${other:-999}" -le "$max_other" ] && break
	done
	cp "$out/$name-$best.json" "$out/$name.json"
	cp "$out/$name-$best.txt" "$out/$name.txt"
	cat "$out/$name.txt"
done

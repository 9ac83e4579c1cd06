#!/usr/bin/env bash
# Webinar over a three-node cluster on loopback (separate processes; the
# publisher on node a, viewers round-robin over a, b, c), then the same
# viewers on one plain node: server CPU per forwarded packet, summed over
# the nodes, against one node (docs/cluster.md "Figures").
#
#   bench/cluster-webinar.sh [OUTDIR] [SUBSCRIBERS]   (default: /tmp/starling-cluster-bench 100)
#
# Environment: DURATION (20s), WARMUP (5s); PROFILE=SECONDS also takes a CPU
# profile of every node (--pprof) for that long, starting PROFILE_AFTER (15s)
# after the nodes are up: OUTDIR/{a,b,c,single}-N.pprof (go tool pprof -top);
# STARLING_BIN=PATH runs that server binary instead of building this tree's
# (before/after comparisons in the same hour).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/starling-cluster-bench}
n=${2:-100}
duration=${DURATION:-20s} warmup=${WARMUP:-5s}
profile=${PROFILE:-} pafter=${PROFILE_AFTER:-15}
pprof=()
[ -z "$profile" ] || pprof=(--pprof)
mkdir -p "$out"
if [ -n "${STARLING_BIN:-}" ]; then cp "$STARLING_BIN" "$out/starling"; else go build -o "$out/starling" ./cmd/starling; fi
go build -o "$out/starling-load" ./cmd/starling-load
cd "$out"
export STARLING_CLUSTER_SECRET="bench-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
pids=()
cleanup() { [ ${#pids[@]} -eq 0 ] || kill "${pids[@]}" 2>/dev/null || true; }
trap cleanup EXIT
node() { # id, port base, routes
	./starling --node-id "$1" --bind "127.0.0.1:${2}0" --udp-port "${2}1" --tcp-port "${2}2" --media-bind-ip 127.0.0.1 \
		--cluster-listen "127.0.0.1:${2}5" --cluster-relay-addr "127.0.0.1:${2}6" --cluster-routes "$3" \
		--log-level error "${pprof[@]}" >/dev/null 2>"$1.log" &
	pids+=($!)
}
healthy() { for _ in $(seq 1 200); do curl -sf "http://127.0.0.1:$1/healthz" >/dev/null && return; sleep 0.3; done; echo "node on $1 did not start" >&2; exit 1; }
node a 1790 nats://127.0.0.1:17915,nats://127.0.0.1:17925
node b 1791 nats://127.0.0.1:17905,nats://127.0.0.1:17925
node c 1792 nats://127.0.0.1:17905,nats://127.0.0.1:17915
healthy 17900; healthy 17910; healthy 17920
profiles() { # name:port ...
	[ -n "$profile" ] || return 0
	sleep "$pafter"
	for np in "$@"; do curl -s "http://127.0.0.1:${np#*:}/debug/pprof/profile?seconds=$profile" >"${np%%:*}-$n.pprof" & done
	wait
}
profiles a:17900 b:17910 c:17920 &
./starling-load --preset webinar --subscribers "$n" --duration "$duration" --warmup "$warmup" --quiet \
	--url ws://127.0.0.1:17900/v1/rtc,ws://127.0.0.1:17910/v1/rtc,ws://127.0.0.1:17920/v1/rtc \
	--server-pid "$(IFS=,; echo "${pids[*]}")" --json "cluster-$n.json" | tee "cluster-$n.txt" || true
curl -s http://127.0.0.1:17900/metrics | grep '^starling_cluster' > "cluster-$n-metrics.txt" || true
cleanup; wait || true; pids=()
./starling --bind 127.0.0.1:17900 --udp-port 17901 --tcp-port 17902 --media-bind-ip 127.0.0.1 --log-level error "${pprof[@]}" >/dev/null 2>single.log &
pids+=($!)
healthy 17900
profiles single:17900 &
./starling-load --preset webinar --subscribers "$n" --duration "$duration" --warmup "$warmup" --quiet \
	--url ws://127.0.0.1:17900/v1/rtc --server-pid "${pids[0]}" --json "single-$n.json" | tee "single-$n.txt" || true

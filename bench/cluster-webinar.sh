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
# (before/after comparisons in the same hour). STATS=SECONDS counts, per node,
# over that many seconds from PROFILE_AFTER: CPU, context switches (all
# threads), datagrams and sendmmsg calls, starting STATS_AFTER (8s) after the
# nodes are up: OUTDIR/{cluster,single}-N-stats.txt, each also per datagram
# sent (media to viewers, plus RTCP and, on a, the relay's).
# PINNED=1 adds, between the two, three plain nodes (no cluster) each with
# a room of its own, its publisher and a third of the viewers (starling-load
# --rooms 3 --pin-rooms): the same load per node without the relay
# (OUTDIR/pinned-N*). CLUSTER_ENV, PINNED_ENV and SINGLE_ENV ("VAR=value
# ...") are set for those servers only (GOMAXPROCS=1, say).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/starling-cluster-bench}
n=${2:-100}
duration=${DURATION:-20s} warmup=${WARMUP:-5s}
profile=${PROFILE:-} pafter=${PROFILE_AFTER:-15} stats=${STATS:-} safter=${STATS_AFTER:-8}
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
	env ${CLUSTER_ENV:-} ./starling --node-id "$1" --bind "127.0.0.1:${2}0" --udp-port "${2}1" --tcp-port "${2}2" --media-bind-ip 127.0.0.1 \
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
# snap name:pid:port ...: one line per node: name, CPU ticks, voluntary and
# involuntary context switches, datagrams sent, send calls.
snap() {
	for npp in "$@"; do
		IFS=: read -r name pid port <<<"$npp"
		m=$(curl -s "http://127.0.0.1:$port/metrics")
		g() { awk -v k="$1" 'index($0,k)==1{s+=$NF} END{printf "%d", s}' <<<"$m"; }
		echo "$name $(awk '{print $14+$15}' "/proc/$pid/stat") $(cat /proc/"$pid"/task/*/status 2>/dev/null |
			awk '/^voluntary_ctxt/{v+=$2} /^nonvoluntary_ctxt/{n+=$2} END{print v+0, n+0}') $(g starling_udp_datagrams_sent_total) $(g starling_udp_send_calls_total)"
	done
}
stats() { # file name:pid:port ...
	[ -n "$stats" ] || return 0
	local f=$1
	shift
	sleep "$safter"
	snap "$@" >"$f.0"
	sleep "$stats"
	snap "$@" >"$f.1"
	paste "$f.0" "$f.1" | awk -v hz="$(getconf CLK_TCK)" '
		{ cpu=($8-$2)/hz; cs=($9-$3)+($10-$4); dg=$11-$5; calls=$12-$6
		  printf "%-7s cpu %.2fs  switches %d (voluntary %d)  datagrams %d  sendmmsg %d  per datagram: %.2f us, %.3f switches, %.3f calls\n", \
			$1, cpu, cs, $9-$3, dg, calls, dg ? cpu*1e6/dg : 0, dg ? cs/dg : 0, dg ? calls/dg : 0
		  tc+=cpu; ts+=cs; tk+=calls; td+=dg }
		END { if (NR > 1) printf "total   cpu %.2fs  switches %d  datagrams %d  sendmmsg %d  per datagram: %.2f us, %.3f switches, %.3f calls\n", tc, ts, td, tk, td ? tc*1e6/td : 0, td ? ts/td : 0, td ? tk/td : 0 }' >"$f"
	rm -f "$f.0" "$f.1"
}
profiles a:17900 b:17910 c:17920 &
stats "cluster-$n-stats.txt" "a:${pids[0]}:17900" "b:${pids[1]}:17910" "c:${pids[2]}:17920" &
./starling-load --preset webinar --subscribers "$n" --duration "$duration" --warmup "$warmup" --quiet \
	--url ws://127.0.0.1:17900/v1/rtc,ws://127.0.0.1:17910/v1/rtc,ws://127.0.0.1:17920/v1/rtc \
	--server-pid "$(IFS=,; echo "${pids[*]}")" --json "cluster-$n.json" | tee "cluster-$n.txt" || true
curl -s http://127.0.0.1:17900/metrics | grep '^starling_cluster' > "cluster-$n-metrics.txt" || true
cleanup; wait || true; pids=()
if [ -n "${PINNED:-}" ]; then
	for i in 0 1 2; do
		env ${PINNED_ENV:-} ./starling --bind "127.0.0.1:179${i}0" --udp-port "179${i}1" --tcp-port "179${i}2" --media-bind-ip 127.0.0.1 \
			--log-level error "${pprof[@]}" >/dev/null 2>"pinned-$i.log" &
		pids+=($!)
	done
	healthy 17900; healthy 17910; healthy 17920
	profiles pa:17900 pb:17910 pc:17920 &
	stats "pinned-$n-stats.txt" "pa:${pids[0]}:17900" "pb:${pids[1]}:17910" "pc:${pids[2]}:17920" &
	./starling-load --preset webinar --rooms 3 --pin-rooms --subscribers "$((n / 3))" --duration "$duration" --warmup "$warmup" --quiet \
		--url ws://127.0.0.1:17900/v1/rtc,ws://127.0.0.1:17910/v1/rtc,ws://127.0.0.1:17920/v1/rtc \
		--server-pid "$(IFS=,; echo "${pids[*]}")" --json "pinned-$n.json" | tee "pinned-$n.txt" || true
	cleanup; wait || true; pids=()
fi
env ${SINGLE_ENV:-} ./starling --bind 127.0.0.1:17900 --udp-port 17901 --tcp-port 17902 --media-bind-ip 127.0.0.1 --log-level error "${pprof[@]}" >/dev/null 2>single.log &
pids+=($!)
healthy 17900
profiles single:17900 &
stats "single-$n-stats.txt" "single:${pids[0]}:17900" &
statspid=$!
./starling-load --preset webinar --subscribers "$n" --duration "$duration" --warmup "$warmup" --quiet \
	--url ws://127.0.0.1:17900/v1/rtc --server-pid "${pids[0]}" --json "single-$n.json" | tee "single-$n.txt" || true
wait "$statspid" || true
[ -z "$stats" ] || cat "cluster-$n-stats.txt" ${PINNED:+"pinned-$n-stats.txt"} "single-$n-stats.txt"

#!/usr/bin/env bash
# Load runs against a freshly started ktd: wrk with bench/kt.lua for HTTP
# RPC and REST, and ktload for the binary protocol. Every figure is the
# median of RUNS runs. Loopback only.
#
#   scripts/load.sh                 # all runs
#   RUNS=3 DURATION=10s scripts/load.sh
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
DURATION=${DURATION:-10s}
PORT=${PORT:-19780}
KEYS=${KEYS:-100000}
BIN=./bin
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT

command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }

start_ktd() { # db args...
	"$BIN/ktd" -host 127.0.0.1 -port "$PORT" -lz "$@" &
	KTD_PID=$!
	for _ in $(seq 100); do
		if (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null; then return; fi
		sleep 0.05
	done
	echo "ktd did not start" >&2; exit 1
}
stop_ktd() { kill "$KTD_PID"; wait "$KTD_PID" 2>/dev/null || true; }

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

cpu_ticks() { awk '{print $14+$15}' "/proc/$KTD_PID/stat"; }

# wrk_void: the same-session baseline, /rpc/void (no database work).
wrk_void() {
	local rps=()
	for _ in $(seq "$RUNS"); do
		rps+=("$(wrk -t2 -c32 -d"$DURATION" -s bench/void.lua "http://127.0.0.1:$PORT" | awk '/Requests\/sec/ {print $2}')")
	done
	printf '%-22s %10s req/s   (baseline)\n' "void" "$(printf '%s\n' "${rps[@]}" | median)"
}

# wrk_run OP ENC: prints "req/s p99 cpu-us/req" medians over RUNS runs.
wrk_run() {
	local op=$1 enc=$2 rps=() p99=() cpu=()
	for _ in $(seq "$RUNS"); do
		local t0 out t1 r
		t0=$(cpu_ticks)
		out=$(wrk -t2 -c32 -d"$DURATION" --latency -s bench/kt.lua "http://127.0.0.1:$PORT" -- "$op" "$enc" "$KEYS" 100)
		t1=$(cpu_ticks)
		r=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
		local total; total=$(awk '/requests in/ {print $1}' <<<"$out")
		rps+=("$r")
		p99+=("$(awk '$1=="99%" {print $2}' <<<"$out")")
		cpu+=("$(awk -v d=$((t1 - t0)) -v n="$total" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.1f", d/hz*1e6/n}')")
	done
	printf '%-22s %10s req/s   p99 %-8s  server CPU %s us/req\n' "$op/$enc" \
		"$(printf '%s\n' "${rps[@]}" | median)" "$(printf '%s\n' "${p99[@]}" | sort -V | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')" \
		"$(printf '%s\n' "${cpu[@]}" | median)"
}

bin_run() { # op
	local vals=()
	for _ in $(seq "$RUNS"); do
		vals+=("$("$BIN/ktload" -addr "127.0.0.1:$PORT" -op "$1" -c 4 -batch 100 -keys "$KEYS" -d "$DURATION" | awk '{for (i=1;i<=NF;i++) if ($(i)=="records/s,") print $(i-1)}')")
	done
	printf '%-22s %10s records/s\n' "binary $1_bulk" "$(printf '%s\n' "${vals[@]}" | median)"
}

for db in '*' "$WORK/casket.kct"; do
	echo "== database $db (median of $RUNS runs of $DURATION, wrk -t2 -c32)"
	start_ktd "$db"
	"$BIN/ktload" -addr "127.0.0.1:$PORT" -preload "$KEYS" -vsize 100
	wrk_void
	wrk_run get tsv
	wrk_run set tsv
	wrk_run get form
	wrk_run set form
	wrk_run rest_get tsv
	wrk_run rest_put tsv
	bin_run set
	bin_run get
	echo "server RSS: $(awk '/VmRSS/ {print $2, $3}' /proc/$KTD_PID/status)"
	stop_ktd
done

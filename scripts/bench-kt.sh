#!/usr/bin/env bash
# bench-kt: the loads the real Kyoto Tycoon 0.9.56 was measured with on this
# kind of machine (see "Performance" in the README), run against ktd, printed
# as one table beside KT's recorded figures, with ratios.
#
#   scripts/bench-kt.sh                  # on-memory, file DB, replica (about 4 minutes)
#   BIG=1 scripts/bench-kt.sh            # also 2 M keys on a file DB
#   RUNS=3 DURATION=8s ONLY="machine mem file repl big" scripts/bench-kt.sh
#   PROCS=8 scripts/bench-kt.sh          # on-memory get/set again at GOMAXPROCS=8
#                                        # (PROCS=0: not at all)
#
# Each figure is the median of RUNS runs; wrk -t2 -c32 with bench/kt.lua over
# 100 000 keys of 100 bytes (as KT's figures); the binary bulk load is KT's
# own `ktremotetest bulk -th 4 -bin -bulk 100 -set` (400 000 records, value =
# key) replayed by `ktload -ktbulk`; server CPU is read from /proc. GET
# /rpc/void is run first as the same-session transport baseline.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
DURATION=${DURATION:-8s}
PORT=${PORT:-19790}
KEYS=${KEYS:-100000}
BIGKEYS=${BIGKEYS:-2000000}
MEMKEYS=${MEMKEYS:-1000000}
ONLY=${ONLY:-machine mem file repl}
PROCS=${PROCS:-8}
[ "${BIG:-0}" = 1 ] && ONLY="$ONLY big"
BIN=./bin
KTD=${KTD:-$BIN/ktd}
WORK=$(mktemp -d)
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT

command -v wrk >/dev/null || { echo "bench-kt: wrk is missing: apt-get install -y wrk" >&2; exit 1; }
HZ=$(getconf CLK_TCK)
ROWS=()

start_ktd() { # port args...: starts ktd, sets KPID
	local port=$1; shift
	${GOMAXPROCS_KTD:+env GOMAXPROCS=$GOMAXPROCS_KTD} "$KTD" -host 127.0.0.1 -port "$port" -lz "$@" >>"$WORK/ktd.log" 2>&1 &
	KPID=$!
	PIDS+=("$KPID")
	for _ in $(seq 200); do
		if curl -sf "http://127.0.0.1:$port/rpc/void" >/dev/null 2>&1; then return; fi
		sleep 0.05
	done
	echo "bench-kt: ktd did not start" >&2; cat "$WORK/ktd.log" >&2; exit 1
}
stop_ktd() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
rss_mib() { awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }
ms() { # wrk latency (e.g. 812.00us, 3.21ms, 1.02s) in ms
	awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000}; printf "%.2f", v}'
}
row() { ROWS+=("$(printf '%s|%s|%s|%s' "$1" "$2" "$3" "$4")"); }

# wrk_load PID PORT CONNS SCRIPT [SCRIPT-ARGS...]: sets RPS, P99 (ms), CPU (us/request): medians of RUNS.
wrk_load() {
	local pid=$1 port=$2 conns=$3 script=$4; shift 4
	local rps=() p99=() cpu=()
	for _ in $(seq "$RUNS"); do
		local t0 t1 out total
		t0=$(cpu_ticks "$pid")
		out=$(wrk -t2 -c"$conns" -d"$DURATION" --latency -s "$script" "http://127.0.0.1:$port" -- "$@" 2>&1)
		t1=$(cpu_ticks "$pid")
		total=$(awk '/requests in/ {print $1}' <<<"$out")
		rps+=("$(awk '/Requests\/sec/ {printf "%.0f", $2}' <<<"$out")")
		p99+=("$(awk '$1=="99%" {print $2}' <<<"$out" | ms)")
		cpu+=("$(awk -v d=$((t1 - t0)) -v n="$total" -v hz="$HZ" 'BEGIN {printf "%.1f", d/hz*1e6/n}')")
	done
	RPS=$(printf '%s\n' "${rps[@]}" | median)
	P99=$(printf '%s\n' "${p99[@]}" | median)
	CPU=$(printf '%s\n' "${cpu[@]}" | median)
}

# kt_bulk PORT: KT's ktremotetest bulk -th 4 -bin -bulk 100 -set, after a clear; sets BULK (records/s).
kt_bulk() {
	local port=$1 vals=()
	for _ in $(seq "$RUNS"); do
		curl -sf "http://127.0.0.1:$port/rpc/clear" >/dev/null
		vals+=("$("$BIN/ktload" -addr "127.0.0.1:$port" -c 4 -batch 100 -ktbulk 100000 | awk '{printf "%.0f", $(NF-1)}')")
	done
	BULK=$(printf '%s\n' "${vals[@]}" | median)
}

# ratio A B: A/B with two decimals.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }
k() { awk -v a="$1" 'BEGIN {printf "%.1f k", a/1000}'; }

on_mem() {
	echo "== on-memory '*' (medians of $RUNS runs of $DURATION)" >&2
	start_ktd "$PORT" '*'; local pid=$KPID
	"$BIN/ktload" -addr "127.0.0.1:$PORT" -preload "$KEYS" -vsize 100
	wrk_load "$pid" "$PORT" 32 bench/void.lua
	row "void baseline on '*' (req/s, p99, CPU)" "$(k "$RPS"), ${P99} ms, ${CPU} µs" "—" "transport only"
	wrk_load "$pid" "$PORT" 32 bench/kt.lua get tsv "$KEYS" 100
	row "RPC get on '*'" "$(k "$RPS"), p99 ${P99} ms, ${CPU} µs" "34–44 k, p99 3.4–3.7 ms, 23–28 µs" "$(ratio "$RPS" 39000)× mid, $(ratio "$RPS" 44000)× best"
	wrk_load "$pid" "$PORT" 32 bench/kt.lua set tsv "$KEYS" 100
	row "RPC set on '*'" "$(k "$RPS"), p99 ${P99} ms, ${CPU} µs" "39–43 k, p99 2.7–4.4 ms, 24–26 µs" "$(ratio "$RPS" 41000)× mid, $(ratio "$RPS" 43000)× best"
	kt_bulk "$PORT"
	row "binary bulk set on '*' (rec/s)" "$(k "$BULK")" "580–680 k" "$(ratio "$BULK" 630000)× mid, $(ratio "$BULK" 680000)× best"
	echo "   RSS $(awk '/VmRSS/ {print $2, $3}' /proc/$pid/status)" >&2
	stop_ktd "$pid"
	# Memory at 1 M keys (the goal: under 300 MiB): after the load, then under random sets.
	start_ktd "$PORT" '*'; pid=$KPID
	"$BIN/ktload" -addr "127.0.0.1:$PORT" -preload "$MEMKEYS" -vsize 100
	local loaded; loaded=$(rss_mib "$pid")
	wrk -t2 -c32 -d"$DURATION" -s bench/kt.lua "http://127.0.0.1:$PORT" -- set tsv "$MEMKEYS" 100 >/dev/null 2>&1
	row "RSS, $((MEMKEYS / 1000000)) M keys × 100 B on '*'" "${loaded} MiB after the load, $(rss_mib "$pid") MiB after $DURATION of sets" "—" "goal < 300 MiB"
	stop_ktd "$pid"
	[ "$PROCS" -gt 0 ] || return 0
	# KT's figures are at its best thread count here (-th 4; its default, 16, is
	# slower); ktd's counterpart is GOMAXPROCS. With the load generator on the
	# same two cores, more server threads than cores shortens the tail.
	echo "== on-memory '*' at GOMAXPROCS=$PROCS" >&2
	GOMAXPROCS_KTD=$PROCS start_ktd "$PORT" '*'; pid=$KPID
	"$BIN/ktload" -addr "127.0.0.1:$PORT" -preload "$KEYS" -vsize 100
	wrk_load "$pid" "$PORT" 32 bench/kt.lua get tsv "$KEYS" 100
	row "RPC get on '*', GOMAXPROCS=$PROCS" "$(k "$RPS"), p99 ${P99} ms, ${CPU} µs" "34–44 k, p99 3.4–3.7 ms, 23–28 µs" "$(ratio "$RPS" 39000)× mid, $(ratio "$RPS" 44000)× best"
	wrk_load "$pid" "$PORT" 32 bench/kt.lua set tsv "$KEYS" 100
	row "RPC set on '*', GOMAXPROCS=$PROCS" "$(k "$RPS"), p99 ${P99} ms, ${CPU} µs" "39–43 k, p99 2.7–4.4 ms, 24–26 µs" "$(ratio "$RPS" 41000)× mid, $(ratio "$RPS" 43000)× best"
	stop_ktd "$pid"
}

# on_machine: how fast the machine is today, by a program measured on the day of KT's
# figures: Redis 7.0.15 (Debian's redis-server), redis-benchmark -c 32 -d 100 get and set,
# 43–58 k / 49–56 k req/s at ~15 µs of server CPU per operation then. Its CPU per operation
# today over 15 µs says how much slower (above 1) or faster the machine runs than on the
# day the KT figures were recorded; the ratios above are not adjusted by it.
on_machine() {
	if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null || ! command -v redis-cli >/dev/null; then
		echo "== machine: redis-server is missing (apt-get install -y redis-server): no calibration row" >&2
		return 0
	fi
	echo "== machine: Redis get/set, the same session (medians of $RUNS runs)" >&2
	local port=$((PORT + 7)) get=() set=() cpu=()
	redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize no >"$WORK/redis.log" 2>&1 &
	local pid=$!
	PIDS+=("$pid")
	for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
	for _ in $(seq "$RUNS"); do
		local t0 t1 out
		t0=$(cpu_ticks "$pid")
		out=$(redis-benchmark -p "$port" -c 32 -d 100 -r "$KEYS" -n 400000 -t set,get --csv 2>/dev/null)
		t1=$(cpu_ticks "$pid")
		set+=("$(awk -F'"' '$2=="SET" {printf "%.0f", $4}' <<<"$out")")
		get+=("$(awk -F'"' '$2=="GET" {printf "%.0f", $4}' <<<"$out")")
		cpu+=("$(awk -v d=$((t1 - t0)) -v hz="$HZ" 'BEGIN {printf "%.1f", d/hz*1e6/800000}')")
	done
	stop_ktd "$pid"
	local g s c
	g=$(printf '%s\n' "${get[@]}" | median)
	s=$(printf '%s\n' "${set[@]}" | median)
	c=$(printf '%s\n' "${cpu[@]}" | median)
	row "machine: Redis 7.0.15 get / set, CPU per op" "$(k "$g") / $(k "$s"), ${c} µs" "43–58 k / 49–56 k, ~15 µs (KT's first day)" "$(ratio "$c" 15)× that day's cost per op"
}

on_file() {
	echo "== file database, synced (medians of $RUNS runs of $DURATION)" >&2
	start_ktd "$PORT" "$WORK/file.kct"; local pid=$KPID
	"$BIN/ktload" -addr "127.0.0.1:$PORT" -preload "$KEYS" -vsize 100
	wrk_load "$pid" "$PORT" 32 bench/kt.lua get tsv "$KEYS" 100
	row "RPC get, file DB" "$(k "$RPS"), p99 ${P99} ms, ${CPU} µs" ".kch 34–48 k, p99 1.9–4.6 ms" "$(ratio "$RPS" 41000)× mid"
	wrk_load "$pid" "$PORT" 32 bench/kt.lua set tsv "$KEYS" 100
	row "RPC set, file DB, synced" "$(k "$RPS"), p99 ${P99} ms, ${CPU} µs" ".kch unsynced 31–47 k, p99 2.3–58 ms" "$(ratio "$RPS" 39000)× mid"
	kt_bulk "$PORT"
	row "binary bulk set, file DB, synced" "$(k "$BULK")" ".kch unsynced 450–480 k" "$(ratio "$BULK" 465000)× mid"
	stop_ktd "$pid"
}

on_repl() {
	echo "== replica CPU per applied write (file DBs with update logs; wrk set -c16 on the master for $DURATION)" >&2
	local mport=$PORT sport=$((PORT + 1)) vals=()
	for r in $(seq "$RUNS"); do
		mkdir -p "$WORK/repl$r"
		local m s t0 t1 out total
		start_ktd "$mport" -ulog "$WORK/repl$r/ulog" -sid 1 "$WORK/repl$r/m.kct"; m=$KPID
		start_ktd "$sport" -sid 2 ${REPLICA_ULOG:+-ulog "$WORK/repl$r/sulog"} -mhost 127.0.0.1 -mport "$mport" -rts "$WORK/repl$r/s.rts" "$WORK/repl$r/s.kct"; s=$KPID
		"$BIN/ktload" -addr "127.0.0.1:$mport" -preload 10000 -vsize 100
		# wait for the replica to hold the preload, then measure from a quiet start
		for _ in $(seq 400); do
			[ "$(curl -s "http://127.0.0.1:$sport/rpc/status" | awk -F'\t' '$1=="count" {print $2}')" = 10000 ] && break
			sleep 0.05
		done
		t0=$(cpu_ticks "$s")
		out=$(wrk -t2 -c16 -d"$DURATION" -s bench/kt.lua "http://127.0.0.1:$mport" -- set tsv 1000000 100 2>&1)
		total=$(awk '/requests in/ {print $1}' <<<"$out")
		# caught up: the replica's position equals the master's last timestamp
		local want; want=$(curl -s "http://127.0.0.1:$mport/rpc/ulog_list" | awk -F'\t' 'NR==1 {split($2,a,":"); print a[2]}')
		for _ in $(seq 600); do
			[ "$(curl -s "http://127.0.0.1:$sport/rpc/report" | awk -F'\t' '$1=="repl_timestamp" {print $2}')" -ge "$want" ] 2>/dev/null && break
			sleep 0.05
		done
		t1=$(cpu_ticks "$s")
		vals+=("$(awk -v d=$((t1 - t0)) -v n="$total" -v hz="$HZ" 'BEGIN {printf "%.1f", d/hz*1e6/n}')")
		stop_ktd "$s"; stop_ktd "$m"
	done
	local v; v=$(printf '%s\n' "${vals[@]}" | median)
	row "replica CPU per applied write" "${v} µs" "KT slave 2.7 µs" "$(ratio "$v" 2.7)× KT's cost"
}

on_big() {
	echo "== $BIGKEYS keys × 100 B, file DB, synced" >&2
	start_ktd "$PORT" "$WORK/big.kct"; local pid=$KPID
	"$BIN/ktload" -addr "127.0.0.1:$PORT" -preload "$BIGKEYS" -vsize 100
	wrk_load "$pid" "$PORT" 32 bench/kt.lua get tsv "$BIGKEYS" 100
	row "RPC get, $((BIGKEYS / 1000000)) M keys, file DB" "$(k "$RPS"), p99 ${P99} ms" ".kch 33 k, p99 5.6–5.9 ms" "$(ratio "$RPS" 33000)×"
	wrk_load "$pid" "$PORT" 32 bench/kt.lua set tsv "$BIGKEYS" 100
	row "RPC set, $((BIGKEYS / 1000000)) M keys, file DB, synced" "$(k "$RPS"), p99 ${P99} ms" ".kch unsynced 26 k, p99 5.6–5.9 ms" "$(ratio "$RPS" 26000)×"
	echo "   RSS $(awk '/VmRSS/ {print $2, $3}' /proc/$pid/status), disk $(du -sh "$WORK/big.kct" | cut -f1)" >&2
	stop_ktd "$pid"
}

for part in $ONLY; do
	case $part in
	machine) on_machine ;;
	mem) on_mem ;;
	file) on_file ;;
	repl) on_repl ;;
	big) on_big ;;
	*) echo "bench-kt: unknown part $part" >&2; exit 2 ;;
	esac
done

echo
echo "| load | ktd ($(date +%F)) | real KT 0.9.56 -th 4 (recorded) | ratio |"
echo "|---|---|---|---|"
for r in "${ROWS[@]}"; do
	IFS='|' read -r a b c d <<<"$r"
	echo "| $a | $b | $c | $d |"
done

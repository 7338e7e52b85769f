#!/usr/bin/env bash
# Replication measurements against real ktd processes on file databases
# (loopback only): master -> replica lag at RATE writes/s (3 runs), catch-up
# of a replica that missed N updates, bootstrap of a new replica from a
# snapshot, and the master's durable set rate with 10 replication streams
# attached versus none (wrk with bench/kt.lua).
#
#   scripts/repl-load.sh            # RATE=2000 N=1000000
set -euo pipefail
cd "$(dirname "$0")/.."

RATE=${RATE:-2000}
N=${N:-1000000}
BASE=${BASE:-19900}
BIN=./bin
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; for f in "$WORK"/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT

M=127.0.0.1:$((BASE + 1))
waitport() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return; sleep 0.05; done; echo "port $1 did not open" >&2; exit 1; }

"$BIN/ktd" -port $((BASE + 1)) -lz -ulog "$WORK/ulog" -sid 1 "$WORK/master.kct" & echo $! > "$WORK/m.pid"
waitport $((BASE + 1))
"$BIN/ktd" -port $((BASE + 2)) -lz -sid 2 -mhost 127.0.0.1 -mport $((BASE + 1)) -rts "$WORK/s.rts" "$WORK/s.kct" & echo $! > "$WORK/s.pid"
waitport $((BASE + 2))

echo "== lag at $RATE writes/s (3 runs of 10 s)"
for _ in 1 2 3; do "$BIN/ktrepl" lag -master "$M" -slave 127.0.0.1:$((BASE + 2)) -rate "$RATE" -c 16 -d 10s | tail -1; done

echo "== catch-up of a replica that missed $N updates"
"$BIN/ktrepl" catchup -master "$M" -slave 127.0.0.1:$((BASE + 3)) -n "$N" \
	-start "$BIN/ktd -port $((BASE + 3)) -lz -sid 3 -mhost 127.0.0.1 -mport $((BASE + 1)) -rts $WORK/c.rts $WORK/c.kct & echo \$! > $WORK/c.pid" | tail -1
kill "$(cat "$WORK/c.pid")"

echo "== bootstrap of a new replica from a snapshot"
"$BIN/ktrepl" catchup -master "$M" -slave 127.0.0.1:$((BASE + 4)) -n 1000 \
	-start "$BIN/ktd -port $((BASE + 4)) -lz -sid 4 -bootstrap -mhost 127.0.0.1 -mport $((BASE + 1)) -rts $WORK/b.rts $WORK/b.kct & echo \$! > $WORK/b.pid" | tail -1
kill "$(cat "$WORK/b.pid")" "$(cat "$WORK/s.pid")"

command -v wrk >/dev/null || { echo "wrk is missing (apt-get install -y wrk): skipping the overhead run"; exit 0; }
setrate() { wrk -t2 -c32 -d8s -s bench/kt.lua "http://$M" -- set tsv 100000 100 | awk '/Requests\/sec/ {print $2}'; }
echo "== master durable set rate, no replication streams (3 runs)"
for _ in 1 2 3; do setrate; done
echo "== the same with 10 replication streams attached (ktrepl sinks)"
"$BIN/ktrepl" sinks -master "$M" -n 10 -d 30s > "$WORK/sinks.out" &
sleep 1
for _ in 1 2 3; do setrate; done
wait %% 2>/dev/null || true
cat "$WORK/sinks.out"

#!/usr/bin/env bash
# compose demo: the rules pipeline in containers (docker-compose.yml). Brings it
# up, runs demo.sql in PostgreSQL (kt_fdw writes into the master), then checks
# that the master holds exactly PostgreSQL's committed rules and that every PoP
# replica equals the master (ktd verify), and tears everything down. Exit 0 on
# success. Needs the images (make images) and docker-compose (Debian's
# docker-compose package, installed here when run as root).
set -euo pipefail
cd "$(dirname "$0")"
KTD=${KTD:-../../bin/ktd}
PROJECT=ktddemo
export MASTER_PORT=${MASTER_PORT:-11978} POP1_PORT=${POP1_PORT:-11981} POP2_PORT=${POP2_PORT:-11982} POP3_PORT=${POP3_PORT:-11983} PG_PORT=${PG_PORT:-15432}
if ! command -v docker-compose >/dev/null 2>&1; then
	if [ "$(id -u)" != 0 ]; then
		echo "compose-demo: needs docker-compose (as root: apt-get install -y docker-compose)" >&2
		exit 1
	fi
	echo "compose-demo: installing docker-compose" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y docker-compose >/dev/null
fi
compose() { docker-compose -p "$PROJECT" -f docker-compose.yml "$@"; }
trap 'status=$?; [ $status = 0 ] || compose logs --tail=30 >&2 || true; compose down -v >/dev/null 2>&1 || true; exit $status' EXIT

start=$(date +%s)
compose up -d >/dev/null
wait_for() { # what, command...
	local what=$1; shift
	for _ in $(seq 1 120); do
		if "$@" >/dev/null 2>&1; then return 0; fi
		sleep 0.5
	done
	echo "compose-demo: $what did not come up" >&2
	return 1
}
for p in $MASTER_PORT $POP1_PORT $POP2_PORT $POP3_PORT; do
	wait_for "ktd on $p" "$KTD" health "127.0.0.1:$p"
done
wait_for "PostgreSQL" compose exec -T postgres pg_isready -h 127.0.0.1 -U postgres

compose exec -T postgres psql -q -v ON_ERROR_STOP=1 -U postgres <demo.sql
want=$(compose exec -T postgres psql -tA -U postgres -c "SELECT count(*) FROM rules")
echo "compose-demo: PostgreSQL committed $want rules"

# The master holds PostgreSQL's rules, value for value.
pg_rules=$(compose exec -T postgres psql -tA -F $'\t' -U postgres -c "SELECT id, value FROM rules ORDER BY id")
kt_rules=$(compose exec -T postgres psql -tA -F $'\t' -U postgres -c "SELECT key, value FROM kt_rules ORDER BY key")
if [ "$pg_rules" != "$kt_rules" ]; then
	echo "compose-demo: the master differs from PostgreSQL's rules" >&2
	diff <(echo "$pg_rules") <(echo "$kt_rules") | head >&2
	exit 1
fi
# Every PoP equals the master (re-checked while replication catches up).
for p in $POP1_PORT $POP2_PORT $POP3_PORT; do
	"$KTD" verify -retry 20 -wait 250ms "127.0.0.1:$MASTER_PORT" "127.0.0.1:$p"
done
echo "compose-demo: PASS: PostgreSQL -> kt_fdw -> master -> 3 PoPs, $want rules everywhere, in $(( $(date +%s) - start )) s"

#!/bin/sh
# The PostgreSQL image's entry point: a cluster in $PGDATA (created on first
# start, trusting every connection: a test image), then the server in the
# foreground with the arguments given.
set -e
PGBIN=/usr/lib/postgresql/15/bin
if [ ! -s "$PGDATA/PG_VERSION" ]; then
	"$PGBIN/initdb" -D "$PGDATA" -U postgres --auth=trust >/dev/null
	echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
	echo "host all all all trust" >>"$PGDATA/pg_hba.conf"
fi
exec "$PGBIN/postgres" -D "$PGDATA" "$@"

#!/usr/bin/env bash
# pgdeps: make sure what kt_fdw and its tests need is installed: the
# PostgreSQL 15 server binaries (postgresql-15) and its server headers and
# PGXS (postgresql-server-dev-15), and OpenSSL's headers for kt_fdw's TLS
# (libssl-dev). As root with apt-get it installs what is
# missing; otherwise it names the missing packages and fails.
#
# Each part is checked by a file of its own: pgxs.mk alone proves nothing,
# since postgresql-client-15 ships it without the server headers.
set -euo pipefail

# missing prints the packages whose files are absent, one per line.
missing() {
	if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
		echo postgresql-15
	fi
	local pgxs inc
	pgxs=$(pg_config --pgxs 2>/dev/null || true)
	inc=$(pg_config --includedir-server 2>/dev/null || true)
	if [ -z "$pgxs" ] || [ ! -f "$pgxs" ] || [ -z "$inc" ] || [ ! -f "$inc/postgres.h" ]; then
		echo postgresql-server-dev-15
	fi
	if [ ! -f /usr/include/openssl/ssl.h ]; then
		echo libssl-dev # kt_fdw's TLS (sslmode)
	fi
}

pkgs=$(missing | tr '\n' ' ')
pkgs=${pkgs% }
if [ -z "$pkgs" ]; then
	exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
	echo "pgdeps: installing $pkgs"
	export DEBIAN_FRONTEND=noninteractive
	# shellcheck disable=SC2086 # one word per package
	apt-get install -y $pkgs || { apt-get update && apt-get install -y $pkgs; }
	still=$(missing | tr '\n' ' ')
	if [ -n "$still" ]; then
		echo "pgdeps: still missing after apt-get install: ${still% } (postgres.h expected in $(pg_config --includedir-server 2>/dev/null || echo 'pg_config --includedir-server'))" >&2
		exit 1
	fi
	exit 0
fi
echo "pgdeps: kt_fdw needs PostgreSQL 15's server binaries and headers and OpenSSL's headers; missing: $pkgs (postgres.h: $(pg_config --includedir-server 2>/dev/null || echo 'no pg_config')/postgres.h). As root: apt-get install -y $pkgs" >&2
exit 1

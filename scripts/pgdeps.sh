#!/usr/bin/env bash
# pgdeps: make sure what kt_fdw and its tests need is installed: the
# PostgreSQL 15 server binaries and its server headers (PGXS). As root with
# apt-get it installs them; otherwise it says what to install.
set -euo pipefail

pgxs=$(pg_config --pgxs 2>/dev/null || true)
if [ -n "$pgxs" ] && [ -f "$pgxs" ] && ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
	exit 0
fi
pkgs="postgresql-15 postgresql-server-dev-15"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
	echo "pgdeps: installing $pkgs"
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y $pkgs || { apt-get update && apt-get install -y $pkgs; }
	exit 0
fi
echo "pgdeps: kt_fdw needs PostgreSQL's server binaries and headers: apt-get install -y $pkgs" >&2
exit 1

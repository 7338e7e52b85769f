#!/usr/bin/env bash
# fresh-test: the README's two set-up commands on a fresh Debian machine. A
# container of the debootstrapped Debian base (scripts/debian-base.sh: nothing
# but Debian's minbase) gets a clean clone of this repository's HEAD, Go 1.26
# (this machine's, mounted read-only: the README asks for Go 1.26) and what the
# README lists (make, gcc for the race detector, git); then `make run` is
# started, asked for a record and stopped, and `make test` runs to the end.
# PostgreSQL comes from make test itself (scripts/pgdeps.sh). There is no Docker
# engine inside, so the container tests skip, saying why. Exit status: make
# test's. Output: fresh-test.log beside the repository's bin/.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
goroot=$(go env GOROOT)

./scripts/docker-up.sh
./scripts/debian-base.sh
src=$(mktemp -d /var/tmp/ktd-fresh.XXXXXX)
trap 'rm -rf "$src"' EXIT
git clone -q --no-local "$repo" "$src/ktd"
mkdir -p bin
log=$repo/bin/fresh-test.log
start=$(date +%s)
set +e
# This machine's CA bundle goes in too: where a TLS-intercepting proxy stands
# between it and the Go module proxy, Go must trust what this machine trusts.
docker run --rm -v "$src/ktd:/src:ro" -v "$goroot:/usr/local/go:ro" \
	-v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/host-ca.crt:ro -e SSL_CERT_FILE=/etc/ssl/host-ca.crt \
	-e PATH=/usr/local/go/bin:/root/go/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	ktd-debian:bookworm bash -euo pipefail -c '
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq && apt-get install -y -qq make gcc libc6-dev git ca-certificates curl >/dev/null
		git clone -q /src /root/ktd && cd /root/ktd
		echo "== make run"
		make run >/tmp/run.log 2>&1 &
		for i in $(seq 1 1800); do
			curl -fs "http://127.0.0.1:1978/rpc/set?key=japan&value=tokyo" >/dev/null 2>&1 && break
			sleep 0.5
		done
		curl -fs "http://127.0.0.1:1978/rpc/get?key=japan" | grep -q tokyo || { tail -20 /tmp/run.log; exit 1; }
		kill %1; wait %1 || true
		pkill -f "bin/ktd -host 127.0.0.1 -port 1978" || true
		echo "make run: served a record from data/casket.kct"
		echo "== make test"
		make test
	' >"$log" 2>&1
status=$?
set -e
echo "fresh-test: exit $status after $(( $(date +%s) - start )) s; log: $log" >&2
tail -5 "$log" >&2
exit $status

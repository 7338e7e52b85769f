#!/usr/bin/env bash
# images: every container image the tests and the compose demo use, built
# locally (no registry is reachable) and only when missing: the ktd image
# (make image), the Debian base (scripts/debian-base.sh) and the kt_fdw
# PostgreSQL image, tagged with a hash of its inputs (fdwtest -image), so an
# unchanged source tree reuses it. Needs root the first time (docker.io,
# debootstrap).
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}

./scripts/docker-up.sh
make -s image
./scripts/debian-base.sh
pg=$($GO run ./cmd/fdwtest -image)
if ! docker image inspect "$pg" >/dev/null 2>&1; then
	echo "images: building $pg (a few minutes the first time)" >&2
	DOCKER_BUILDKIT=0 docker build -q -t "$pg" fdwbridge >/dev/null
fi
docker tag "$pg" ktd-kt-fdw-postgres:dev
echo "images: ktd:dev, ktd-debian:bookworm, $pg (ktd-kt-fdw-postgres:dev)" >&2

#!/usr/bin/env bash
# debian-base: the local Debian base image the PostgreSQL image builds on
# (ktd-debian:bookworm), made once with debootstrap from the Debian mirror apt
# already uses (no registry is needed) and imported with docker import. Does
# nothing when the image exists. Needs root (debootstrap) and a Docker engine.
set -euo pipefail
IMG=${DEBIAN_BASE_IMAGE:-ktd-debian:bookworm}

if docker image inspect "$IMG" >/dev/null 2>&1; then
	exit 0
fi
mirror=$(awk '/^URIs:/ && $2 ~ /\/debian\/?$/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}
if ! command -v debootstrap >/dev/null 2>&1; then
	echo "debian-base: installing debootstrap" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y debootstrap >/dev/null
fi
root=$(mktemp -d /var/tmp/ktd-rootfs.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "debian-base: debootstrap bookworm from $mirror (a few minutes)" >&2
debootstrap --variant=minbase bookworm "$root" "$mirror" >/dev/null
echo "deb $mirror bookworm main" >"$root/etc/apt/sources.list"
tar -C "$root" -c . | docker import - "$IMG" >/dev/null
echo "debian-base: imported $IMG" >&2

#!/usr/bin/env bash
# docker-up: make sure a Docker engine answers. Installs Debian's docker.io when
# run as root on a machine without one, and starts dockerd (its log in
# /var/log/dockerd.log) when none is running. Idempotent; exits non-zero, saying
# why, when no engine can be had.
set -euo pipefail

if docker info >/dev/null 2>&1; then
	exit 0
fi
if ! command -v dockerd >/dev/null 2>&1; then
	if [ "$(id -u)" != 0 ]; then
		echo "docker-up: no Docker engine; install docker.io (as root: apt-get install -y docker.io)" >&2
		exit 1
	fi
	echo "docker-up: installing docker.io" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y docker.io >/dev/null
fi
if ! pgrep -x dockerd >/dev/null 2>&1; then
	if [ "$(id -u)" != 0 ]; then
		echo "docker-up: dockerd is not running and only root can start it" >&2
		exit 1
	fi
	echo "docker-up: starting dockerd (log: /var/log/dockerd.log)" >&2
	nohup dockerd >>/var/log/dockerd.log 2>&1 &
fi
for _ in $(seq 1 60); do
	if docker info >/dev/null 2>&1; then
		exit 0
	fi
	sleep 1
done
echo "docker-up: dockerd did not answer within 60 s; see /var/log/dockerd.log" >&2
exit 1

#!/usr/bin/env bash
# Waits until each named service of infra/docker-compose.yml is healthy, for
# `make up`. Fails fast when a container has exited, and after WAIT_TIMEOUT
# seconds (default 300: the first start pulls images and builds the shop).
#
#   infra/wait-healthy.sh kafka1 kafka2 kafka3 schema-registry
set -euo pipefail

compose=(docker compose -f "$(dirname "$0")/docker-compose.yml")
timeout=${WAIT_TIMEOUT:-300}
deadline=$((SECONDS + timeout))

for svc in "$@"; do
	printf 'up: waiting for %s ...' "$svc"
	while :; do
		id=$("${compose[@]}" ps -a -q "$svc" 2>/dev/null | head -n 1 || true)
		status=missing
		if [[ -n $id ]]; then
			status=$(docker inspect -f '{{.State.Status}}/{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$id" 2>/dev/null || echo missing)
		fi
		case $status in
		running/healthy)
			echo " healthy"
			break
			;;
		running/none)
			echo " running (it has no health check)"
			break
			;;
		exited/* | dead/*)
			echo
			echo "up: $svc has stopped ($status); its last lines:" >&2
			"${compose[@]}" logs --tail=30 "$svc" >&2 || true
			exit 1
			;;
		esac
		if ((SECONDS >= deadline)); then
			echo
			echo "up: $svc is still $status after ${timeout}s; see: make logs S=$svc" >&2
			exit 1
		fi
		sleep 2
	done
done

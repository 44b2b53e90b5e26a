#!/usr/bin/env bash
# Installs the peers `npm run bench:gateway` measures against and its load generator, from Debian's
# packages: wrk (load), haproxy and nginx (proxies). Only the benchmark needs them; no test does.
# Idempotent: prints nothing and exits 0 when all three are on PATH.
#
#   bash scripts/install-bench-peers.sh        # needs root (or sudo) and apt-get
#
# Debian's haproxy and nginx packages would start system daemons (nginx on port 80) where an init
# system runs. The benchmark starts its own instances on loopback ports with its own configuration,
# so the install runs with service starts denied (policy-rc.d) and both services are stopped and
# disabled after: a stray daemon costs CPU on a shared machine.
set -euo pipefail

need=()
for bin in wrk haproxy nginx; do
  if ! command -v "$bin" >/dev/null 2>&1 && ! [ -x "/usr/sbin/$bin" ]; then need+=("$bin"); fi
done
if [ "${#need[@]}" -eq 0 ]; then
  exit 0
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
  else
    echo "install-bench-peers: need root (or sudo) to apt-get install ${need[*]}" >&2
    exit 1
  fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-bench-peers: no apt-get here; install ${need[*]} by other means (wrk 4, haproxy 2.x, nginx 1.2x on PATH)" >&2
  exit 1
fi

POLICY=/usr/sbin/policy-rc.d
ADDED_POLICY=0
if [ ! -e "$POLICY" ]; then
  printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$POLICY" >/dev/null
  "${SUDO[@]}" chmod 755 "$POLICY"
  ADDED_POLICY=1
fi
cleanup() { if [ "$ADDED_POLICY" = 1 ]; then "${SUDO[@]}" rm -f "$POLICY"; fi; }
trap cleanup EXIT

echo "install-bench-peers: apt-get install ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq >/dev/null
# nginx-light would do as well, but bookworm ships `nginx` (core modules only, enough here).
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null

for svc in haproxy nginx; do
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    "${SUDO[@]}" systemctl disable --now "$svc" >/dev/null 2>&1 || true
  elif command -v update-rc.d >/dev/null 2>&1; then
    "${SUDO[@]}" update-rc.d "$svc" disable >/dev/null 2>&1 || true
  fi
done

echo "install-bench-peers: $(wrk -v 2>&1 | head -n 1 || true); $(/usr/sbin/haproxy -v 2>&1 | head -n 1); $(/usr/sbin/nginx -v 2>&1)" >&2

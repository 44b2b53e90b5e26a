#!/usr/bin/env bash
# Installs etcd (server and etcdctl) from Debian's packages `etcd-server` and `etcd-client` (3.4 on
# bookworm), which the etcd test helper (test/support/etcd.ts) and `npm run bench:coordinator` start
# on loopback ports of their own. Idempotent: prints nothing and exits 0 when both are on PATH.
#
#   bash scripts/install-etcd.sh        # needs root (or sudo) and apt-get
#
# Debian's package would start a system etcd on 127.0.0.1:2379/2380 where an init system runs. Our
# tests never use those ports, but a stray daemon costs CPU and fsyncs on a shared machine, so the
# install runs with service starts denied (policy-rc.d) and the service is stopped and disabled after.
set -euo pipefail

if command -v etcd >/dev/null 2>&1 && command -v etcdctl >/dev/null 2>&1; then
  exit 0
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
  else
    echo "install-etcd: need root (or sudo) to apt-get install etcd-server etcd-client" >&2
    exit 1
  fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-etcd: no apt-get here; install etcd 3.4+ (etcd and etcdctl on PATH) by other means" >&2
  exit 1
fi

# Deny service starts during the install unless a policy already exists (Docker images ship one).
POLICY=/usr/sbin/policy-rc.d
ADDED_POLICY=0
if [ ! -e "$POLICY" ]; then
  printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$POLICY" >/dev/null
  "${SUDO[@]}" chmod 755 "$POLICY"
  ADDED_POLICY=1
fi
cleanup() { if [ "$ADDED_POLICY" = 1 ]; then "${SUDO[@]}" rm -f "$POLICY"; fi; }
trap cleanup EXIT

echo "install-etcd: apt-get install etcd-server etcd-client" >&2
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq >/dev/null
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends etcd-server etcd-client >/dev/null

# Where systemd runs, make sure the packaged daemon neither runs now nor starts at boot.
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  "${SUDO[@]}" systemctl disable --now etcd >/dev/null 2>&1 || true
elif command -v update-rc.d >/dev/null 2>&1; then
  "${SUDO[@]}" update-rc.d etcd disable >/dev/null 2>&1 || true
fi

echo "install-etcd: $(etcd --version | head -n 1), $(etcdctl version | head -n 1)" >&2

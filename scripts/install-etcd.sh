#!/usr/bin/env bash
# Installs etcd (server and etcdctl) from Debian's packages `etcd-server` and `etcd-client` (3.4 on
# bookworm), which the etcd test helper (test/support/etcd.ts) and `npm run bench:coordinator` start
# on loopback ports of their own. Idempotent: prints nothing and exits 0 when both are on PATH.
#
#   bash scripts/install-etcd.sh        # needs root (or sudo) and apt-get
#
# Debian's package would start a system etcd on 127.0.0.1:2379/2380 where an init system runs; the
# install denies it (scripts/lib/apt-install.sh).
set -euo pipefail

if command -v etcd >/dev/null 2>&1 && command -v etcdctl >/dev/null 2>&1; then
  exit 0
fi

# shellcheck source=lib/apt-install.sh
. "$(dirname "$0")/lib/apt-install.sh"
apt_install install-etcd etcd -- etcd-server etcd-client

echo "install-etcd: $(etcd --version | head -n 1), $(etcdctl version | head -n 1)" >&2

#!/usr/bin/env bash
# Installs the peers `npm run bench:gateway` measures against and its load generator, from Debian's
# packages: wrk (load), haproxy and nginx (proxies). Only the benchmark needs them; no test does.
# Idempotent: prints nothing and exits 0 when all three are on PATH.
#
#   bash scripts/install-bench-peers.sh        # needs root (or sudo) and apt-get
#
# Debian's haproxy and nginx packages would start system daemons (nginx on port 80) where an init
# system runs; the install denies them (scripts/lib/apt-install.sh). The benchmark starts its own
# instances on loopback ports with its own configuration.
set -euo pipefail

need=()
for bin in wrk haproxy nginx; do
  if ! command -v "$bin" >/dev/null 2>&1 && ! [ -x "/usr/sbin/$bin" ]; then need+=("$bin"); fi
done
if [ "${#need[@]}" -eq 0 ]; then
  exit 0
fi

# shellcheck source=lib/apt-install.sh
. "$(dirname "$0")/lib/apt-install.sh"
# nginx-light would do as well, but bookworm ships `nginx` (core modules only, enough here).
apt_install install-bench-peers haproxy nginx -- "${need[@]}"

echo "install-bench-peers: $(wrk -v 2>&1 | head -n 1 || true); $(/usr/sbin/haproxy -v 2>&1 | head -n 1); $(/usr/sbin/nginx -v 2>&1)" >&2

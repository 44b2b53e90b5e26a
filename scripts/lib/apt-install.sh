# Sourced by scripts/install-*.sh: `apt_install <who> <service>... -- <package>...` installs Debian
# packages with apt-get (as root, or through sudo) while service starts are denied (policy-rc.d), then
# stops and disables each named service: a package's own daemon (a system etcd, nginx on port 80) would
# cost CPU and fsyncs on a shared machine, and our tests and benchmarks start their own instances on
# loopback ports. Exits 1 with one line when there is no apt-get, or no root and no sudo.
apt_install() {
  local who=$1
  shift
  local services=()
  while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do
    services+=("$1")
    shift
  done
  shift
  local packages=("$@")

  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
      sudo=(sudo)
    else
      echo "$who: need root (or sudo) to apt-get install ${packages[*]}" >&2
      exit 1
    fi
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "$who: no apt-get here; install ${packages[*]} by other means" >&2
    exit 1
  fi

  # Deny service starts during the install unless a policy already exists (Docker images ship one).
  local policy=/usr/sbin/policy-rc.d added=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
    "${sudo[@]}" chmod 755 "$policy"
    added=1
  fi

  echo "$who: apt-get install ${packages[*]}" >&2
  local status=0
  {
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq >/dev/null &&
      "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
  } || status=$?
  if [ "$added" = 1 ]; then "${sudo[@]}" rm -f "$policy"; fi
  if [ "$status" -ne 0 ]; then
    echo "$who: apt-get install ${packages[*]} failed (exit $status)" >&2
    exit "$status"
  fi

  # Where systemd runs, make sure the packaged daemons neither run now nor start at boot.
  local svc
  for svc in "${services[@]}"; do
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
      "${sudo[@]}" systemctl disable --now "$svc" >/dev/null 2>&1 || true
    elif command -v update-rc.d >/dev/null 2>&1; then
      "${sudo[@]}" update-rc.d "$svc" disable >/dev/null 2>&1 || true
    fi
  done
}

#!/usr/bin/env bash
# Sets up a fresh Debian machine (root) for Ambit: Debian packages, npm packages, build.
# Idempotent: what is already there is not fetched again.
set -euo pipefail
cd "$(dirname "$0")/.."

# iproute2/iptables: the data plane and the local multi-host cluster (network namespaces);
# containernetworking-plugins: the reference bridge + host-local CNI plugins (/usr/lib/cni) ambit-cni chains after;
# iperf3, wrk: the L4 data plane benchmark (bench/dataplane-l4.ts).
DEB_PACKAGES=(iproute2 iptables containernetworking-plugins tcpdump iperf3 wrk)
missing=()
for p in "${DEB_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then echo "setup: need root to install ${missing[*]} (apt-get)" >&2; exit 1; fi
  echo "setup: installing Debian packages: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm ci only when the lockfile changed since the last install (it rebuilds the native SQLite binding).
stamp=node_modules/.ambit-lock-sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" > "$stamp"
fi

# The native addon is built by npm ci; rebuild it when its source is newer than the binary.
[ lib/native/build/Release/ambit_native.node -nt lib/native/src/ambit_native.cc ] || npm run --silent install

echo "setup: build"
npm run --silent build

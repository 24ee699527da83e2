#!/usr/bin/env bash
# Sets up only what the demo runs (scripts/setup.sh demo: Prometheus, Alertmanager and a small .venv-demo with
# the exporter), then runs a demo inference server under load, the exporter pricing it on embedded defaults,
# Prometheus with the project's rules, Alertmanager with the project's config and a webhook sink that prints
# the pages. Ctrl-C stops them all.
# Usage: bash scripts/demo.sh [options]     (bash scripts/demo.sh --help lists the options)
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
  -h|--help)
    sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"
    # The options come from the demo itself; its parser needs nothing beyond the standard library.
    if command -v python3 >/dev/null; then echo; exec python3 -m demo --help; fi
    exit 0 ;;
esac
bash scripts/setup.sh demo
exec .venv-demo/bin/python -m demo "$@"

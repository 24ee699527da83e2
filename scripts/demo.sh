#!/usr/bin/env bash
# Sets everything up, then runs a demo inference server under load and the
# exporter pricing it on embedded defaults. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m demo.stack "$@"

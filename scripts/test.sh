#!/usr/bin/env bash
# Sets everything up, then runs the linter and every test (unit and end-to-end with real binaries).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check exporter tests bench grafana k8s docs
.venv/bin/python -m pytest -q "$@"

#!/usr/bin/env bash
# Runs every benchmark and prints the figures (about 25 minutes; the restart runs take most).
# Runs every benchmark and prints the figures (about 3 minutes, plus a few for bench_rules).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m bench.bench_render
.venv/bin/python -m bench.bench_ingest
.venv/bin/python -m bench.bench_bill
.venv/bin/python -m bench.bench_time_to_page
.venv/bin/python -m bench.bench_footprint "$@"
.venv/bin/python -m bench.bench_footprint --with-server "$@"
.venv/bin/python -m bench.bench_footprint --storage "$@"
.venv/bin/python -m bench.bench_footprint --with-server --storage "$@"
.venv/bin/python -m bench.bench_restarts --kills 50
.venv/bin/python -m bench.bench_restarts --kills 50 --no-storage
.venv/bin/python -m bench.bench_hostile
.venv/bin/python -m bench.bench_report
.venv/bin/python -m bench.bench_rules

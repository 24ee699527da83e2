#!/usr/bin/env bash
# Sets up what the benchmarks need (scripts/setup.sh test), then runs every benchmark and prints the figures
# (about 25 minutes; the restart runs take most). `make bench` runs this.
# Usage: bash bench/run.sh [bench_footprint options]
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  -h|--help) sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
esac
bash scripts/setup.sh test
.venv/bin/python -m bench.bench_render
.venv/bin/python -m bench.bench_ingest
.venv/bin/python -m bench.bench_bill
.venv/bin/python -m bench.bench_instrument
.venv/bin/python -m bench.bench_reload_race
.venv/bin/python -m bench.bench_stalled_gateway
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

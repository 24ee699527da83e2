#!/usr/bin/env bash
# Installs what the vmalert tier needs (`make tier-vmalert` runs this first): VictoriaMetrics' single-node
# server and vmalert, from Debian's victoria-metrics package. Quiet and quick when it is installed.
set -euo pipefail
case "${1:-}" in
  -h|--help) sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
esac
if command -v vmalert >/dev/null && command -v victoria-metrics >/dev/null; then
  exit 0
fi
sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "setup: installing Debian package victoria-metrics"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends victoria-metrics >/dev/null

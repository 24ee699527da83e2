#!/usr/bin/env bash
# Installs the real inference servers that tests/upstream/ starts, each in its own virtual environment
# under .venv-upstream/<server> (gitignored), at pinned versions. Safe to run again: a server whose
# environment already holds exactly its pinned packages is left alone.
#   bash scripts/upstream-setup.sh              # every server
#   bash scripts/upstream-setup.sh bentoml      # only some
set -euo pipefail
cd "$(dirname "$0")/.."

declare -A requirements=(
  [fastapi]="prometheus-fastapi-instrumentator==8.1.0 fastapi==0.165.0 uvicorn==0.55.0"
  [bentoml]="bentoml==1.4.40"
  [litellm]="litellm[proxy]==1.108.7 prometheus_client==0.26.0"
  [kserve]="kserve==0.21.0"
  # torch is the CPU build; TorchServe's worker imports it (and PyYAML, which it does not declare).
  [torchserve]="torchserve==0.12.0 torch-model-archiver==0.12.0 torch==2.13.0+cpu pyyaml==6.0.4"
)

servers=("$@")
if ((${#servers[@]} == 0)); then
  servers=(fastapi bentoml litellm kserve torchserve)
fi
python=$(command -v python3.11 || command -v python3)
for server in "${servers[@]}"; do
  wanted=${requirements[$server]:-}
  if [ -z "$wanted" ]; then
    echo "upstream-setup: unknown server \"$server\" (known: ${!requirements[*]})" >&2
    exit 2
  fi
  if [ "$server" = torchserve ] && ! command -v java >/dev/null; then
    # TorchServe's frontend is Java: the one system package the tier needs.
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "upstream-setup: installing default-jdk-headless"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends default-jdk-headless >/dev/null
  fi
  venv=".venv-upstream/$server"
  if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/installed" 2>/dev/null)" = "$wanted" ]; then
    continue
  fi
  echo "upstream-setup: installing $wanted into $venv"
  rm -rf "$venv"
  "$python" -m venv "$venv"
  # shellcheck disable=SC2086  # the requirement list is split on purpose
  if ! "$venv/bin/python" -m pip install -q --disable-pip-version-check $wanted >"$venv/pip.log" 2>&1; then
    cat "$venv/pip.log" >&2
    echo "upstream-setup: installing $server failed" >&2
    exit 1
  fi
  echo "$wanted" >"$venv/installed"
done

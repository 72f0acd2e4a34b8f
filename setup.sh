#!/usr/bin/env bash
# One-shot installer: creates .venv and installs forecast-console with the model packages.
#   ./setup.sh          runtime only
#   ./setup.sh --dev    + test tools and reference libraries
#   ./setup.sh --ray    + the Ray extra (can be combined with --dev)
# toto-ts 0.2.0 pins torch==2.7.0/numpy 1.26 in its metadata, so it goes in with --no-deps after
# everything else; its runtime deps are pinned in pyproject.toml. torch is pinned first so pip
# never resolves a multi-GB CUDA build on a CPU machine.
set -euo pipefail
cd "$(dirname "$0")"
extras=()
for arg in "$@"; do
  case "$arg" in
    --dev) extras+=(dev) ;;
    --ray) extras+=(ray) ;;
    *) echo "setup.sh: unknown option $arg (use --dev, --ray)" >&2; exit 2 ;;
  esac
done
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
python -m pip install -q "pip>=24"
python -m pip install -q torch==2.13.0
spec="."
if [ ${#extras[@]} -gt 0 ]; then spec=".[$(IFS=,; echo "${extras[*]}")]"; fi
python -m pip install -q -e "$spec"
python -m pip install -q --no-deps toto-ts==0.2.0
echo "setup.sh: installed into $(pwd)/.venv (extras: ${extras[*]:-none})"

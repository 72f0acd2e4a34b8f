#!/usr/bin/env bash
# GPU check (see bench/gpu_check.py): prints one table on a CUDA machine, "no CUDA device" elsewhere.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${PYTHON:-$here/.venv/bin/python}"
[ -x "$py" ] || py="$(command -v python3)"
exec "$py" "$here/bench/gpu_check.py" "$@"

#!/usr/bin/env bash
# GPU check (see compute/bench/gpu.py): bash compute/bench/gpu.sh [--smoke | --prepare | options]
# Python: $SRLM_PYTHON, else the first of python3 / python that imports torch, else python3.
# Results go to $OUT (gpu-check.json, gpu-check.md, logs/); nothing is installed or downloaded.
set -u
cd "$(dirname "$0")/../.." || exit 1
PY="${SRLM_PYTHON:-}"
if [ -z "$PY" ]; then
  for cand in python3 python; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import torch' >/dev/null 2>&1; then PY="$cand"; break; fi
  done
fi
PY="${PY:-python3}"
export PYTHONPATH="compute${PYTHONPATH:+:$PYTHONPATH}"
export OUT="${OUT:-$PWD/gpu-check-out}"
echo "gpu-check: python $(command -v "$PY" || echo "$PY"), OUT=$OUT" >&2
exec "$PY" compute/bench/gpu.py "$@"

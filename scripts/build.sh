#!/usr/bin/env bash
# Compiles the CLI and workers into dist/ (tsconfig.build.json) when a source is newer than the
# last build; bin/srlm runs dist/ when it is fresh. Quiet and quick when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
stamp=dist/.build-stamp
if [ -f "$stamp" ] && [ -z "$(find cli core store backends inputs activities workflows workers infra tsconfig.json tsconfig.build.json -newer "$stamp" \( -name '*.ts' -o -name 'tsconfig*.json' \) -print -quit)" ]; then
  exit 0
fi
echo "build: compiling into dist/ (tsc -p tsconfig.build.json)" >&2
mkdir -p dist
# stamped with the time the compile started, so a source saved during it counts as newer
touch dist/.build-started
node_modules/.bin/tsc -p tsconfig.build.json
mv dist/.build-started "$stamp"

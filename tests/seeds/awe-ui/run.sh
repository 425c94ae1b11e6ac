#!/usr/bin/env bash
# Build awe_queue's Vue developer tool from the seed sources (npm run build) and click through
# it in Debian's headless Chromium (playwright-core) against a sluice of its own.
#   tests/seeds/awe-ui/run.sh SEED_SOURCES_DIR      (after scripts/seed-test-deps)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
export SLUICE_SEED_SOURCES="$1"
source "$repo/scripts/lib/test-server.sh"
start_test_server awe-ui
export AWE_BASE="$endpoint" AWE_OUT="$tmp/dist"
(cd "$here" && npm run --silent build)
cd "$here"
status=0
SLUICE_UI_ARTIFACTS="${SLUICE_UI_ARTIFACTS:-$repo/target/test-output/seeds}" node --test --test-concurrency=1 awe.test.mjs || status=$?
[[ $status -eq 0 ]] || server_log_tail
exit $status

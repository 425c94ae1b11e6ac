#!/usr/bin/env bash
# Run the dashboard browser tests against a sluice of their own: start the binary ($SLUICE_BIN,
# default target/debug/sluice) on a free port with a temporary data dir, run the test files in
# order (they share the server: dashboard.test.mjs first, then counts.test.mjs), stop it.
#   tests/ui/run.sh            (after scripts/ui-test-deps: npm ci here, Debian chromium)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
source "$repo/scripts/lib/test-server.sh"
if [[ ! -d "$here/node_modules/playwright-core" ]]; then
  echo "run scripts/ui-test-deps first (npm ci in tests/ui, apt chromium)" >&2
  exit 2
fi
start_test_server ui --allow-private-targets

cd "$here"
status=0
export SLUICE_BIN="$bin" SLUICE_URL="$endpoint" SLUICE_UI_ARTIFACTS="${SLUICE_UI_ARTIFACTS:-$repo/target/test-output/ui}"
# One file at a time, in this order (node would order them itself): each prints its own
# "# pass N" / "# fail N" summary, which scripts/test adds up.
for f in dashboard.test.mjs counts.test.mjs; do
  node --test "$f" || status=$?
done
[[ $status -eq 0 ]] || server_log_tail
exit $status

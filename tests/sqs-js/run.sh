#!/usr/bin/env bash
# Run the JS SDK suite against a sluice of its own: start the binary ($SLUICE_BIN, default
# target/debug/sluice) on a free port with a temporary data dir, run `node --test`, stop it.
#   tests/sqs-js/run.sh            (after scripts/sqs-test-deps, which runs npm ci here)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
source "$repo/scripts/lib/test-server.sh"
if [[ ! -d "$here/node_modules/@aws-sdk/client-sqs" ]]; then
  echo "run scripts/sqs-test-deps first (npm ci in tests/sqs-js)" >&2
  exit 2
fi
start_test_server sqs-js

cd "$here"
status=0
SLUICE_SQS_ENDPOINT="$endpoint" node --test || status=$?
[[ $status -eq 0 ]] || server_log_tail
exit $status

#!/usr/bin/env bash
# Run the dashboard browser tests against a sluice of their own: start the binary ($SLUICE_BIN,
# default target/debug/sluice) on a free port with a temporary data dir, run `node --test`, stop it.
#   tests/ui/run.sh            (after scripts/ui-test-deps: npm ci here, Debian chromium)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
bin="${SLUICE_BIN:-$repo/target/debug/sluice}"
case "$bin" in /*) ;; *) bin="$repo/$bin" ;; esac
if [[ ! -x "$bin" ]]; then
  echo "sluice binary not found at $bin (build it, or set SLUICE_BIN)" >&2
  exit 2
fi
if [[ ! -d "$here/node_modules/playwright-core" ]]; then
  echo "run scripts/ui-test-deps first (npm ci in tests/ui, apt chromium)" >&2
  exit 2
fi

tmp="$(mktemp -d "${TMPDIR:-/tmp}/sluice-ui-XXXXXX")"
pid=""
cleanup() {
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

healthy() {
  if command -v curl >/dev/null 2>&1; then
    curl -fsS -o /dev/null "$1/healthz" 2>/dev/null
  else
    node -e 'fetch(process.argv[1]+"/healthz").then(r=>process.exit(r.ok?0:1),()=>process.exit(1))' "$1"
  fi
}

free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

endpoint=""
for attempt in 1 2 3; do
  port="$(free_port)"
  "$bin" serve --listen "127.0.0.1:$port" --data-dir "$tmp/data" --log-level warn --allow-private-targets \
    >>"$tmp/server.log" 2>&1 </dev/null &
  pid=$!
  for _ in $(seq 1 300); do
    if ! kill -0 "$pid" 2>/dev/null; then break; fi
    if healthy "http://127.0.0.1:$port"; then
      endpoint="http://127.0.0.1:$port"
      break
    fi
    sleep 0.1
  done
  [[ -n "$endpoint" ]] && break
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=""
done
if [[ -z "$endpoint" ]]; then
  echo "sluice did not become healthy; log:" >&2
  tail -n 50 "$tmp/server.log" >&2 || true
  exit 1
fi

cd "$here"
status=0
SLUICE_BIN="$bin" SLUICE_URL="$endpoint" SLUICE_UI_ARTIFACTS="${SLUICE_UI_ARTIFACTS:-$repo/target/test-output/ui}" node --test --test-concurrency=1 || status=$?
if [[ $status -ne 0 ]]; then
  echo "--- sluice log (last 50 lines)" >&2
  tail -n 50 "$tmp/server.log" >&2 || true
fi
exit $status

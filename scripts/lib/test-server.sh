# Sourced by the test runners that need a sluice of their own (tests/ui/run.sh,
# tests/sqs-js/run.sh, scripts/test-schemathesis):
#
#   source scripts/lib/test-server.sh
#   start_test_server NAME [EXTRA SERVE FLAGS...]   # sets $endpoint, $tmp; stopped on exit
#   ... run the suite against $endpoint ...
#   server_log_tail                                  # the last 50 lines of its log, on stderr
#
# The binary is $SLUICE_BIN (default target/debug/sluice, relative paths from the repo root).
# It starts on a free loopback port with a temporary data dir (three tries if the port is
# taken meanwhile), and is stopped (TERM, then KILL after 10 s) when the calling script exits.

_ts_repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bin="${SLUICE_BIN:-$_ts_repo/target/debug/sluice}"
case "$bin" in /*) ;; *) bin="$_ts_repo/$bin" ;; esac
tmp=""
pid=""
endpoint=""

_ts_cleanup() {
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  [[ -n "$tmp" ]] && rm -rf "$tmp"
}

_ts_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()' 2>/dev/null ||
    node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

_ts_healthy() {
  if command -v curl >/dev/null 2>&1; then
    curl -fsS -o /dev/null "$1/healthz" 2>/dev/null
  else
    node -e 'fetch(process.argv[1]+"/healthz").then(r=>process.exit(r.ok?0:1),()=>process.exit(1))' "$1"
  fi
}

server_log_tail() {
  echo "--- sluice log (last 50 lines)" >&2
  tail -n 50 "$tmp/server.log" >&2 || true
}

start_test_server() {
  local name="$1"
  shift
  if [[ ! -x "$bin" ]]; then
    echo "sluice binary not found at $bin (build it, or set SLUICE_BIN)" >&2
    exit 2
  fi
  tmp="$(mktemp -d "${TMPDIR:-/tmp}/sluice-$name-XXXXXX")"
  trap _ts_cleanup EXIT
  local port
  for _attempt in 1 2 3; do
    port="$(_ts_free_port)"
    "$bin" serve --listen "127.0.0.1:$port" --data-dir "$tmp/data" --log-level warn "$@" \
      >>"$tmp/server.log" 2>&1 </dev/null &
    pid=$!
    for _ in $(seq 1 300); do
      if ! kill -0 "$pid" 2>/dev/null; then break; fi
      if _ts_healthy "http://127.0.0.1:$port"; then
        endpoint="http://127.0.0.1:$port"
        return 0
      fi
      sleep 0.1
    done
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=""
  done
  echo "sluice did not become healthy" >&2
  server_log_tail
  exit 1
}

#!/usr/bin/env bash
# miniqueue's four example clients (seed 002, examples/), built from the seed sources with
# Debian's Go (standard library only) and run unchanged against a sluice started here: over TLS
# (HTTP/2 by ALPN, a self-signed certificate trusted through SSL_CERT_FILE) and over plain
# HTTP/1.1. The examples hard-code https://localhost:8080; the build sets that one string
# variable to this server's URL (-ldflags -X main.url=...), so no line of them changes. (Go's
# standard client cannot speak h2c, so h2c is covered by tests/it/seeds.rs with the same
# request.) Prints one "name: ok" / "name: FAILED" line per check.
#   tests/seeds/miniqueue.sh SEED_SOURCES_DIR
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
seeds="$1"
examples="$seeds/002-miniqueue/examples"
bin="${SLUICE_BIN:-$repo/target/debug/sluice}"
work="$(mktemp -d "${TMPDIR:-/tmp}/sluice-seed-mq-XXXXXX")"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
pass=0
fail=0
check() { # name, then a command whose status decides
  local name="$1"
  shift
  if "$@"; then
    echo "$name: ok"
    pass=$((pass + 1))
  else
    echo "$name: FAILED"
    fail=$((fail + 1))
  fi
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -keyout "$work/key.pem" -out "$work/cert.pem" >/dev/null 2>&1

# start NAME SCHEME: a sluice on a free port; sets $url
start() {
  local name="$1" scheme="$2" port
  port="$(free_port)"
  local extra=()
  [[ $scheme == https ]] && extra=(--tls-cert "$work/cert.pem" --tls-key "$work/key.pem")
  "$bin" serve --listen "127.0.0.1:$port" --data-dir "$work/data-$name" --log-level warn "${extra[@]}" \
    >"$work/$name.log" 2>&1 </dev/null &
  pids+=($!)
  url="$scheme://localhost:$port"
  for _ in $(seq 1 200); do
    curl -fsS --cacert "$work/cert.pem" -o /dev/null "$url/healthz" 2>/dev/null && return 0
    sleep 0.05
  done
  echo "sluice ($name) did not start:" >&2
  cat "$work/$name.log" >&2
  return 1
}

build() { # example, url -> $work/bin/<example>-<scheme>
  local ex="$1" u="$2" out
  out="$work/bin/$ex-${u%%:*}"
  mkdir -p "$work/src/$ex"
  cp "$examples/$ex/main.go" "$work/src/$ex/"
  (cd "$work/src/$ex" && [[ -f go.mod ]] || go mod init "example.test/$ex" >/dev/null 2>&1) &&
    (cd "$work/src/$ex" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -o "$out" -ldflags "-X main.url=$u" .)
}

publish_many() { # n messages to topic $1 through the native batch API
  local topic="$1" n="$2" i body
  for ((i = 0; i < n; i += 1000)); do
    body=$(python3 -c "import json,sys; print(json.dumps({'messages':[{'body':'m%d'%k} for k in range($i,min($i+1000,$n))]}))")
    curl -fsS --cacert "$work/cert.pem" -o /dev/null -H 'content-type: application/json' \
      -d "$body" "$url/v1/queues/$topic/messages" || return 1
  done
}

echo_ok() { # echo: one line in, its message consumed back, then q
  local out
  out="$(printf 'hello from echo\nq\n' | SSL_CERT_FILE="$work/cert.pem" timeout 30 "$1" 2>&1)"
  grep -q "Consumed message: hello from echo" <<<"$out" && ! grep -q "failed" <<<"$out" ||
    { echo "$out" | tail -n 20 >&2; return 1; }
}

backoff_ok() { # exponential_backoff: the message comes back after DACK 1, then DACK 2
  local out
  out="$(SSL_CERT_FILE="$work/cert.pem" timeout 8 "$1" 2>&1)"
  [[ $(grep -c "consumed message: hello_world" <<<"$out") -ge 2 ]] &&
    grep -q "delaying message: hello_world by 2s" <<<"$out" ||
    { echo "$out" | tail -n 20 >&2; return 1; }
}

workers_ok() { # workers --validate: in-order delivery with random NACKs, no panic, until stopped
  local out status
  # A clean topic (exponential_backoff leaves its message delayed there), as the seed's README
  # does with DELETE /{topic}.
  curl -fsS --cacert "$work/cert.pem" -o /dev/null -X DELETE "$url/test_topic" || return 1
  out="$(SSL_CERT_FILE="$work/cert.pem" timeout 8 "$1" -validate -consumers 1 -rate 100ms -chance 3 2>&1)"
  status=$?
  [[ $status -eq 124 ]] && grep -q "consumed message: 10" <<<"$out" && ! grep -qi "panic\|uh oh" <<<"$out" ||
    { echo "status $status" >&2; echo "$out" | tail -n 20 >&2; return 1; }
}

bench_ok() { # bench_consume: consume+ack for 1 s from a full topic, exit 0
  local out
  publish_many test 20000 || return 1
  out="$(SSL_CERT_FILE="$work/cert.pem" timeout 30 "$1" -duration 1s 2>&1)"
  grep -Eq "consumed [1-9][0-9]* times in 1s" <<<"$out" || { echo "$out" | tail -n 20 >&2; return 1; }
}

for scheme in https http; do
  start "$scheme" "$scheme" || { fail=$((fail + 1)); continue; }
  for ex in echo exponential_backoff workers bench_consume; do
    if ! build "$ex" "$url" 2>"$work/build.log"; then
      echo "miniqueue $ex ($scheme): build FAILED"
      cat "$work/build.log" >&2
      fail=$((fail + 1))
      continue
    fi
    b="$work/bin/$ex-$scheme"
    case $ex in
      echo) check "miniqueue echo over $scheme" echo_ok "$b" ;;
      exponential_backoff) check "miniqueue exponential_backoff over $scheme" backoff_ok "$b" ;;
      workers) check "miniqueue workers --validate over $scheme" workers_ok "$b" ;;
      bench_consume) check "miniqueue bench_consume over $scheme" bench_ok "$b" ;;
    esac
  done
done
echo "miniqueue-examples: $pass passed, $fail failed"
[[ $fail -eq 0 ]]

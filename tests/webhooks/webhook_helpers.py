"""Helpers of the webhook suite: the sluice process, a local receiver, small JSON calls.

Plain functions and classes; the fixtures that use them live in conftest.py. Standard library
only, so the suite needs nothing beyond pytest and standardwebhooks.
"""

import base64
import json
import os
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def random_secret(nbytes: int = 32) -> str:
    """A Standard Webhooks secret: "whsec_" + standard (padded) base64 of random bytes."""
    return "whsec_" + base64.b64encode(os.urandom(nbytes)).decode("ascii")


# ---------- the sluice process ----------

def sluice_binary() -> Path:
    """$SLUICE_BIN (relative paths are taken from the repo root), else target/debug/sluice."""
    binary = Path(os.environ.get("SLUICE_BIN", REPO / "target" / "debug" / "sluice"))
    return binary if binary.is_absolute() else REPO / binary


def _healthy(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(f"{endpoint}/healthz", timeout=1) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


class Server:
    """A sluice process (or, with proc None, a server started by someone else)."""

    def __init__(self, endpoint, proc=None, log_path=None):
        self.endpoint = endpoint
        self.proc = proc
        self.log_path = log_path

    def log(self) -> str:
        if self.log_path and Path(self.log_path).exists():
            return Path(self.log_path).read_text(errors="replace")[-4000:]
        return ""


def start_server(binary: Path, data_dir: Path, log_path: Path, extra_args=()) -> Server:
    """Start sluice on a free port (webhooks may reach loopback); retried if the port is taken."""
    last = ""
    for _ in range(3):
        port = free_port()
        endpoint = f"http://127.0.0.1:{port}"
        log = open(log_path, "ab")
        proc = subprocess.Popen(
            [str(binary), "serve", "--listen", f"127.0.0.1:{port}",
             "--data-dir", str(data_dir), "--log-level", "warn",
             "--allow-private-targets", *extra_args],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            if _healthy(endpoint):
                return Server(endpoint, proc, log_path)
            time.sleep(0.05)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        last = Path(log_path).read_text(errors="replace")[-2000:]
    raise RuntimeError(f"sluice did not become healthy; log:\n{last}")


def stop_server(server: Server):
    if server.proc is None:
        return
    server.proc.terminate()
    try:
        server.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()


def call(endpoint: str, method: str, path: str, body=None, timeout: float = 10.0):
    """A JSON request to sluice: (status, parsed JSON or None). HTTP errors are returned too."""
    data = None if body is None else json.dumps(body).encode("utf-8")
    req = urllib.request.Request(f"{endpoint}{path}", data=data, method=method)
    if data is not None:
        req.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    return status, (json.loads(raw) if raw else None)


# ---------- the receiver ----------

class Delivery:
    """One request as it arrived: method, path, headers (names lower-cased), raw body bytes."""

    def __init__(self, method: str, path: str, headers: dict, raw_headers: list, body: bytes):
        self.method = method
        self.path = path
        self.headers = headers
        self.raw_headers = raw_headers
        self.body = body

    def __repr__(self):
        return (f"Delivery({self.method} {self.path} id={self.headers.get('webhook-id')!r} "
                f"body={self.body[:80]!r})")


class Receiver:
    """A threaded http.server on a free loopback port that keeps every request and answers 200.

    Each test gets its own path (`url(prefix)`), and `wait(path, ...)` polls for what came to it.
    """

    def __init__(self):
        self._lock = threading.Condition()
        self._got: list[Delivery] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self):
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                raw = list(self.headers.items())
                headers = {}
                for k, v in raw:
                    headers.setdefault(k.lower(), v)
                with receiver._lock:
                    receiver._got.append(Delivery(self.command, self.path, headers, raw, body))
                    receiver._lock.notify_all()
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            do_POST = do_PUT = do_PATCH = _record

            def log_message(self, *args):  # keep pytest output quiet
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def url(self, prefix: str = "hook") -> str:
        return f"http://127.0.0.1:{self.port}/{unique(prefix)}"

    def deliveries(self, path: str) -> list:
        with self._lock:
            return [d for d in self._got if d.path == path]

    def wait(self, path: str, done, timeout: float = 20.0) -> list:
        """The deliveries to `path` once `done(deliveries)` is true; fails after `timeout` s."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                got = [d for d in self._got if d.path == path]
                if done(got):
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"timed out after {timeout}s waiting for deliveries to {path}; got {got}")
                self._lock.wait(min(left, 0.2))

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)


# ---------- publishing and waiting ----------

def publish(endpoint, queue, body, attributes=None):
    payload = {"body": body}
    if attributes:
        payload["attributes"] = attributes
    status, out = call(endpoint, "POST", f"/v1/queues/{queue}/messages", payload)
    assert status == 201, (status, out)
    return out["id"]


def publish_batch(endpoint, queue, bodies):
    payload = {"messages": [{"body": b} for b in bodies]}
    status, out = call(endpoint, "POST", f"/v1/queues/{queue}/messages", payload)
    assert status == 201, (status, out)
    assert len(out["ids"]) == len(bodies)
    return out["ids"]


def path_of(url):
    return "/" + url.split("/", 3)[3]


def wait_for_ids(receiver, path, ids, timeout=20.0):
    """One delivery per message id (a redelivery, if any, is ignored), in `ids` order."""
    got = receiver.wait(
        path, lambda ds: set(ids) <= {d.headers.get("webhook-id") for d in ds}, timeout)
    first = {}
    for d in got:
        first.setdefault(d.headers.get("webhook-id"), d)
    return [first[i] for i in ids]

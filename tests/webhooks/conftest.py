"""Fixtures for the webhook signature suite: one sluice server and one local receiver for the
whole session.

The server is the binary at $SLUICE_BIN (default: target/debug/sluice under the repo root),
started on a free loopback port with a temporary data directory and --allow-private-targets
(so its webhooks may reach the receiver on 127.0.0.1), and stopped at the end.
Set SLUICE_WEBHOOKS_ENDPOINT to test a server that is already running instead (it must allow
private targets).
"""

import os
import sys
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from webhook_helpers import (  # noqa: E402
    Receiver,
    Server,
    call,
    sluice_binary,
    start_server,
    stop_server,
    unique,
)


@pytest.fixture(scope="session")
def sluice():
    existing = os.environ.get("SLUICE_WEBHOOKS_ENDPOINT")
    if existing:
        yield Server(existing.rstrip("/"))
        return
    binary = sluice_binary()
    if not binary.exists():
        pytest.exit(f"sluice binary not found at {binary} (build it, or set SLUICE_BIN)", 2)
    with tempfile.TemporaryDirectory(prefix="sluice-webhooks-") as tmp:
        server = start_server(binary, Path(tmp) / "data", Path(tmp) / "server.log")
        try:
            yield server
        finally:
            stop_server(server)


@pytest.fixture(scope="session")
def endpoint(sluice):
    return sluice.endpoint


@pytest.fixture(scope="session")
def receiver():
    r = Receiver()
    try:
        yield r
    finally:
        r.close()


@pytest.fixture
def subscribe(endpoint):
    """Create push subscriptions on fresh queues; each queue is deleted after the test.

    subscribe(url, secret, **fields) -> (queue, name, subscription view)
    """
    queues = []

    def make(url, secret, **fields):
        queue = unique("wh")
        name = unique("sub")
        body = {"url": url, "signing_secret": secret, **fields}
        status, view = call(endpoint, "PUT", f"/v1/queues/{queue}/subscriptions/{name}", body)
        assert status == 201, (status, view)
        queues.append(queue)
        return queue, name, view

    yield make
    for q in queues:
        call(endpoint, "DELETE", f"/v1/queues/{q}")

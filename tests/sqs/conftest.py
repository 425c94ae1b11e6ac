"""Fixtures for the SQS client suites: one sluice server for the whole session, boto3 clients.

The server is the binary at $SLUICE_BIN (default: target/debug/sluice under the repo root),
started on a free loopback port with a temporary data directory and stopped at the end.
Set SLUICE_SQS_ENDPOINT to test a server that is already running instead.
"""

import os
import sys
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from sqs_helpers import (  # noqa: E402
    Server,
    make_client,
    sluice_binary,
    start_server,
    stop_server,
    unique,
)


@pytest.fixture(scope="session")
def sluice():
    existing = os.environ.get("SLUICE_SQS_ENDPOINT")
    if existing:
        yield Server(existing.rstrip("/"))
        return
    binary = sluice_binary()
    if not binary.exists():
        pytest.exit(f"sluice binary not found at {binary} (build it, or set SLUICE_BIN)", 2)
    with tempfile.TemporaryDirectory(prefix="sluice-sqs-") as tmp:
        server = start_server(binary, Path(tmp) / "data", Path(tmp) / "server.log")
        try:
            yield server
        finally:
            stop_server(server)


@pytest.fixture(scope="session")
def endpoint(sluice):
    return sluice.endpoint


@pytest.fixture(scope="session")
def sqs(endpoint):
    return make_client(endpoint)


@pytest.fixture
def make_queue(sqs):
    """Create queues with unique names; all are deleted after the test."""
    created = []

    def make(prefix="q", attributes=None, tags=None, name=None):
        name = name or unique(prefix)
        kwargs = {"QueueName": name}
        if attributes:
            kwargs["Attributes"] = {k: str(v) for k, v in attributes.items()}
        if tags:
            kwargs["tags"] = tags
        url = sqs.create_queue(**kwargs)["QueueUrl"]
        created.append(url)
        return url

    yield make
    for url in created:
        try:
            sqs.delete_queue(QueueUrl=url)
        except sqs.exceptions.QueueDoesNotExist:
            pass


@pytest.fixture
def queue(make_queue):
    return make_queue()

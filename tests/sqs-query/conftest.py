"""The query protocol parsed by botocore 1.29.x, the last botocore whose SQS model is the query
protocol: its own serializer and XML parser, for every action. Run with
PYTHONPATH=.venv/botocore-1.29 (scripts/test-sqs does), so that `import botocore` is that one.
"""

import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sqs"))

from sqs_helpers import sluice_binary, start_server, stop_server  # noqa: E402


@pytest.fixture(scope="session")
def endpoint():
    import botocore

    assert botocore.__version__.startswith("1.29."), (
        f"botocore {botocore.__version__}: run with PYTHONPATH=.venv/botocore-1.29")
    with tempfile.TemporaryDirectory(prefix="sluice-sqs-query-") as tmp:
        server = start_server(sluice_binary(), Path(tmp) / "data", Path(tmp) / "server.log")
        try:
            yield server.endpoint
        finally:
            stop_server(server)


@pytest.fixture(scope="session")
def q(endpoint):
    import botocore.session
    from botocore.config import Config

    c = botocore.session.get_session().create_client(
        "sqs", region_name="us-east-1", endpoint_url=endpoint, aws_access_key_id="x",
        aws_secret_access_key="x", config=Config(retries={"max_attempts": 1}))
    assert c.meta.service_model.protocol == "query"
    return c

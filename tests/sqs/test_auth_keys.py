"""API keys with roles on the SQS API: a sluice started with --auth-keys verifies SigV4 against
the configured access key pairs, then checks each pair's role and queue globs per action."""

import subprocess
import tempfile
from pathlib import Path

import pytest
import requests
from botocore.exceptions import ClientError

from sqs_helpers import make_client, sluice_binary, start_server, stop_server, unique

ADMIN = ("AKIDSLUICEADMIN", "admin-secret-0123456789")
SHOP = ("AKIDSLUICESHOP", "shop-secret-0123456789")
WORKER = ("AKIDSLUICEWORKER", "worker-secret-0123456789")
BEARER = "bearer-admin-key-0123456789"

KEYS = f"""
[[key]]
name = "ops"
access_key_id = "{ADMIN[0]}"
secret_access_key = "{ADMIN[1]}"
role = "admin"

[[key]]
name = "shop"
access_key_id = "{SHOP[0]}"
secret_access_key = "{SHOP[1]}"
role = "publish"
queues = ["orders*"]

[[key]]
name = "workers"
access_key_id = "{WORKER[0]}"
secret_access_key = "{WORKER[1]}"
role = "consume"

[[key]]
name = "native-admin"
key = "{BEARER}"
role = "admin"
"""


def supports_auth_keys() -> bool:
    binary = sluice_binary()
    if not binary.exists():
        return False
    out = subprocess.run([str(binary), "serve", "--help"], capture_output=True, text=True, timeout=30)
    return "--auth-keys" in out.stdout


pytestmark = pytest.mark.skipif(not supports_auth_keys(), reason="this sluice build has no --auth-keys")


@pytest.fixture(scope="module")
def endpoint():
    with tempfile.TemporaryDirectory(prefix="sluice-sqs-auth-") as tmp:
        keys = Path(tmp) / "keys.toml"
        keys.write_text(KEYS)
        server = start_server(sluice_binary(), Path(tmp) / "data", Path(tmp) / "server.log",
                              extra_args=["--auth-keys", str(keys)])
        try:
            yield server.endpoint
        finally:
            stop_server(server)


def client(endpoint, pair):
    return make_client(endpoint, key_id=pair[0], secret=pair[1])


def denied(fn, **kwargs):
    with pytest.raises(ClientError) as e:
        fn(**kwargs)
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    return e.value.response["Error"]


def test_roles_and_queue_globs(endpoint):
    admin, shop, worker = client(endpoint, ADMIN), client(endpoint, SHOP), client(endpoint, WORKER)
    orders = admin.create_queue(QueueName=unique("orders"))["QueueUrl"]
    payments = admin.create_queue(QueueName=unique("payments"))["QueueUrl"]

    # The publisher: SendMessage on orders* only; no settings, no receiving.
    shop.send_message(QueueUrl=orders, MessageBody="paid")
    err = denied(shop.send_message, QueueUrl=payments, MessageBody="x")
    assert err["Code"] == "AccessDenied" and "does not cover queue" in err["Message"]
    assert denied(shop.create_queue, QueueName=unique("orders"))["Code"] == "AccessDenied"
    assert denied(shop.receive_message, QueueUrl=orders)["Code"] == "AccessDenied"
    assert shop.get_queue_url(QueueName=orders.rsplit("/", 1)[1])["QueueUrl"] == orders
    listed = shop.list_queues().get("QueueUrls", [])
    assert orders in listed and payments not in listed, "a key lists only the queues it covers"
    assert payments in admin.list_queues()["QueueUrls"]

    # The consumer: receive and delete anywhere, never send or purge.
    msgs = worker.receive_message(QueueUrl=orders, WaitTimeSeconds=1)["Messages"]
    assert [m["Body"] for m in msgs] == ["paid"]
    worker.delete_message(QueueUrl=orders, ReceiptHandle=msgs[0]["ReceiptHandle"])
    assert denied(worker.send_message, QueueUrl=orders, MessageBody="x")["Code"] == "AccessDenied"
    assert denied(worker.purge_queue, QueueUrl=orders)["Code"] == "AccessDenied"

    # Nothing refused was stored.
    attrs = admin.get_queue_attributes(QueueUrl=payments, AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == "0"


def test_unsigned_and_unknown_keys_are_refused(endpoint):
    r = requests.post(endpoint + "/", data={"Action": "ListQueues"}, timeout=10)
    assert r.status_code == 403
    assert "<Code>MissingAuthenticationToken</Code>" in r.text
    err = denied(make_client(endpoint, key_id="AKIDUNKNOWN", secret="whatever-secret-123").list_queues)
    assert err["Code"] == "InvalidClientTokenId"


def test_the_native_api_needs_a_bearer_key(endpoint):
    assert requests.get(endpoint + "/v1/queues", timeout=10).status_code == 401
    r = requests.get(endpoint + "/v1/queues", headers={"Authorization": f"Bearer {BEARER}"}, timeout=10)
    assert r.status_code == 200
    # An SQS secret is not a bearer key.
    r = requests.get(endpoint + "/v1/queues", headers={"Authorization": f"Bearer {ADMIN[1]}"}, timeout=10)
    assert r.status_code == 401
    assert requests.get(endpoint + "/healthz", timeout=10).status_code == 200

"""SigV4 verification: a second sluice started with --sqs-credentials checks every signature."""

import subprocess
import tempfile
from pathlib import Path

import pytest
import requests
from botocore.exceptions import ClientError

from sqs_helpers import make_client, sluice_binary, start_server, stop_server, unique

KEY_ID, SECRET = "AKIDSLUICETEST", "s3cr3t/with+chars"


def supports_credentials() -> bool:
    binary = sluice_binary()
    if not binary.exists():
        return False
    out = subprocess.run([str(binary), "serve", "--help"], capture_output=True, text=True, timeout=30)
    return "--sqs-credentials" in out.stdout


pytestmark = pytest.mark.skipif(not supports_credentials(),
                                reason="this sluice build has no --sqs-credentials")


@pytest.fixture(scope="module")
def signed_endpoint():
    with tempfile.TemporaryDirectory(prefix="sluice-sqs-sigv4-") as tmp:
        server = start_server(sluice_binary(), Path(tmp) / "data", Path(tmp) / "server.log",
                              extra_args=["--sqs-credentials", f"{KEY_ID}:{SECRET},OTHER:other"])
        try:
            yield server.endpoint
        finally:
            stop_server(server)


def test_good_signatures_are_accepted(signed_endpoint):
    c = make_client(signed_endpoint, key_id=KEY_ID, secret=SECRET)
    url = c.create_queue(QueueName=unique("signed"))["QueueUrl"]
    c.send_message(QueueUrl=url, MessageBody="signed body ✓",
                   MessageAttributes={"k": {"DataType": "String", "StringValue": "v"}})
    m = c.receive_message(QueueUrl=url, MessageAttributeNames=["All"])["Messages"][0]
    assert m["Body"] == "signed body ✓"
    c.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    # A second configured key works too, and so does another region in the scope.
    other = make_client(signed_endpoint, region="eu-central-1", key_id="OTHER", secret="other")
    assert url in other.list_queues()["QueueUrls"]
    c.delete_queue(QueueUrl=url)


@pytest.mark.parametrize(
    "key_id,secret,code",
    [
        (KEY_ID, "wrong", "SignatureDoesNotMatch"),
        ("UNKNOWNKEY", SECRET, "InvalidClientTokenId"),
    ],
)
def test_bad_credentials_are_refused(signed_endpoint, key_id, secret, code):
    c = make_client(signed_endpoint, key_id=key_id, secret=secret)
    with pytest.raises(ClientError) as e:
        c.list_queues()
    assert e.value.response["Error"]["Code"] == code
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_unsigned_requests_are_refused(signed_endpoint):
    r = requests.post(signed_endpoint + "/", data={"Action": "ListQueues"}, timeout=10)
    assert r.status_code == 403
    assert "<Code>MissingAuthenticationToken</Code>" in r.text
    r = requests.post(signed_endpoint + "/", json={},
                      headers={"X-Amz-Target": "AmazonSQS.ListQueues",
                               "Content-Type": "application/x-amz-json-1.0"}, timeout=10)
    assert r.status_code == 403
    assert r.json()["__type"].endswith("#MissingAuthenticationToken")


def test_a_tampered_body_is_refused(signed_endpoint):
    import botocore.auth
    import botocore.awsrequest
    import botocore.credentials

    body = '{"QueueNamePrefix": "a"}'
    req = botocore.awsrequest.AWSRequest(
        method="POST", url=signed_endpoint + "/", data=body,
        headers={"X-Amz-Target": "AmazonSQS.ListQueues",
                 "Content-Type": "application/x-amz-json-1.0"},
    )
    botocore.auth.SigV4Auth(botocore.credentials.Credentials(KEY_ID, SECRET), "sqs",
                            "us-east-1").add_auth(req)
    headers = dict(req.headers)
    ok = requests.post(signed_endpoint + "/", data=body, headers=headers, timeout=10)
    assert ok.status_code == 200, ok.text
    bad = requests.post(signed_endpoint + "/", data=body.replace('"a"', '"b"'), headers=headers,
                        timeout=10)
    assert bad.status_code == 403
    assert bad.json()["__type"].endswith("#SignatureDoesNotMatch")


def test_query_protocol_signed_by_the_cli_style_signer(signed_endpoint):
    import botocore.auth
    import botocore.awsrequest
    import botocore.credentials

    body = f"Action=CreateQueue&QueueName={unique('qsig')}&Version=2012-11-05"
    req = botocore.awsrequest.AWSRequest(
        method="POST", url=signed_endpoint + "/", data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
    )
    botocore.auth.SigV4Auth(botocore.credentials.Credentials(KEY_ID, SECRET), "sqs",
                            "us-east-1").add_auth(req)
    r = requests.post(signed_endpoint + "/", data=body, headers=dict(req.headers), timeout=10)
    assert r.status_code == 200, r.text
    assert "<QueueUrl>" in r.text


def test_aws_cli_with_configured_keys(signed_endpoint, tmp_path):
    import os
    import shutil
    import sys

    aws = Path(sys.executable).parent / "aws"
    aws = str(aws) if aws.exists() else shutil.which("aws")
    if aws is None:
        pytest.skip("the aws CLI is not installed")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": str(tmp_path / "c"),
                "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "k")})
    cmd = [aws, "--endpoint-url", signed_endpoint, "--output", "json", "sqs", "list-queues"]
    good = subprocess.run(cmd, env={**env, "AWS_ACCESS_KEY_ID": KEY_ID,
                                    "AWS_SECRET_ACCESS_KEY": SECRET},
                          capture_output=True, text=True, timeout=60)
    assert good.returncode == 0, good.stderr
    bad = subprocess.run(cmd, env={**env, "AWS_ACCESS_KEY_ID": KEY_ID,
                                   "AWS_SECRET_ACCESS_KEY": "nope"},
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0
    assert "SignatureDoesNotMatch" in bad.stderr


def test_a_request_signed_an_hour_ago_is_refused(signed_endpoint, monkeypatch):
    import datetime

    import botocore.auth
    import botocore.awsrequest
    import botocore.credentials

    an_hour_ago = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - \
        datetime.timedelta(hours=1)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: an_hour_ago)
    body = "{}"
    req = botocore.awsrequest.AWSRequest(
        method="POST", url=signed_endpoint + "/", data=body,
        headers={"X-Amz-Target": "AmazonSQS.ListQueues",
                 "Content-Type": "application/x-amz-json-1.0"},
    )
    botocore.auth.SigV4Auth(botocore.credentials.Credentials(KEY_ID, SECRET), "sqs",
                            "us-east-1").add_auth(req)
    assert req.headers["X-Amz-Date"].startswith(an_hour_ago.strftime("%Y%m%dT%H"))
    r = requests.post(signed_endpoint + "/", data=body, headers=dict(req.headers), timeout=10)
    assert r.status_code == 403, r.text


def presigned_get(client, url, params, signer=None):
    """What kombu's asynchronous consumer does: a GET whose action and parameters go into the
    query string, signed there (botocore's `presign-url` signing)."""
    from botocore.awsrequest import AWSRequest

    req = AWSRequest(method="GET", url=url, data=params)
    (signer or client._request_signer).sign(params["Action"], req, signing_type="presign-url")
    prepared = req.prepare()
    assert "X-Amz-Signature=" in prepared.url
    return requests.get(prepared.url, timeout=30)


def test_presigned_get_delete_message_like_kombu(signed_endpoint):
    c = make_client(signed_endpoint, key_id=KEY_ID, secret=SECRET)
    url = c.create_queue(QueueName=unique("presigned"))["QueueUrl"]
    c.send_message(QueueUrl=url, MessageBody="delete me")
    m = c.receive_message(QueueUrl=url, VisibilityTimeout=60)["Messages"][0]
    r = presigned_get(c, url, {"Action": "DeleteMessage", "ReceiptHandle": m["ReceiptHandle"],
                               "Version": "2012-11-05"})
    assert r.status_code == 200, r.text
    assert "DeleteMessageResponse" in r.text
    a = c.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"])
    assert a["Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "0"
    # GET /?Action=ListQueues answers SQS, not the dashboard.
    r = presigned_get(c, signed_endpoint + "/", {"Action": "ListQueues", "Version": "2012-11-05"})
    assert r.status_code == 200 and "<ListQueuesResponse" in r.text and url in r.text, r.text
    # A presigned URL signed with the wrong secret, or tampered with, is refused.
    bad = make_client(signed_endpoint, key_id=KEY_ID, secret="wrong")
    r = presigned_get(bad, signed_endpoint + "/", {"Action": "ListQueues"})
    assert r.status_code == 403 and "SignatureDoesNotMatch" in r.text
    from botocore.awsrequest import AWSRequest

    req = AWSRequest(method="GET", url=signed_endpoint + "/", data={"Action": "ListQueues"})
    c._request_signer.sign("ListQueues", req, signing_type="presign-url")
    r = requests.get(req.prepare().url.replace("Action=ListQueues", "Action=PurgeQueue"), timeout=30)
    assert r.status_code == 403
    c.delete_queue(QueueUrl=url)

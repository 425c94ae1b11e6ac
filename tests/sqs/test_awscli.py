"""The core flow through the `aws` CLI (the awscli package in the same venv), run as a subprocess."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sqs_helpers import ACCOUNT, unique
from sqs_md5 import md5_of_attributes, md5_of_body


def aws_executable():
    beside = Path(sys.executable).parent / "aws"
    if beside.exists():
        return str(beside)
    return shutil.which("aws")


AWS = aws_executable()
pytestmark = pytest.mark.skipif(AWS is None, reason="the aws CLI is not installed (scripts/sqs-test-deps)")


@pytest.fixture(scope="module")
def aws(endpoint, tmp_path_factory):
    home = tmp_path_factory.mktemp("aws-home")
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith("AWS_")
    }
    env.update({
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_DEFAULT_REGION": "us-east-1",
        # Keep any real configuration of the machine out of the test.
        "AWS_CONFIG_FILE": str(home / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials"),
        "AWS_PAGER": "",
    })

    def run(*args, check=True):
        cmd = [AWS, "--endpoint-url", endpoint, "--output", "json", "sqs", *args]
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
        if check:
            assert p.returncode == 0, f"{' '.join(cmd)}\nstdout: {p.stdout}\nstderr: {p.stderr}"
            return json.loads(p.stdout) if p.stdout.strip() else {}
        return p

    return run


def test_core_flow(aws, endpoint):
    name = unique("cli")
    url = aws("create-queue", "--queue-name", name,
              "--attributes", "VisibilityTimeout=40,DelaySeconds=0")["QueueUrl"]
    assert url == f"{endpoint}/{ACCOUNT}/{name}"
    try:
        assert aws("get-queue-url", "--queue-name", name)["QueueUrl"] == url
        assert url in aws("list-queues", "--queue-name-prefix", name)["QueueUrls"]

        attrs = {"color": {"DataType": "String", "StringValue": "blue"},
                 "size": {"DataType": "Number", "StringValue": "3"}}
        sent = aws("send-message", "--queue-url", url, "--message-body", "from the cli",
                   "--message-attributes", json.dumps(attrs))
        assert sent["MD5OfMessageBody"] == md5_of_body("from the cli")
        assert sent["MD5OfMessageAttributes"] == md5_of_attributes(attrs)

        a = aws("get-queue-attributes", "--queue-url", url, "--attribute-names", "All")["Attributes"]
        assert a["VisibilityTimeout"] == "40"
        assert a["ApproximateNumberOfMessages"] == "1"

        got = aws("receive-message", "--queue-url", url, "--attribute-names", "All",
                  "--message-attribute-names", "All", "--wait-time-seconds", "1")
        (m,) = got["Messages"]
        assert m["Body"] == "from the cli"
        assert m["MessageId"] == sent["MessageId"]
        assert m["MessageAttributes"] == attrs
        assert m["MD5OfMessageAttributes"] == md5_of_attributes(attrs)
        assert m["Attributes"]["ApproximateReceiveCount"] == "1"

        aws("delete-message", "--queue-url", url, "--receipt-handle", m["ReceiptHandle"])
        a = aws("get-queue-attributes", "--queue-url", url, "--attribute-names",
                "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible")["Attributes"]
        assert a == {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"}
    finally:
        aws("delete-queue", "--queue-url", url)
    p = aws("get-queue-url", "--queue-name", name, check=False)
    assert p.returncode != 0
    assert "AWS.SimpleQueueService.NonExistentQueue" in p.stderr or "QueueDoesNotExist" in p.stderr


def test_cli_error_for_missing_queue(aws, endpoint):
    p = aws("receive-message", "--queue-url", f"{endpoint}/{ACCOUNT}/{unique('nope')}", check=False)
    assert p.returncode != 0
    assert "does not exist" in p.stderr

"""Helpers shared by the SQS test modules (plain functions; fixtures live in conftest.py)."""

import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

ACCOUNT = "000000000000"
REGION = "us-east-1"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    """Start sluice on a free port; retried in case another process grabs the port first."""
    last = ""
    for _ in range(3):
        port = _free_port()
        endpoint = f"http://127.0.0.1:{port}"
        log = open(log_path, "ab")
        proc = subprocess.Popen(
            [str(binary), "serve", "--listen", f"127.0.0.1:{port}",
             "--data-dir", str(data_dir), "--log-level", "warn", *extra_args],
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


def sluice_binary() -> Path:
    """$SLUICE_BIN (relative paths are taken from the repo root), else target/debug/sluice."""
    binary = Path(os.environ.get("SLUICE_BIN", REPO / "target" / "debug" / "sluice"))
    return binary if binary.is_absolute() else REPO / binary


def make_client(endpoint: str, region: str = REGION, key_id: str = "x", secret: str = "x",
                **config):
    import boto3  # here, so that tests/sqs-query can use these helpers with an older botocore
    from botocore.config import Config

    cfg = dict(retries={"max_attempts": 1, "mode": "standard"},
               connect_timeout=5, read_timeout=30)
    cfg.update(config)
    return boto3.client(
        "sqs",
        region_name=region,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        endpoint_url=endpoint,
        config=Config(**cfg),
    )


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def queue_arn(sqs, url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def receive_until(sqs, url: str, want: int = 1, timeout: float = 15.0, **kwargs):
    """Receive until `want` messages have arrived or `timeout` passes (1 s long polls)."""
    got = []
    deadline = time.monotonic() + timeout
    kwargs.setdefault("WaitTimeSeconds", 1)
    kwargs.setdefault("MaxNumberOfMessages", 10)
    while len(got) < want and time.monotonic() < deadline:
        got += sqs.receive_message(QueueUrl=url, **kwargs).get("Messages", [])
    return got


def counts(sqs, url: str) -> dict:
    a = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                        "ApproximateNumberOfMessagesDelayed"],
    )["Attributes"]
    return {
        "visible": int(a["ApproximateNumberOfMessages"]),
        "inflight": int(a["ApproximateNumberOfMessagesNotVisible"]),
        "delayed": int(a["ApproximateNumberOfMessagesDelayed"]),
    }

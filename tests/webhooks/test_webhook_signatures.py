"""sluice's push deliveries verified with the official Standard Webhooks library.

Each test subscribes the local receiver to a fresh queue with a random `whsec_` secret,
publishes through the native API, waits (bounded) for the webhook requests, and checks every
one with `standardwebhooks.webhooks.Webhook(secret).verify(raw_body, headers)`, then that the
same request fails verification under another secret, with a tampered body, id or timestamp.
"""

import json
import re
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from webhook_helpers import path_of, publish, publish_batch, random_secret, wait_for_ids

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
BATCH_ID_RE = re.compile(r"^batch_[0-9a-f]{32}$")
SIGNATURE_RE = re.compile(r"^v1,[A-Za-z0-9+/]{43}=$")


def with_header(headers, name, value):
    h = dict(headers)
    h[name] = value
    return h


def assert_signed(secret, d, *, json_parse):
    """Verify delivery `d` under `secret` with standardwebhooks; check that tampering fails.

    Returns what Webhook.verify returns (the parsed JSON body when json_parse is True).
    """
    for name in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        assert name in d.headers, f"{name} missing from {d.raw_headers}"
    sig = d.headers["webhook-signature"]
    assert all(SIGNATURE_RE.match(s) for s in sig.split(" ")), sig
    ts = int(d.headers["webhook-timestamp"])
    assert abs(ts - time.time()) < 120, ts

    # The real check: the official library accepts the raw bytes and headers as received.
    result = Webhook(secret).verify(d.body, d.headers, json_parse=json_parse)
    # Header names as they came over the wire (the library lower-cases them itself).
    Webhook(secret).verify(d.body, dict(d.raw_headers), json_parse=False)

    # ... and rejects them under any other secret ...
    with pytest.raises(WebhookVerificationError):
        Webhook(random_secret()).verify(d.body, d.headers, json_parse=False)
    # ... or when the body, id or timestamp was changed on the way.
    for tampered in (d.body + b" ", b"x" + d.body, d.body.replace(b"a", b"b", 1) + b"!"):
        with pytest.raises(WebhookVerificationError):
            Webhook(secret).verify(tampered, d.headers, json_parse=False)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(
            d.body, with_header(d.headers, "webhook-id", d.headers["webhook-id"] + "x"),
            json_parse=False)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(
            d.body, with_header(d.headers, "webhook-timestamp", str(ts + 1)), json_parse=False)
    return result


# ---------- single deliveries ----------

@pytest.mark.parametrize("key_bytes", [24, 32, 64])
def test_json_body_is_signed(endpoint, receiver, subscribe, key_bytes):
    secret = random_secret(key_bytes)
    url = receiver.url("json")
    queue, name, view = subscribe(url, secret)
    assert view["signing_secret"] != secret, "the secret must not be echoed back"
    assert view["signing_secret"].startswith("whsec_")

    doc = {"order": 1001, "items": ["a", "b"], "total": 12.5, "gift": False, "note": None}
    body = json.dumps(doc)
    msg_id = publish(endpoint, queue, body, {"customer": "c-42", "x-trace": "abc123"})
    assert UUID_RE.match(msg_id), msg_id

    (d,) = wait_for_ids(receiver, path_of(url), [msg_id])
    assert d.method == "POST"
    assert d.body == body.encode("utf-8"), "the raw body must be the message body, byte for byte"
    assert d.headers["webhook-id"] == msg_id
    assert d.headers["content-type"].startswith("application/json")
    assert d.headers["customer"] == "c-42"
    assert d.headers["x-trace"] == "abc123"
    assert d.headers["sluice-queue"] == queue
    assert d.headers["sluice-subscription"] == name
    assert d.headers["sluice-attempt"] == "1"

    assert assert_signed(secret, d, json_parse=True) == doc


def test_text_body_is_signed(endpoint, receiver, subscribe):
    secret = random_secret()
    url = receiver.url("text")
    queue, _, _ = subscribe(url, secret)

    body = "plain text, not JSON: {oops} 100% \"quoted\" \\ back\\slash\ttab\nsecond line"
    msg_id = publish(endpoint, queue, body)

    (d,) = wait_for_ids(receiver, path_of(url), [msg_id])
    assert d.body == body.encode("utf-8")
    assert d.headers["webhook-id"] == msg_id
    assert d.headers["content-type"].startswith("text/plain")
    assert assert_signed(secret, d, json_parse=False) is None
    # The library's default (json_parse=True) verifies first, then fails only on parsing.
    with pytest.raises(json.JSONDecodeError):
        Webhook(secret).verify(d.body, d.headers)


@pytest.mark.parametrize("body, is_json", [
    ("héllo wörld — naïve café, 日本語, emoji 🚀🌸, combining e\u0301, line sep \u2028 end", False),
    (json.dumps({"greeting": "こんにちは 🌸", "name": "Zoë", "math": "∑ √ ∞"},
                ensure_ascii=False), True),
], ids=["text", "json"])
def test_unicode_body_is_signed(endpoint, receiver, subscribe, body, is_json):
    secret = random_secret()
    url = receiver.url("unicode")
    queue, _, _ = subscribe(url, secret)

    msg_id = publish(endpoint, queue, body)

    (d,) = wait_for_ids(receiver, path_of(url), [msg_id])
    assert d.body == body.encode("utf-8"), "multi-byte UTF-8 must arrive unchanged"
    assert d.headers["webhook-id"] == msg_id
    result = assert_signed(secret, d, json_parse=is_json)
    if is_json:
        assert result == json.loads(body)


def test_several_messages_each_signed_under_their_own_id(endpoint, receiver, subscribe):
    secret = random_secret()
    url = receiver.url("many")
    queue, _, _ = subscribe(url, secret)

    bodies = [json.dumps({"n": i}) for i in range(3)] + ["text", "ü"]
    ids = [publish(endpoint, queue, b) for b in bodies]
    assert len(set(ids)) == len(ids)

    for msg_id, body, d in zip(ids, bodies, wait_for_ids(receiver, path_of(url), ids)):
        assert d.headers["webhook-id"] == msg_id
        assert d.body == body.encode("utf-8")
        assert_signed(secret, d, json_parse=False)


# ---------- batches ----------

def test_batch_is_signed(endpoint, receiver, subscribe):
    secret = random_secret()
    url = receiver.url("batch")
    queue, _, view = subscribe(url, secret, batch={"max_messages": 3, "max_wait_ms": 200})
    assert view["batch"]["max_messages"] == 3, view

    doc = {"event": "order.created", "id": 7, "tags": ["x", "y"]}
    bodies = [json.dumps(doc), "not json at all", "ünïcödé ✓ 🚀"]
    expected = [doc, "not json at all", "ünïcödé ✓ 🚀"]
    ids = publish_batch(endpoint, queue, bodies)

    def items_of(d):
        return json.loads(d.body)

    def complete(ds):
        by_id = {d.headers.get("webhook-id"): d for d in ds}
        return sum(len(items_of(d)) for d in by_id.values()) >= len(bodies)

    got = receiver.wait(path_of(url), complete)
    by_id = {}
    for d in got:
        by_id.setdefault(d.headers["webhook-id"], d)

    items = []
    for batch_id, d in by_id.items():
        assert BATCH_ID_RE.match(batch_id), batch_id
        assert batch_id not in ids
        assert d.headers["content-type"].startswith("application/json")
        assert d.headers["sluice-batch-size"] == str(len(items_of(d)))
        parsed = assert_signed(secret, d, json_parse=True)
        assert isinstance(parsed, list) and parsed == items_of(d)
        items.extend(parsed)

    key = lambda v: json.dumps(v, sort_keys=True)  # noqa: E731
    assert sorted(items, key=key) == sorted(expected, key=key)
    # Published in one request within max_wait_ms, the three travel as one batch.
    assert len(by_id) == 1, f"expected one batch of 3, got {[items_of(d) for d in by_id.values()]}"

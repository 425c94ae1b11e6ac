"""Secret rotation and ed25519 (`v1a`) signatures, checked with independent implementations.

Rotation with HMAC secrets: every request made during the grace period carries one `v1`
signature per secret, and the official `standardwebhooks` library accepts it under the old
secret and under the new one. The `standardwebhooks` package (1.1.0) verifies only `v1`, so the
`v1a` signatures are checked with `cryptography`'s Ed25519 over the specification's signed
content, `{webhook-id}.{webhook-timestamp}.{body}`, with the public key the subscription view
shows (`whpk_…`); the private key sluice holds is never shown.
"""

import base64
import time

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from webhook_helpers import call, path_of, publish, random_secret, wait_for_ids

RAW = serialization.Encoding.Raw


def new_ed25519():
    """(whsk_ secret, whpk_ public key) of a fresh key pair made here, not by sluice."""
    sk = Ed25519PrivateKey.generate()
    seed = sk.private_bytes(RAW, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    pk = sk.public_key().public_bytes(RAW, serialization.PublicFormat.Raw)
    return "whsk_" + base64.b64encode(seed).decode(), "whpk_" + base64.b64encode(pk).decode()


def signatures(d):
    return d.headers["webhook-signature"].split(" ")


def verify_v1a(public_key, d, signature):
    """Check one `v1a,<base64>` signature of delivery `d` with a `whpk_` key (raises if bad)."""
    assert signature.startswith("v1a,"), signature
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key[len("whpk_"):]))
    content = (f"{d.headers['webhook-id']}.{d.headers['webhook-timestamp']}.".encode()
               + d.body)
    key.verify(base64.b64decode(signature[4:]), content)


def rotate(endpoint, queue, name, body=None):
    status, out = call(endpoint, "POST",
                       f"/v1/queues/{queue}/subscriptions/{name}/rotate-secret", body or {})
    assert status == 200, (status, out)
    return out


def test_rotation_signs_with_both_secrets_during_the_grace_period(endpoint, receiver, subscribe):
    old = random_secret()
    url = receiver.url("rotate")
    queue, name, _ = subscribe(url, old)

    out = rotate(endpoint, queue, name)
    new = out["secret"]
    assert new.startswith("whsec_") and new != old
    assert len(base64.b64decode(new[len("whsec_"):])) == 32
    view = out["subscription"]
    assert view["signing_secret"] == new[:10] + "…", "masked in the view"
    assert view["rotation"]["previous_secret"] == old[:10] + "…"
    assert out["public_key"] is None
    # The full secret is in that answer only.
    status, again = call(endpoint, "GET", f"/v1/queues/{queue}/subscriptions/{name}")
    assert status == 200 and new not in str(again) and old not in str(again)
    assert again["rotation"]["expires_at"] == view["rotation"]["expires_at"]

    msg_id = publish(endpoint, queue, '{"n": 1}')
    (d,) = wait_for_ids(receiver, path_of(url), [msg_id])
    assert len(signatures(d)) == 2 and all(s.startswith("v1,") for s in signatures(d))
    # A receiver that still has the old secret, and one that has the new one, both accept it.
    assert Webhook(old).verify(d.body, d.headers) == {"n": 1}
    assert Webhook(new).verify(d.body, d.headers) == {"n": 1}
    with pytest.raises(WebhookVerificationError):
        Webhook(random_secret()).verify(d.body, d.headers)

    # A given secret and no grace: only the new one signs from now on.
    given = random_secret()
    out = rotate(endpoint, queue, name, {"secret": given, "grace_seconds": 0})
    assert out["secret"] is None, "a secret the caller gave is not echoed"
    assert out["subscription"]["rotation"] is None
    msg_id = publish(endpoint, queue, '{"n": 2}')
    (d,) = wait_for_ids(receiver, path_of(url), [msg_id])
    assert len(signatures(d)) == 1
    Webhook(given).verify(d.body, d.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(d.body, d.headers)


def test_ed25519_signatures_verify_with_the_public_key(endpoint, receiver, subscribe):
    secret, public = new_ed25519()
    url = receiver.url("ed25519")
    queue, name, view = subscribe(url, secret)
    assert view["signing_public_key"] == public
    assert view["signing_secret"] == "whsk_…"
    assert secret[5:] not in str(view), "the private key is never shown"

    msg_id = publish(endpoint, queue, "ünïcödé body ✓")
    (d,) = wait_for_ids(receiver, path_of(url), [msg_id])
    (sig,) = signatures(d)
    assert abs(int(d.headers["webhook-timestamp"]) - time.time()) < 120
    verify_v1a(public, d, sig)
    # Tampering with the body, the id or the timestamp breaks it; so does another key.
    d.body += b"!"
    with pytest.raises(InvalidSignature):
        verify_v1a(public, d, sig)
    d.body = d.body[:-1]
    d.headers["webhook-timestamp"] = str(int(d.headers["webhook-timestamp"]) + 1)
    with pytest.raises(InvalidSignature):
        verify_v1a(public, d, sig)
    with pytest.raises(InvalidSignature):
        verify_v1a(new_ed25519()[1], d, sig)
    # An HMAC verifier finds no v1 signature in it.
    with pytest.raises(WebhookVerificationError):
        Webhook(random_secret()).verify(d.body, d.headers)


def test_ed25519_rotation_generates_a_key_and_shows_only_its_public_half(
        endpoint, receiver, subscribe):
    secret, old_public = new_ed25519()
    url = receiver.url("ed-rotate")
    queue, name, _ = subscribe(url, secret)

    out = rotate(endpoint, queue, name, {"grace_seconds": 600})
    assert out["secret"] is None, "a generated ed25519 secret key is never shown"
    new_public = out["public_key"]
    assert new_public.startswith("whpk_") and new_public != old_public
    view = out["subscription"]
    assert view["signing_public_key"] == new_public
    assert view["rotation"]["previous_public_key"] == old_public
    assert view["rotation"]["previous_secret"] == "whsk_…"

    msg_id = publish(endpoint, queue, '{"rotated": true}')
    (d,) = wait_for_ids(receiver, path_of(url), [msg_id])
    new_sig, old_sig = signatures(d)
    verify_v1a(new_public, d, new_sig)
    verify_v1a(old_public, d, old_sig)
    with pytest.raises(InvalidSignature):
        verify_v1a(old_public, d, new_sig)

    # From ed25519 back to HMAC: a v1 signature first, the ed25519 one beside it.
    out = rotate(endpoint, queue, name, {"type": "hmac"})
    hmac_secret = out["secret"]
    msg_id = publish(endpoint, queue, '{"back": "hmac"}')
    (d,) = wait_for_ids(receiver, path_of(url), [msg_id])
    first, second = signatures(d)
    assert first.startswith("v1,")
    Webhook(hmac_secret).verify(d.body, d.headers)
    verify_v1a(new_public, d, second)


def test_bad_rotations_name_their_field(endpoint, subscribe, receiver):
    queue, name, _ = subscribe(receiver.url("bad"), random_secret())
    path = f"/v1/queues/{queue}/subscriptions/{name}/rotate-secret"
    for body, field in [
        ({"grace_seconds": 604801}, "grace_seconds:"),
        ({"secret": "whsk_AAAA"}, "secret:"),
        ({"secret": random_secret(), "type": "ed25519"}, "type:"),
    ]:
        status, out = call(endpoint, "POST", path, body)
        assert status == 400, (body, status, out)
        assert out["error"]["message"].startswith(field), out
        if "secret" in body:
            assert body["secret"][6:] not in out["error"]["message"], "secrets are not echoed"
    status, out = call(endpoint, "POST", f"/v1/queues/{queue}/subscriptions/nope/rotate-secret", {})
    assert status == 404, out

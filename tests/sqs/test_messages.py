"""Message actions through boto3: send (MD5s checked independently), receive, delete, visibility."""

import base64
import threading
import time

import pytest
from botocore.exceptions import ClientError

from sqs_helpers import ACCOUNT, counts, receive_until, unique
from sqs_md5 import md5_of_attributes, md5_of_body

ATTRS = {
    "s": {"DataType": "String", "StringValue": "héllo wörld"},
    "n": {"DataType": "Number", "StringValue": "-12.5e3"},
    "b": {"DataType": "Binary", "BinaryValue": bytes(range(256))},
    "count": {"DataType": "Number.int", "StringValue": "42"},
    "doc": {"DataType": "String.json", "StringValue": '{"k": [1, 2]}'},
    "blob": {"DataType": "Binary.gzip", "BinaryValue": b"\x1f\x8b\x08\x00"},
}


def error_code(excinfo) -> str:
    return excinfo.value.response["Error"]["Code"]


def test_md5_helper_matches_known_digests():
    # md5("hello") from RFC 1321 tooling; the attribute vector is the encoding spelled out by hand.
    assert md5_of_body("hello") == "5d41402abc4b2a76b9719d911017c592"
    import hashlib

    raw = b"\x00\x00\x00\x01a" + b"\x00\x00\x00\x06String" + b"\x01" + b"\x00\x00\x00\x01x"
    assert md5_of_attributes({"a": {"DataType": "String", "StringValue": "x"}}) == hashlib.md5(raw).hexdigest()
    assert md5_of_attributes({}) is None


# ---------- SendMessage ----------


def test_send_message_md5s(sqs, queue):
    body = "the body ✓ 𝄞"
    r = sqs.send_message(QueueUrl=queue, MessageBody=body, MessageAttributes=ATTRS)
    assert r["MD5OfMessageBody"] == md5_of_body(body)
    assert r["MD5OfMessageAttributes"] == md5_of_attributes(ATTRS)
    assert r["MessageId"]


def test_send_message_without_attributes_has_no_attribute_md5(sqs, queue):
    r = sqs.send_message(QueueUrl=queue, MessageBody="plain")
    assert r["MD5OfMessageBody"] == md5_of_body("plain")
    assert "MD5OfMessageAttributes" not in r


@pytest.mark.parametrize("name", sorted(ATTRS))
def test_each_attribute_type_round_trips_with_matching_md5(sqs, queue, name):
    one = {name: ATTRS[name]}
    sent = sqs.send_message(QueueUrl=queue, MessageBody="x", MessageAttributes=one)
    assert sent["MD5OfMessageAttributes"] == md5_of_attributes(one)
    m = sqs.receive_message(QueueUrl=queue, MessageAttributeNames=["All"])["Messages"][0]
    assert m["MessageAttributes"] == one
    assert m["MD5OfMessageAttributes"] == md5_of_attributes(one)


def test_send_message_system_attribute_trace_header(sqs, queue):
    trace = "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"
    r = sqs.send_message(
        QueueUrl=queue,
        MessageBody="traced",
        MessageSystemAttributes={"AWSTraceHeader": {"DataType": "String", "StringValue": trace}},
    )
    assert r["MD5OfMessageSystemAttributes"] == md5_of_attributes(
        {"AWSTraceHeader": {"DataType": "String", "StringValue": trace}}
    )
    m = sqs.receive_message(QueueUrl=queue, MessageSystemAttributeNames=["AWSTraceHeader"])["Messages"][0]
    assert m["Attributes"] == {"AWSTraceHeader": trace}


def test_send_message_to_missing_queue(sqs, endpoint):
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.send_message(QueueUrl=f"{endpoint}/{ACCOUNT}/{unique('nope')}", MessageBody="x")


def test_send_empty_body_is_missing_parameter(sqs, queue):
    with pytest.raises(ClientError) as e:
        sqs.send_message(QueueUrl=queue, MessageBody="")
    assert error_code(e) == "MissingParameter"


def test_send_invalid_characters(sqs, queue):
    with pytest.raises(sqs.exceptions.InvalidMessageContents):
        sqs.send_message(QueueUrl=queue, MessageBody="bad \x00 char")
    with pytest.raises(sqs.exceptions.InvalidMessageContents):
        sqs.send_message(QueueUrl=queue, MessageBody="bad \x08 char")


def test_message_over_maximum_message_size(sqs, make_queue):
    url = make_queue(attributes={"MaximumMessageSize": 1024})
    sqs.send_message(QueueUrl=url, MessageBody="a" * 1024)
    with pytest.raises(ClientError) as e:
        sqs.send_message(QueueUrl=url, MessageBody="a" * 1025)
    assert error_code(e) == "InvalidParameterValue"
    # Attributes count towards the size: name + type + value.
    attrs = {"k": {"DataType": "String", "StringValue": "v" * 10}}  # 1 + 6 + 10 = 17 bytes
    sqs.send_message(QueueUrl=url, MessageBody="a" * (1024 - 17), MessageAttributes=attrs)
    with pytest.raises(ClientError) as e:
        sqs.send_message(QueueUrl=url, MessageBody="a" * (1024 - 16), MessageAttributes=attrs)
    assert error_code(e) == "InvalidParameterValue"


def test_large_message_at_default_limit(sqs, queue):
    body = "z" * 262144
    r = sqs.send_message(QueueUrl=queue, MessageBody=body)
    assert r["MD5OfMessageBody"] == md5_of_body(body)
    m = sqs.receive_message(QueueUrl=queue)["Messages"][0]
    assert m["Body"] == body and m["MD5OfBody"] == md5_of_body(body)


@pytest.mark.parametrize(
    "attrs",
    [
        {"AWS.reserved": {"DataType": "String", "StringValue": "x"}},
        {"amazon.reserved": {"DataType": "String", "StringValue": "x"}},
        {".lead": {"DataType": "String", "StringValue": "x"}},
        {"trail.": {"DataType": "String", "StringValue": "x"}},
        {"dou..ble": {"DataType": "String", "StringValue": "x"}},
        {"sp ace": {"DataType": "String", "StringValue": "x"}},
        {"k": {"DataType": "Integer", "StringValue": "1"}},
        {"k": {"DataType": "Number", "StringValue": "not-a-number"}},
        {"k": {"DataType": "String", "StringValue": ""}},
        {"k": {"DataType": "Binary", "StringValue": "x"}},
        {f"k{i}": {"DataType": "String", "StringValue": "x"} for i in range(11)},
    ],
)
def test_send_invalid_message_attributes(sqs, queue, attrs):
    with pytest.raises(ClientError) as e:
        sqs.send_message(QueueUrl=queue, MessageBody="x", MessageAttributes=attrs)
    assert error_code(e) == "InvalidParameterValue"


def test_ten_message_attributes_are_allowed(sqs, queue):
    attrs = {f"k{i}": {"DataType": "String", "StringValue": str(i)} for i in range(10)}
    r = sqs.send_message(QueueUrl=queue, MessageBody="x", MessageAttributes=attrs)
    assert r["MD5OfMessageAttributes"] == md5_of_attributes(attrs)


def test_send_message_delay_seconds(sqs, queue):
    sqs.send_message(QueueUrl=queue, MessageBody="later", DelaySeconds=1)
    assert counts(sqs, queue)["delayed"] == 1
    assert "Messages" not in sqs.receive_message(QueueUrl=queue)
    got = receive_until(sqs, queue, 1, timeout=10)
    assert [m["Body"] for m in got] == ["later"]


def test_send_message_delay_is_capped_at_900_seconds_as_in_sqs(sqs, queue):
    sqs.send_message(QueueUrl=queue, MessageBody="x", DelaySeconds=900)
    assert counts(sqs, queue)["delayed"] == 1
    with pytest.raises(ClientError) as e:
        sqs.send_message(QueueUrl=queue, MessageBody="x", DelaySeconds=901)
    assert error_code(e) == "InvalidParameterValue"
    assert "DelaySeconds must be >= 0 and <= 900" in e.value.response["Error"]["Message"]
    # Per entry in a batch.
    r = sqs.send_message_batch(QueueUrl=queue, Entries=[
        {"Id": "ok", "MessageBody": "a", "DelaySeconds": 900},
        {"Id": "late", "MessageBody": "b", "DelaySeconds": 901}])
    assert [e["Id"] for e in r["Successful"]] == ["ok"]
    assert [(e["Id"], e["Code"]) for e in r["Failed"]] == [("late", "InvalidParameterValue")]


def test_deduplication_id_on_standard_queue_is_invalid(sqs, queue):
    with pytest.raises(ClientError) as e:
        sqs.send_message(QueueUrl=queue, MessageBody="x", MessageDeduplicationId="d")
    assert error_code(e) == "InvalidParameterValue"


# ---------- SendMessageBatch ----------


def test_send_message_batch(sqs, queue):
    entries = [
        {"Id": "plain", "MessageBody": "one"},
        {"Id": "with-attrs", "MessageBody": "two", "MessageAttributes": ATTRS},
        {"Id": "delayed_3", "MessageBody": "three", "DelaySeconds": 60,
         "MessageAttributes": {"n": ATTRS["n"]}},
    ]
    r = sqs.send_message_batch(QueueUrl=queue, Entries=entries)
    assert r.get("Failed", []) == []
    by_id = {e["Id"]: e for e in r["Successful"]}
    assert set(by_id) == {"plain", "with-attrs", "delayed_3"}
    for e in entries:
        s = by_id[e["Id"]]
        assert s["MD5OfMessageBody"] == md5_of_body(e["MessageBody"])
        assert s.get("MD5OfMessageAttributes") == md5_of_attributes(e.get("MessageAttributes", {}))
        assert s["MessageId"]
    assert len({s["MessageId"] for s in r["Successful"]}) == 3
    assert counts(sqs, queue) == {"visible": 2, "inflight": 0, "delayed": 1}


def test_send_message_batch_partial_failure(sqs, queue):
    r = sqs.send_message_batch(
        QueueUrl=queue,
        Entries=[
            {"Id": "good", "MessageBody": "ok"},
            {"Id": "empty", "MessageBody": ""},
            {"Id": "badattr", "MessageBody": "x",
             "MessageAttributes": {"k": {"DataType": "Number", "StringValue": "nan?"}}},
        ],
    )
    assert [s["Id"] for s in r["Successful"]] == ["good"]
    failed = {f["Id"]: f for f in r["Failed"]}
    assert set(failed) == {"empty", "badattr"}
    assert failed["empty"]["Code"] == "MissingParameter"
    assert failed["badattr"]["Code"] == "InvalidParameterValue"
    assert all(f["SenderFault"] is True for f in r["Failed"])
    assert counts(sqs, queue)["visible"] == 1


def test_send_message_batch_errors(sqs, queue):
    with pytest.raises(sqs.exceptions.EmptyBatchRequest):
        sqs.send_message_batch(QueueUrl=queue, Entries=[])
    with pytest.raises(sqs.exceptions.TooManyEntriesInBatchRequest):
        sqs.send_message_batch(
            QueueUrl=queue, Entries=[{"Id": f"m{i}", "MessageBody": "x"} for i in range(11)]
        )
    with pytest.raises(sqs.exceptions.BatchEntryIdsNotDistinct):
        sqs.send_message_batch(
            QueueUrl=queue,
            Entries=[{"Id": "same", "MessageBody": "a"}, {"Id": "same", "MessageBody": "b"}],
        )
    for bad_id in ["has space", "dot.id", "x" * 81]:
        with pytest.raises(sqs.exceptions.InvalidBatchEntryId):
            sqs.send_message_batch(QueueUrl=queue, Entries=[{"Id": bad_id, "MessageBody": "a"}])
    assert counts(sqs, queue)["visible"] == 0


def test_send_message_batch_too_long(sqs, make_queue):
    # Since 2025 a batch may carry 1 MiB in total, whatever the queue's MaximumMessageSize.
    url = make_queue(attributes={"MaximumMessageSize": 1024})
    r = sqs.send_message_batch(
        QueueUrl=url, Entries=[{"Id": f"m{i}", "MessageBody": "x" * 300} for i in range(4)])
    assert len(r["Successful"]) == 4
    big = make_queue()
    with pytest.raises(sqs.exceptions.BatchRequestTooLong) as e:
        sqs.send_message_batch(
            QueueUrl=big,
            Entries=[{"Id": f"m{i}", "MessageBody": "x" * 300_000} for i in range(4)],
        )
    assert "cannot be longer than 1048576 bytes" in e.value.response["Error"]["Message"]


def test_one_mebibyte_messages_by_default(sqs, queue):
    a = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["MaximumMessageSize"])
    assert a["Attributes"]["MaximumMessageSize"] == "1048576"
    sqs.send_message(QueueUrl=queue, MessageBody="x" * 1_048_576)
    with pytest.raises(ClientError) as e:
        sqs.send_message(QueueUrl=queue, MessageBody="x" * 1_048_577)
    assert "shorter than 1048576 bytes" in e.value.response["Error"]["Message"]


def test_send_message_batch_to_missing_queue(sqs, endpoint):
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.send_message_batch(
            QueueUrl=f"{endpoint}/{ACCOUNT}/{unique('nope')}",
            Entries=[{"Id": "a", "MessageBody": "x"}],
        )


# ---------- ReceiveMessage ----------


def test_receive_message_shape_and_md5(sqs, queue):
    sent = sqs.send_message(QueueUrl=queue, MessageBody="hello", MessageAttributes=ATTRS)
    r = sqs.receive_message(QueueUrl=queue, MessageAttributeNames=["All"])
    (m,) = r["Messages"]
    assert m["MessageId"] == sent["MessageId"]
    assert m["Body"] == "hello"
    assert m["MD5OfBody"] == md5_of_body("hello")
    assert m["MessageAttributes"] == ATTRS
    assert m["MD5OfMessageAttributes"] == md5_of_attributes(ATTRS)
    assert m["ReceiptHandle"]
    assert "Attributes" not in m  # no system attributes asked for


def test_receive_from_empty_queue(sqs, queue):
    assert "Messages" not in sqs.receive_message(QueueUrl=queue)


def test_receive_max_number_of_messages(sqs, queue):
    sqs.send_message_batch(
        QueueUrl=queue, Entries=[{"Id": f"m{i}", "MessageBody": f"b{i}"} for i in range(10)]
    )
    sqs.send_message_batch(
        QueueUrl=queue, Entries=[{"Id": f"m{i}", "MessageBody": f"c{i}"} for i in range(2)]
    )
    assert len(sqs.receive_message(QueueUrl=queue)["Messages"]) == 1
    assert len(sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=3)["Messages"]) == 3
    got = receive_until(sqs, queue, 8, timeout=5, VisibilityTimeout=60)
    assert len(got) == 8
    assert "Messages" not in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"MaxNumberOfMessages": 11},
        {"MaxNumberOfMessages": 0},
        {"WaitTimeSeconds": 21},
        {"WaitTimeSeconds": -1},
        {"VisibilityTimeout": 43201},
        {"VisibilityTimeout": -1},
    ],
)
def test_receive_out_of_range_parameters(sqs, queue, kwargs):
    with pytest.raises(ClientError) as e:
        sqs.receive_message(QueueUrl=queue, **kwargs)
    assert error_code(e) == "InvalidParameterValue"


def test_receive_unknown_system_attribute_name(sqs, queue):
    with pytest.raises(sqs.exceptions.InvalidAttributeName):
        sqs.receive_message(QueueUrl=queue, MessageSystemAttributeNames=["Bogus"])


def test_receive_from_missing_queue(sqs, endpoint):
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.receive_message(QueueUrl=f"{endpoint}/{ACCOUNT}/{unique('nope')}")


def test_receive_visibility_timeout(sqs, queue):
    sqs.send_message(QueueUrl=queue, MessageBody="v")
    first = sqs.receive_message(QueueUrl=queue, VisibilityTimeout=1)["Messages"][0]
    assert "Messages" not in sqs.receive_message(QueueUrl=queue)
    assert counts(sqs, queue)["inflight"] == 1
    again = receive_until(sqs, queue, 1, timeout=10, AttributeNames=["ApproximateReceiveCount"])
    assert len(again) == 1
    assert again[0]["MessageId"] == first["MessageId"]
    assert again[0]["Attributes"]["ApproximateReceiveCount"] == "2"
    assert again[0]["ReceiptHandle"] != first["ReceiptHandle"]


def test_receive_visibility_timeout_zero(sqs, queue):
    sqs.send_message(QueueUrl=queue, MessageBody="v0")
    sqs.receive_message(QueueUrl=queue, VisibilityTimeout=0)
    m = sqs.receive_message(QueueUrl=queue, AttributeNames=["ApproximateReceiveCount"])["Messages"][0]
    assert m["Attributes"]["ApproximateReceiveCount"] == "2"


def test_system_attributes_via_attribute_names(sqs, queue):
    before_ms = int(time.time() * 1000) - 5000
    sqs.send_message(QueueUrl=queue, MessageBody="sys")
    m = sqs.receive_message(
        QueueUrl=queue,
        AttributeNames=["ApproximateReceiveCount", "SentTimestamp",
                        "ApproximateFirstReceiveTimestamp", "SenderId"],
        VisibilityTimeout=0,
    )["Messages"][0]
    a = m["Attributes"]
    assert set(a) == {"ApproximateReceiveCount", "SentTimestamp",
                      "ApproximateFirstReceiveTimestamp", "SenderId"}
    assert a["ApproximateReceiveCount"] == "1"
    sent = int(a["SentTimestamp"])
    first = int(a["ApproximateFirstReceiveTimestamp"])
    assert before_ms <= sent <= first <= int(time.time() * 1000) + 5000  # milliseconds
    assert a["SenderId"] == ACCOUNT
    # The first receive time stays put on later receives.
    m2 = sqs.receive_message(QueueUrl=queue, AttributeNames=["All"])["Messages"][0]
    assert m2["Attributes"]["ApproximateFirstReceiveTimestamp"] == str(first)
    assert m2["Attributes"]["ApproximateReceiveCount"] == "2"


def test_system_attributes_via_message_system_attribute_names(sqs, queue):
    sqs.send_message(QueueUrl=queue, MessageBody="sys2")
    m = sqs.receive_message(
        QueueUrl=queue, MessageSystemAttributeNames=["SentTimestamp"], VisibilityTimeout=0
    )["Messages"][0]
    assert set(m["Attributes"]) == {"SentTimestamp"}
    m = sqs.receive_message(QueueUrl=queue, MessageSystemAttributeNames=["All"])["Messages"][0]
    assert {"ApproximateReceiveCount", "SentTimestamp", "ApproximateFirstReceiveTimestamp",
            "SenderId"} <= set(m["Attributes"])
    assert m["Attributes"]["ApproximateReceiveCount"] == "2"


FILTER_ATTRS = {
    "foo.a": {"DataType": "String", "StringValue": "1"},
    "foo.b": {"DataType": "Number", "StringValue": "2"},
    "bar": {"DataType": "String", "StringValue": "3"},
    "baz": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
}


@pytest.mark.parametrize(
    "names,expected",
    [
        (["All"], {"foo.a", "foo.b", "bar", "baz"}),
        ([".*"], {"foo.a", "foo.b", "bar", "baz"}),
        (["foo.*"], {"foo.a", "foo.b"}),
        (["bar"], {"bar"}),
        (["bar", "baz"], {"bar", "baz"}),
        (["foo.a", "nothing"], {"foo.a"}),
        (["nothing"], set()),
        ([], set()),
    ],
)
def test_receive_message_attribute_name_filters(sqs, queue, names, expected):
    sqs.send_message(QueueUrl=queue, MessageBody="filters", MessageAttributes=FILTER_ATTRS)
    kwargs = {"MessageAttributeNames": names} if names else {}
    m = sqs.receive_message(QueueUrl=queue, **kwargs)["Messages"][0]
    got = m.get("MessageAttributes", {})
    assert set(got) == expected
    want = {k: FILTER_ATTRS[k] for k in expected}
    assert got == want
    # The digest covers exactly the attributes returned.
    assert m.get("MD5OfMessageAttributes") == md5_of_attributes(want)


def test_long_poll_returns_when_a_message_arrives(sqs, queue, endpoint):
    from sqs_helpers import make_client

    other = make_client(endpoint)

    def send_later():
        time.sleep(0.5)
        other.send_message(QueueUrl=queue, MessageBody="wake up")

    t = threading.Thread(target=send_later)
    start = time.monotonic()
    t.start()
    r = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=10)
    elapsed = time.monotonic() - start
    t.join()
    assert [m["Body"] for m in r["Messages"]] == ["wake up"]
    assert elapsed < 8, f"long poll took {elapsed:.1f}s for a message sent after 0.5 s"


def test_long_poll_on_empty_queue_waits_then_returns_nothing(sqs, queue):
    start = time.monotonic()
    r = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1)
    elapsed = time.monotonic() - start
    assert "Messages" not in r
    assert elapsed >= 0.8


def test_queue_receive_message_wait_time_seconds(sqs, make_queue, endpoint):
    from sqs_helpers import make_client

    url = make_queue(attributes={"ReceiveMessageWaitTimeSeconds": 10})
    other = make_client(endpoint)

    def send_later():
        time.sleep(0.5)
        other.send_message(QueueUrl=url, MessageBody="queue-level wait")

    t = threading.Thread(target=send_later)
    t.start()
    r = sqs.receive_message(QueueUrl=url)  # no WaitTimeSeconds: the queue's 10 s applies
    t.join()
    assert [m["Body"] for m in r["Messages"]] == ["queue-level wait"]
    # WaitTimeSeconds=0 overrides the queue's wait: an immediate empty answer.
    start = time.monotonic()
    assert "Messages" not in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0)
    assert time.monotonic() - start < 5


def test_long_poll_wakes_when_a_delay_ends(sqs, queue):
    sqs.send_message(QueueUrl=queue, MessageBody="delayed", DelaySeconds=1)
    start = time.monotonic()
    r = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=10)
    assert [m["Body"] for m in r.get("Messages", [])] == ["delayed"]
    assert time.monotonic() - start < 8


def test_long_poll_wakes_when_visibility_expires(sqs, queue):
    sqs.send_message(QueueUrl=queue, MessageBody="lease")
    sqs.receive_message(QueueUrl=queue, VisibilityTimeout=1)
    start = time.monotonic()
    r = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=10)
    assert [m["Body"] for m in r.get("Messages", [])] == ["lease"]
    assert time.monotonic() - start < 8


def test_long_poll_wakes_on_change_visibility_zero(sqs, queue, endpoint):
    from sqs_helpers import make_client

    other = make_client(endpoint)
    sqs.send_message(QueueUrl=queue, MessageBody="released")
    m = sqs.receive_message(QueueUrl=queue, VisibilityTimeout=60)["Messages"][0]

    def release_later():
        time.sleep(0.5)
        other.change_message_visibility(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"],
                                        VisibilityTimeout=0)

    t = threading.Thread(target=release_later)
    start = time.monotonic()
    t.start()
    r = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=10)
    t.join()
    assert [x["Body"] for x in r.get("Messages", [])] == ["released"]
    assert time.monotonic() - start < 8


def test_long_poll_on_a_queue_deleted_meanwhile(sqs, endpoint):
    from sqs_helpers import make_client

    other = make_client(endpoint)
    url = sqs.create_queue(QueueName=unique("gone"))["QueueUrl"]

    def delete_later():
        time.sleep(0.5)
        other.delete_queue(QueueUrl=url)

    t = threading.Thread(target=delete_later)
    start = time.monotonic()
    t.start()
    try:
        r = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=10)
        assert "Messages" not in r
    except sqs.exceptions.QueueDoesNotExist:
        pass
    t.join()
    assert time.monotonic() - start < 15


# ---------- DeleteMessage ----------


def test_delete_message(sqs, queue):
    sqs.send_message(QueueUrl=queue, MessageBody="bye")
    m = sqs.receive_message(QueueUrl=queue, VisibilityTimeout=1)["Messages"][0]
    sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
    assert counts(sqs, queue) == {"visible": 0, "inflight": 0, "delayed": 0}
    # Deleting again is not an error (SQS deletes are idempotent).
    sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
    time.sleep(1.2)
    assert "Messages" not in sqs.receive_message(QueueUrl=queue)


def test_delete_with_stale_receipt_succeeds_without_deleting(sqs, queue):
    sqs.send_message(QueueUrl=queue, MessageBody="twice")
    old = sqs.receive_message(QueueUrl=queue, VisibilityTimeout=0)["Messages"][0]["ReceiptHandle"]
    new = sqs.receive_message(QueueUrl=queue, VisibilityTimeout=60)["Messages"][0]["ReceiptHandle"]
    assert old != new
    sqs.delete_message(QueueUrl=queue, ReceiptHandle=old)  # succeeds ...
    assert counts(sqs, queue)["inflight"] == 1  # ... but the message stays
    sqs.delete_message(QueueUrl=queue, ReceiptHandle=new)
    assert counts(sqs, queue)["inflight"] == 0


@pytest.mark.parametrize("handle", ["garbage", "not base64 !!", "AAAA"])
def test_delete_with_invalid_receipt(sqs, queue, handle):
    with pytest.raises(sqs.exceptions.ReceiptHandleIsInvalid):
        sqs.delete_message(QueueUrl=queue, ReceiptHandle=handle)


def test_delete_message_missing_parameters(sqs, queue):
    with pytest.raises(ClientError) as e:
        sqs.delete_message(QueueUrl=queue, ReceiptHandle="")
    assert error_code(e) == "MissingParameter"


def test_delete_message_on_missing_queue(sqs, queue, endpoint):
    sqs.send_message(QueueUrl=queue, MessageBody="x")
    h = sqs.receive_message(QueueUrl=queue)["Messages"][0]["ReceiptHandle"]
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.delete_message(QueueUrl=f"{endpoint}/{ACCOUNT}/{unique('nope')}", ReceiptHandle=h)


# ---------- DeleteMessageBatch ----------


def test_delete_message_batch(sqs, queue):
    sqs.send_message_batch(
        QueueUrl=queue, Entries=[{"Id": f"m{i}", "MessageBody": str(i)} for i in range(3)]
    )
    msgs = receive_until(sqs, queue, 3, timeout=5, VisibilityTimeout=60)
    assert len(msgs) == 3
    entries = [{"Id": f"d{i}", "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)]
    entries.append({"Id": "bad", "ReceiptHandle": "garbage"})
    r = sqs.delete_message_batch(QueueUrl=queue, Entries=entries)
    assert sorted(s["Id"] for s in r["Successful"]) == ["d0", "d1", "d2"]
    (f,) = r["Failed"]
    assert f["Id"] == "bad" and f["Code"] == "ReceiptHandleIsInvalid" and f["SenderFault"] is True
    assert counts(sqs, queue) == {"visible": 0, "inflight": 0, "delayed": 0}


def test_delete_message_batch_errors(sqs, queue):
    with pytest.raises(sqs.exceptions.EmptyBatchRequest):
        sqs.delete_message_batch(QueueUrl=queue, Entries=[])
    with pytest.raises(sqs.exceptions.TooManyEntriesInBatchRequest):
        sqs.delete_message_batch(
            QueueUrl=queue, Entries=[{"Id": f"e{i}", "ReceiptHandle": "x"} for i in range(11)]
        )
    with pytest.raises(sqs.exceptions.BatchEntryIdsNotDistinct):
        sqs.delete_message_batch(
            QueueUrl=queue,
            Entries=[{"Id": "a", "ReceiptHandle": "x"}, {"Id": "a", "ReceiptHandle": "y"}],
        )
    with pytest.raises(sqs.exceptions.InvalidBatchEntryId):
        sqs.delete_message_batch(QueueUrl=queue, Entries=[{"Id": "a b", "ReceiptHandle": "x"}])


# ---------- ChangeMessageVisibility ----------


def test_change_message_visibility(sqs, queue):
    sqs.send_message(QueueUrl=queue, MessageBody="cv")
    m = sqs.receive_message(QueueUrl=queue, VisibilityTimeout=60)["Messages"][0]
    assert "Messages" not in sqs.receive_message(QueueUrl=queue)
    sqs.change_message_visibility(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
    again = sqs.receive_message(QueueUrl=queue, VisibilityTimeout=60)["Messages"][0]
    assert again["MessageId"] == m["MessageId"]
    # Extend the new lease; the message stays hidden.
    sqs.change_message_visibility(
        QueueUrl=queue, ReceiptHandle=again["ReceiptHandle"], VisibilityTimeout=120
    )
    assert "Messages" not in sqs.receive_message(QueueUrl=queue)


def test_change_message_visibility_errors(sqs, queue):
    sqs.send_message(QueueUrl=queue, MessageBody="cv")
    m = sqs.receive_message(QueueUrl=queue, VisibilityTimeout=60)["Messages"][0]
    with pytest.raises(sqs.exceptions.ReceiptHandleIsInvalid):
        sqs.change_message_visibility(QueueUrl=queue, ReceiptHandle="garbage", VisibilityTimeout=1)
    with pytest.raises(ClientError) as e:
        sqs.change_message_visibility(
            QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=43201
        )
    assert error_code(e) == "InvalidParameterValue"
    sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
    # The message is gone: not in flight any more.
    with pytest.raises(ClientError) as e:
        sqs.change_message_visibility(
            QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=10
        )
    assert error_code(e) in ("AWS.SimpleQueueService.MessageNotInflight", "InvalidParameterValue")


# ---------- ChangeMessageVisibilityBatch ----------


def test_change_message_visibility_batch(sqs, queue):
    sqs.send_message_batch(
        QueueUrl=queue, Entries=[{"Id": f"m{i}", "MessageBody": str(i)} for i in range(2)]
    )
    msgs = receive_until(sqs, queue, 2, timeout=5, VisibilityTimeout=60)
    assert len(msgs) == 2
    r = sqs.change_message_visibility_batch(
        QueueUrl=queue,
        Entries=[
            {"Id": "show", "ReceiptHandle": msgs[0]["ReceiptHandle"], "VisibilityTimeout": 0},
            {"Id": "keep", "ReceiptHandle": msgs[1]["ReceiptHandle"], "VisibilityTimeout": 300},
            {"Id": "bad", "ReceiptHandle": "garbage", "VisibilityTimeout": 0},
            {"Id": "range", "ReceiptHandle": msgs[1]["ReceiptHandle"], "VisibilityTimeout": 50000},
        ],
    )
    assert sorted(s["Id"] for s in r["Successful"]) == ["keep", "show"]
    failed = {f["Id"]: f["Code"] for f in r["Failed"]}
    assert failed == {"bad": "ReceiptHandleIsInvalid", "range": "InvalidParameterValue"}
    visible = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    assert [m["MessageId"] for m in visible] == [msgs[0]["MessageId"]]


def test_change_message_visibility_batch_errors(sqs, queue):
    with pytest.raises(sqs.exceptions.EmptyBatchRequest):
        sqs.change_message_visibility_batch(QueueUrl=queue, Entries=[])
    with pytest.raises(sqs.exceptions.TooManyEntriesInBatchRequest):
        sqs.change_message_visibility_batch(
            QueueUrl=queue,
            Entries=[{"Id": f"e{i}", "ReceiptHandle": "x", "VisibilityTimeout": 1} for i in range(11)],
        )
    with pytest.raises(sqs.exceptions.BatchEntryIdsNotDistinct):
        sqs.change_message_visibility_batch(
            QueueUrl=queue,
            Entries=[{"Id": "a", "ReceiptHandle": "x", "VisibilityTimeout": 1}] * 2,
        )


# ---------- binary payloads survive both ways ----------


def test_binary_attribute_is_base64_on_the_wire(sqs, queue, endpoint):
    import requests

    sqs.send_message(
        QueueUrl=queue, MessageBody="bin", MessageAttributes={"b": ATTRS["b"]}
    )
    r = requests.post(
        endpoint + "/",
        json={"QueueUrl": queue, "MessageAttributeNames": ["All"]},
        headers={"X-Amz-Target": "AmazonSQS.ReceiveMessage",
                 "Content-Type": "application/x-amz-json-1.0"},
        timeout=10,
    )
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/x-amz-json-1.0"
    attr = r.json()["Messages"][0]["MessageAttributes"]["b"]
    assert attr == {"DataType": "Binary", "BinaryValue": base64.b64encode(bytes(range(256))).decode()}


# ---------- regressions: bugs found by this suite, now fixed ----------


def test_attribute_value_with_invalid_characters_is_rejected(sqs, queue):
    with pytest.raises(ClientError) as e:
        sqs.send_message(
            QueueUrl=queue, MessageBody="x",
            MessageAttributes={"a": {"DataType": "String", "StringValue": "bad\x01char"}},
        )
    assert error_code(e) in ("InvalidParameterValue", "InvalidMessageContents")


def test_receive_request_attempt_id_is_ignored_on_standard_queues(sqs, queue):
    sqs.send_message(QueueUrl=queue, MessageBody="one")
    sqs.send_message(QueueUrl=queue, MessageBody="two")
    first = sqs.receive_message(QueueUrl=queue, ReceiveRequestAttemptId="same")["Messages"][0]
    sqs.delete_message(QueueUrl=queue, ReceiptHandle=first["ReceiptHandle"])
    second = sqs.receive_message(QueueUrl=queue, ReceiveRequestAttemptId="same")["Messages"][0]
    assert second["MessageId"] != first["MessageId"]

"""FIFO queues through boto3: groups, ordering, group locking, deduplication, sequence numbers."""

import threading

import botocore.exceptions
import pytest

from sqs_helpers import queue_arn, unique


def fifo(sqs, content_dedup=False, **attrs):
    attributes = {"FifoQueue": "true", **attrs}
    if content_dedup:
        attributes["ContentBasedDeduplication"] = "true"
    return sqs.create_queue(QueueName=unique("f") + ".fifo", Attributes=attributes)["QueueUrl"]


def bodies(msgs):
    return [m["Body"] for m in msgs]


def test_fifo_queue_attributes(sqs):
    url = fifo(sqs, content_dedup=True)
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["FifoQueue"] == "true"
    assert attrs["ContentBasedDeduplication"] == "true"
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"ContentBasedDeduplication": "false"})
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ContentBasedDeduplication"])["Attributes"]
    assert attrs["ContentBasedDeduplication"] == "false"


def test_group_id_is_required_and_dedup_id_or_content_dedup(sqs):
    url = fifo(sqs)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sqs.send_message(QueueUrl=url, MessageBody="x", MessageDeduplicationId="d")
    assert e.value.response["Error"]["Code"] == "MissingParameter"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sqs.send_message(QueueUrl=url, MessageBody="x", MessageGroupId="g")
    assert e.value.response["Error"]["Code"] == "InvalidParameterValue"
    assert "ContentBasedDeduplication" in e.value.response["Error"]["Message"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sqs.send_message(QueueUrl=url, MessageBody="x", MessageGroupId="g", MessageDeduplicationId="d", DelaySeconds=5)
    assert e.value.response["Error"]["Code"] == "InvalidParameterValue"
    ok = sqs.send_message(QueueUrl=url, MessageBody="x", MessageGroupId="g", MessageDeduplicationId="d")
    assert ok["SequenceNumber"].isdigit()


def test_deduplication_id_and_content_based(sqs):
    url = fifo(sqs, content_dedup=True)
    a = sqs.send_message(QueueUrl=url, MessageBody="one", MessageGroupId="g", MessageDeduplicationId="same")
    b = sqs.send_message(QueueUrl=url, MessageBody="two", MessageGroupId="g", MessageDeduplicationId="same")
    assert a["MessageId"] == b["MessageId"], "a repeat within 5 minutes is accepted but not stored"
    c = sqs.send_message(QueueUrl=url, MessageBody="body", MessageGroupId="g")
    d = sqs.send_message(QueueUrl=url, MessageBody="body", MessageGroupId="g")
    assert c["MessageId"] == d["MessageId"], "content-based deduplication (SHA-256 of the body)"
    batch = sqs.send_message_batch(
        QueueUrl=url,
        Entries=[
            {"Id": "a", "MessageBody": "b1", "MessageGroupId": "g", "MessageDeduplicationId": "x1"},
            {"Id": "b", "MessageBody": "b2", "MessageGroupId": "g", "MessageDeduplicationId": "x1"},
        ],
    )
    ids = {e["Id"]: e["MessageId"] for e in batch["Successful"]}
    assert ids["a"] == ids["b"]
    assert all(e["SequenceNumber"].isdigit() for e in batch["Successful"])
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == "3"
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"])["Messages"]
    assert bodies(got) == ["one", "body", "b1"]
    assert got[0]["Attributes"]["MessageDeduplicationId"] == "same"
    assert got[0]["Attributes"]["MessageGroupId"] == "g"
    seqs = [int(m["Attributes"]["SequenceNumber"]) for m in got]
    assert seqs == sorted(seqs), "sequence numbers increase in publish order"


def test_order_within_group_and_group_locking(sqs):
    url = fifo(sqs, content_dedup=True)
    for body, group in [("a1", "A"), ("a2", "A"), ("b1", "B"), ("a3", "A"), ("b2", "B")]:
        sqs.send_message(QueueUrl=url, MessageBody=body, MessageGroupId=group)
    first = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, VisibilityTimeout=30)["Messages"]
    assert bodies(first) == ["a1"]
    # Group A is held while a1 is in flight: another consumer only gets group B, in order.
    other = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30)["Messages"]
    assert bodies(other) == ["b1", "b2"]
    assert sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []) == []
    sqs.delete_message(QueueUrl=url, ReceiptHandle=first[0]["ReceiptHandle"])
    rest = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30)["Messages"]
    assert bodies(rest) == ["a2", "a3"]
    # Released (visibility 0): back at its place, before a3.
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=rest[0]["ReceiptHandle"], VisibilityTimeout=0)
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=rest[1]["ReceiptHandle"], VisibilityTimeout=0)
    again = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["ApproximateReceiveCount"])["Messages"]
    assert bodies(again) == ["a2", "a3"]
    assert [m["Attributes"]["ApproximateReceiveCount"] for m in again] == ["2", "2"]


def test_receive_request_attempt_id_replays(sqs):
    url = fifo(sqs, content_dedup=True)
    sqs.send_message(QueueUrl=url, MessageBody="m1", MessageGroupId="g1")
    sqs.send_message(QueueUrl=url, MessageBody="m2", MessageGroupId="g2")
    one = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, ReceiveRequestAttemptId="try-1")["Messages"]
    retry = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, ReceiveRequestAttemptId="try-1")["Messages"]
    assert [m["MessageId"] for m in one] == [m["MessageId"] for m in retry]
    assert one[0]["ReceiptHandle"] == retry[0]["ReceiptHandle"]
    fresh = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, ReceiveRequestAttemptId="try-2")["Messages"]
    assert bodies(fresh) == ["m2"]


def test_long_poll_wakes_for_another_group(sqs):
    url = fifo(sqs, content_dedup=True)
    result = {}

    def waiter():
        result["got"] = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=10).get("Messages", [])

    t = threading.Thread(target=waiter)
    t.start()
    sqs.send_message(QueueUrl=url, MessageBody="wake", MessageGroupId="g")
    t.join(timeout=15)
    assert not t.is_alive()
    # The message is either in the waiter's hands or, if the send raced ahead, still ready.
    got = result.get("got") or sqs.receive_message(QueueUrl=url).get("Messages", [])
    assert bodies(got) == ["wake"]


def test_fifo_dead_letter_queue_must_be_fifo(sqs, make_queue):
    src = fifo(sqs, content_dedup=True)
    standard = make_queue("std")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sqs.set_queue_attributes(
            QueueUrl=src,
            Attributes={"RedrivePolicy": f'{{"deadLetterTargetArn":"{queue_arn(sqs, standard)}","maxReceiveCount":"1"}}'},
        )
    assert e.value.response["Error"]["Code"] == "InvalidParameterValue"
    dlq = fifo(sqs)
    sqs.set_queue_attributes(
        QueueUrl=src,
        Attributes={"RedrivePolicy": f'{{"deadLetterTargetArn":"{queue_arn(sqs, dlq)}","maxReceiveCount":"1"}}'},
    )
    sqs.send_message(QueueUrl=src, MessageBody="poison", MessageGroupId="g")
    m = sqs.receive_message(QueueUrl=src, VisibilityTimeout=30)["Messages"][0]
    sqs.change_message_visibility(QueueUrl=src, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
    moved = sqs.receive_message(QueueUrl=dlq, AttributeNames=["All"])["Messages"]
    assert bodies(moved) == ["poison"]
    assert moved[0]["Attributes"]["MessageGroupId"] == "g"
    assert moved[0]["Attributes"]["DeadLetterQueueSourceArn"] == queue_arn(sqs, src)


def test_deduplication_id_refused_on_standard_queues(sqs, queue):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sqs.send_message(QueueUrl=queue, MessageBody="x", MessageDeduplicationId="d")
    assert e.value.response["Error"]["Code"] == "InvalidParameterValue"

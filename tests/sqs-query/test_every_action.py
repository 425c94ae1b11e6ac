"""Every SQS action over the query protocol, serialized and parsed by botocore 1.29's own query
model: a list or map element named differently from the model parses as nothing, so each
assertion on a list or map below checks an element name."""

import json
import time
import uuid

import pytest
from botocore.exceptions import ClientError


def name(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def test_queues_attributes_tags_and_permissions(q):
    url = q.create_queue(QueueName=name("qa"), Attributes={"VisibilityTimeout": "40"},
                         tags={"team": "core"})["QueueUrl"]
    assert q.get_queue_url(QueueName=url.rsplit("/", 1)[1])["QueueUrl"] == url
    assert url in q.list_queues(QueueNamePrefix=url.rsplit("/", 1)[1])["QueueUrls"]
    q.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps({"Statement": []})})
    a = q.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert a["VisibilityTimeout"] == "40" and a["MaximumMessageSize"] == "1048576"
    assert json.loads(a["Policy"]) == {"Statement": []}
    q.tag_queue(QueueUrl=url, Tags={"env": "test"})
    assert q.list_queue_tags(QueueUrl=url)["Tags"] == {"team": "core", "env": "test"}
    q.untag_queue(QueueUrl=url, TagKeys=["team"])
    assert q.list_queue_tags(QueueUrl=url)["Tags"] == {"env": "test"}
    q.add_permission(QueueUrl=url, Label="p1", AWSAccountIds=["111122223333"],
                     Actions=["SendMessage", "ReceiveMessage"])
    pol = json.loads(q.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"])["Attributes"]["Policy"])
    assert [s["Sid"] for s in pol["Statement"]] == ["p1"]
    q.remove_permission(QueueUrl=url, Label="p1")
    q.purge_queue(QueueUrl=url)
    with pytest.raises(ClientError) as e:
        q.purge_queue(QueueUrl=url)
    assert e.value.response["Error"]["Code"] == "AWS.SimpleQueueService.PurgeQueueInProgress"
    q.delete_queue(QueueUrl=url)
    with pytest.raises(q.exceptions.QueueDoesNotExist):
        q.get_queue_url(QueueName=url.rsplit("/", 1)[1])


def test_messages_batches_and_visibility(q):
    url = q.create_queue(QueueName=name("qm"))["QueueUrl"]
    attrs = {"s": {"DataType": "String", "StringValue": "v"},
             "b": {"DataType": "Binary", "BinaryValue": b"\x00\x01"}}
    sent = q.send_message(QueueUrl=url, MessageBody="one", MessageAttributes=attrs)
    assert sent["MessageId"] and sent["MD5OfMessageAttributes"]
    r = q.send_message_batch(QueueUrl=url, Entries=[
        {"Id": "a", "MessageBody": "two"}, {"Id": "b", "MessageBody": "x", "DelaySeconds": 901}])
    assert [e["Id"] for e in r["Successful"]] == ["a"]
    assert [(e["Id"], e["Code"], e["SenderFault"]) for e in r["Failed"]] == [
        ("b", "InvalidParameterValue", True)]
    got = []
    for _ in range(10):
        got += q.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"],
                                 MessageAttributeNames=["All"], VisibilityTimeout=60,
                                 WaitTimeSeconds=1).get("Messages", [])
        if len(got) == 2:
            break
    assert sorted(m["Body"] for m in got) == ["one", "two"]
    first = next(m for m in got if m["Body"] == "one")
    assert first["MessageAttributes"] == attrs
    assert first["Attributes"]["ApproximateReceiveCount"] == "1"
    q.change_message_visibility(QueueUrl=url, ReceiptHandle=got[0]["ReceiptHandle"], VisibilityTimeout=90)
    r = q.change_message_visibility_batch(QueueUrl=url, Entries=[
        {"Id": "v", "ReceiptHandle": got[1]["ReceiptHandle"], "VisibilityTimeout": 90},
        {"Id": "bad", "ReceiptHandle": "garbage", "VisibilityTimeout": 90}])
    assert [e["Id"] for e in r["Successful"]] == ["v"]
    assert [(e["Id"], e["Code"]) for e in r["Failed"]] == [("bad", "ReceiptHandleIsInvalid")]
    q.delete_message(QueueUrl=url, ReceiptHandle=got[0]["ReceiptHandle"])
    r = q.delete_message_batch(QueueUrl=url, Entries=[{"Id": "d", "ReceiptHandle": got[1]["ReceiptHandle"]}])
    assert [e["Id"] for e in r["Successful"]] == ["d"] and r.get("Failed", []) == []
    q.delete_queue(QueueUrl=url)


def test_dead_letter_sources_and_move_tasks(q):
    dlq = q.create_queue(QueueName=name("qd"))["QueueUrl"]
    arn = q.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    src = q.create_queue(QueueName=name("qs"), Attributes={"VisibilityTimeout": "1",
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": 1})})["QueueUrl"]
    assert q.list_dead_letter_source_queues(QueueUrl=dlq)["queueUrls"] == [src]
    q.send_message(QueueUrl=src, MessageBody="dead")
    assert q.receive_message(QueueUrl=src, WaitTimeSeconds=5)["Messages"]
    deadline = time.monotonic() + 20
    while q.get_queue_attributes(QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"])[
            "Attributes"]["ApproximateNumberOfMessages"] != "1":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    handle = q.start_message_move_task(SourceArn=arn, MaxNumberOfMessagesPerSecond=1)["TaskHandle"]
    tasks = q.list_message_move_tasks(SourceArn=arn, MaxResults=10)["Results"]
    assert len(tasks) == 1 and tasks[0]["SourceArn"] == arn
    if tasks[0]["Status"] == "RUNNING":
        assert tasks[0]["TaskHandle"] == handle
        try:
            assert "ApproximateNumberOfMessagesMoved" in q.cancel_message_move_task(TaskHandle=handle)
        except q.exceptions.ResourceNotFoundException:
            pass  # it finished meanwhile
    while q.list_message_move_tasks(SourceArn=arn)["Results"][0]["Status"] not in ("COMPLETED", "CANCELLED"):
        assert time.monotonic() < deadline + 20
        time.sleep(0.1)
    q.delete_queue(QueueUrl=src)
    q.delete_queue(QueueUrl=dlq)

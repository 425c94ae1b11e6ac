"""Fair queues through boto3: MessageGroupId on a standard queue (AWS, 2025).

A standard queue accepts MessageGroupId on SendMessage and SendMessageBatch, returns it in
ReceiveMessage's Attributes when asked, and its receives take turns between groups, so a quiet
group is not stuck behind a busy one. MessageDeduplicationId stays FIFO-only, as in SQS.
"""

import pytest
from botocore.exceptions import ClientError


def test_standard_queue_accepts_message_group_id_and_returns_it(sqs, queue):
    sent = sqs.send_message(QueueUrl=queue, MessageBody="tenant a", MessageGroupId="tenant-a")
    assert "SequenceNumber" not in sent, "standard queues have no sequence numbers"
    batch = sqs.send_message_batch(
        QueueUrl=queue,
        Entries=[
            {"Id": "b", "MessageBody": "tenant b", "MessageGroupId": "tenant-b"},
            {"Id": "n", "MessageBody": "no group"},
        ],
    )
    assert sorted(e["Id"] for e in batch["Successful"]) == ["b", "n"]
    assert batch.get("Failed", []) == []
    got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, AttributeNames=["All"])["Messages"]
    groups = {m["Body"]: m["Attributes"].get("MessageGroupId") for m in got}
    assert groups == {"tenant a": "tenant-a", "tenant b": "tenant-b", "no group": None}
    assert all("MessageDeduplicationId" not in m["Attributes"] for m in got)
    # Asked by name too; not returned when not asked.
    sqs.send_message(QueueUrl=queue, MessageBody="again", MessageGroupId="tenant-c")
    named = sqs.receive_message(QueueUrl=queue, MessageSystemAttributeNames=["MessageGroupId"])["Messages"]
    assert named[0]["Attributes"] == {"MessageGroupId": "tenant-c"}
    sqs.send_message(QueueUrl=queue, MessageBody="quiet", MessageGroupId="tenant-d")
    plain = sqs.receive_message(QueueUrl=queue)["Messages"]
    assert "Attributes" not in plain[0] or "MessageGroupId" not in plain[0]["Attributes"]


def test_standard_queue_still_refuses_message_deduplication_id(sqs, queue):
    with pytest.raises(ClientError) as e:
        sqs.send_message(QueueUrl=queue, MessageBody="x", MessageGroupId="g", MessageDeduplicationId="d")
    assert e.value.response["Error"]["Code"] in ("InvalidParameterValue", "InvalidParameterValueException")


def test_groups_take_turns(sqs, queue):
    for start in range(0, 50, 10):
        sqs.send_message_batch(
            QueueUrl=queue,
            Entries=[
                {"Id": str(i), "MessageBody": f"big-{i}", "MessageGroupId": "big"}
                for i in range(start, start + 10)
            ],
        )
    for i in range(3):
        sqs.send_message(QueueUrl=queue, MessageBody=f"small-{i}", MessageGroupId="small")
    first = []
    for _ in range(6):
        m = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=1, AttributeNames=["MessageGroupId"])["Messages"][0]
        sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
        first.append(m["Body"])
    assert [b for b in first if b.startswith("small")] == ["small-0", "small-1", "small-2"], first
    assert [b for b in first if b.startswith("big")] == ["big-0", "big-1", "big-2"], first

"""Dead-letter queues through boto3: RedrivePolicy, the move to the DLQ, ListDeadLetterSourceQueues,
and the message-move tasks (StartMessageMoveTask / ListMessageMoveTasks / CancelMessageMoveTask)."""

import json
import time

import pytest
from botocore.exceptions import ClientError

from sqs_helpers import ACCOUNT, counts, queue_arn, receive_until, unique


def error_code(excinfo) -> str:
    return excinfo.value.response["Error"]["Code"]


def redrive(arn: str, max_receives) -> str:
    return json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": max_receives})


def wait_for(predicate, timeout=15.0, interval=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


@pytest.fixture
def pair(sqs, make_queue):
    """A DLQ and a source queue pointing at it with maxReceiveCount 1 and VisibilityTimeout 1."""
    dlq = make_queue(prefix="dlq")
    src = make_queue(
        prefix="src",
        attributes={"VisibilityTimeout": 1, "RedrivePolicy": redrive(queue_arn(sqs, dlq), 1)},
    )
    return src, dlq


# ---------- RedrivePolicy ----------


def test_redrive_policy_round_trips(sqs, make_queue):
    dlq = make_queue(prefix="dlq")
    arn = queue_arn(sqs, dlq)
    src = make_queue(prefix="src", attributes={"RedrivePolicy": redrive(arn, 5)})
    got = sqs.get_queue_attributes(QueueUrl=src, AttributeNames=["RedrivePolicy"])["Attributes"]
    assert json.loads(got["RedrivePolicy"]) == {"deadLetterTargetArn": arn, "maxReceiveCount": 5}
    # maxReceiveCount may be given as a string, as older tools do.
    sqs.set_queue_attributes(QueueUrl=src, Attributes={"RedrivePolicy": redrive(arn, "7")})
    got = sqs.get_queue_attributes(QueueUrl=src, AttributeNames=["RedrivePolicy"])["Attributes"]
    assert json.loads(got["RedrivePolicy"])["maxReceiveCount"] == 7
    # An empty policy removes it.
    sqs.set_queue_attributes(QueueUrl=src, Attributes={"RedrivePolicy": ""})
    got = sqs.get_queue_attributes(QueueUrl=src, AttributeNames=["All"])["Attributes"]
    assert "RedrivePolicy" not in got


@pytest.mark.parametrize(
    "policy",
    [
        "not json",
        json.dumps({"maxReceiveCount": 3}),
        json.dumps({"deadLetterTargetArn": "ARN"}),
        json.dumps({"deadLetterTargetArn": "ARN", "maxReceiveCount": 0}),
        json.dumps({"deadLetterTargetArn": "ARN", "maxReceiveCount": 1001}),
        json.dumps({"deadLetterTargetArn": "not-an-arn", "maxReceiveCount": 3}),
        json.dumps({"deadLetterTargetArn": f"arn:aws:sqs:us-east-1:{ACCOUNT}:missing-dlq-x",
                    "maxReceiveCount": 3}),
        "SELF",
    ],
)
def test_invalid_redrive_policies(sqs, make_queue, policy):
    dlq = make_queue(prefix="dlq")
    src = make_queue(prefix="src")
    policy = policy.replace("ARN", queue_arn(sqs, dlq))
    if policy == "SELF":
        policy = redrive(queue_arn(sqs, src), 3)
    with pytest.raises(ClientError) as e:
        sqs.set_queue_attributes(QueueUrl=src, Attributes={"RedrivePolicy": policy})
    assert error_code(e) == "InvalidParameterValue"


# ---------- the move to the DLQ ----------


@pytest.mark.parametrize("max_receives", [1, 2])
def test_message_moves_to_dlq_after_max_receives(sqs, make_queue, max_receives):
    dlq = make_queue(prefix="dlq")
    src = make_queue(
        prefix="src",
        attributes={"VisibilityTimeout": 1,
                    "RedrivePolicy": redrive(queue_arn(sqs, dlq), max_receives)},
    )
    sent = sqs.send_message(
        QueueUrl=src, MessageBody="poison",
        MessageAttributes={"k": {"DataType": "String", "StringValue": "v"}},
    )
    for n in range(1, max_receives + 1):
        got = receive_until(sqs, src, 1, timeout=10, AttributeNames=["ApproximateReceiveCount"])
        assert len(got) == 1, f"receive #{n} got nothing"
        assert got[0]["Attributes"]["ApproximateReceiveCount"] == str(n)
        # Not deleted: its visibility (1 s) runs out.
    moved = receive_until(sqs, dlq, 1, timeout=15, AttributeNames=["All"],
                          MessageAttributeNames=["All"])
    assert len(moved) == 1, "the message never reached the DLQ"
    m = moved[0]
    assert m["MessageId"] == sent["MessageId"]
    assert m["Body"] == "poison"
    assert m["MessageAttributes"] == {"k": {"DataType": "String", "StringValue": "v"}}
    assert m["Attributes"]["DeadLetterQueueSourceArn"] == queue_arn(sqs, src)
    assert counts(sqs, src) == {"visible": 0, "inflight": 0, "delayed": 0}


def test_visibility_zero_over_the_limit_moves_to_dlq(sqs, make_queue):
    dlq = make_queue(prefix="dlq")
    src = make_queue(prefix="src", attributes={"RedrivePolicy": redrive(queue_arn(sqs, dlq), 1)})
    sqs.send_message(QueueUrl=src, MessageBody="released")
    m = sqs.receive_message(QueueUrl=src)["Messages"][0]
    sqs.change_message_visibility(QueueUrl=src, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
    moved = receive_until(sqs, dlq, 1, timeout=10)
    assert [x["Body"] for x in moved] == ["released"]
    assert counts(sqs, src) == {"visible": 0, "inflight": 0, "delayed": 0}


def test_deleted_message_does_not_move(sqs, pair):
    src, dlq = pair
    sqs.send_message(QueueUrl=src, MessageBody="fine")
    m = sqs.receive_message(QueueUrl=src)["Messages"][0]
    sqs.delete_message(QueueUrl=src, ReceiptHandle=m["ReceiptHandle"])
    time.sleep(2.5)
    assert counts(sqs, dlq)["visible"] == 0


def test_list_dead_letter_source_queues(sqs, make_queue):
    dlq = make_queue(prefix="dlq")
    arn = queue_arn(sqs, dlq)
    a = make_queue(prefix="srca", attributes={"RedrivePolicy": redrive(arn, 3)})
    b = make_queue(prefix="srcb", attributes={"RedrivePolicy": redrive(arn, 3)})
    make_queue(prefix="unrelated")
    got = sqs.list_dead_letter_source_queues(QueueUrl=dlq)["queueUrls"]
    assert sorted(got) == sorted([a, b])
    assert sqs.list_dead_letter_source_queues(QueueUrl=a)["queueUrls"] == []


def test_list_dead_letter_source_queues_of_missing_queue(sqs, endpoint):
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.list_dead_letter_source_queues(QueueUrl=f"{endpoint}/{ACCOUNT}/{unique('nope')}")


# ---------- message-move tasks ----------


def test_message_move_task_redrives_back_to_source(sqs, pair):
    src, dlq = pair
    for i in range(3):
        sqs.send_message(QueueUrl=src, MessageBody=f"m{i}")
    got = receive_until(sqs, src, 3, timeout=10)
    assert len(got) == 3
    assert wait_for(lambda: counts(sqs, dlq)["visible"] == 3), counts(sqs, dlq)

    dlq_arn = queue_arn(sqs, dlq)
    handle = sqs.start_message_move_task(SourceArn=dlq_arn)["TaskHandle"]
    assert handle
    assert counts(sqs, dlq)["visible"] == 0
    back = receive_until(sqs, src, 3, timeout=10, AttributeNames=["ApproximateReceiveCount"],
                         VisibilityTimeout=60)
    assert sorted(m["Body"] for m in back) == ["m0", "m1", "m2"]
    # Moved back with a fresh receive count.
    assert {m["Attributes"]["ApproximateReceiveCount"] for m in back} == {"1"}

    tasks = sqs.list_message_move_tasks(SourceArn=dlq_arn, MaxResults=10)["Results"]
    assert len(tasks) == 1
    t = tasks[0]
    assert t["TaskHandle"] == handle
    assert t["Status"] == "COMPLETED"
    assert t["SourceArn"] == dlq_arn
    assert t["ApproximateNumberOfMessagesMoved"] == 3
    assert "DestinationArn" not in t
    assert abs(t["StartedTimestamp"] - time.time() * 1000) < 120_000  # milliseconds

    # Tasks are complete as soon as they start: there is nothing to cancel.
    with pytest.raises(sqs.exceptions.ResourceNotFoundException):
        sqs.cancel_message_move_task(TaskHandle=handle)


def test_list_message_move_tasks_newest_first_and_max_results(sqs, pair):
    src, dlq = pair
    dlq_arn = queue_arn(sqs, dlq)
    first = sqs.start_message_move_task(SourceArn=dlq_arn, MaxNumberOfMessagesPerSecond=10)["TaskHandle"]
    second = sqs.start_message_move_task(SourceArn=dlq_arn)["TaskHandle"]
    assert first != second
    one = sqs.list_message_move_tasks(SourceArn=dlq_arn)["Results"]  # default MaxResults 1
    assert [t["TaskHandle"] for t in one] == [second]
    both = sqs.list_message_move_tasks(SourceArn=dlq_arn, MaxResults=10)["Results"]
    assert [t["TaskHandle"] for t in both] == [second, first]
    assert both[1]["MaxNumberOfMessagesPerSecond"] == 10
    assert both[0]["ApproximateNumberOfMessagesMoved"] == 0
    with pytest.raises(ClientError) as e:
        sqs.list_message_move_tasks(SourceArn=dlq_arn, MaxResults=11)
    assert error_code(e) == "InvalidParameterValue"


def test_start_message_move_task_errors(sqs, pair, make_queue):
    src, dlq = pair
    dlq_arn = queue_arn(sqs, dlq)
    # The source must be some queue's DLQ.
    with pytest.raises(ClientError) as e:
        sqs.start_message_move_task(SourceArn=queue_arn(sqs, src))
    assert error_code(e) == "InvalidParameterValue"
    # A missing source queue.
    with pytest.raises(sqs.exceptions.ResourceNotFoundException):
        sqs.start_message_move_task(SourceArn=f"arn:aws:sqs:us-east-1:{ACCOUNT}:{unique('nope')}")
    # DestinationArn is not supported yet.
    other = make_queue(prefix="dest")
    with pytest.raises(sqs.exceptions.UnsupportedOperation):
        sqs.start_message_move_task(SourceArn=dlq_arn, DestinationArn=queue_arn(sqs, other))
    # Rate limits out of range.
    with pytest.raises(ClientError) as e:
        sqs.start_message_move_task(SourceArn=dlq_arn, MaxNumberOfMessagesPerSecond=501)
    assert error_code(e) == "InvalidParameterValue"


def test_cancel_unknown_move_task(sqs):
    with pytest.raises(sqs.exceptions.ResourceNotFoundException):
        sqs.cancel_message_move_task(TaskHandle="bm90LWEtdGFzaw==")

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


def wait_task(sqs, arn, status, timeout=30.0):
    """The newest move task of `arn` once its status is `status` (bounded wait)."""
    deadline = time.monotonic() + timeout
    while True:
        tasks = sqs.list_message_move_tasks(SourceArn=arn)["Results"]
        if tasks and tasks[0]["Status"] == status:
            return tasks[0]
        assert time.monotonic() < deadline, f"task never became {status}: {tasks}"
        time.sleep(0.05)


def dead_letters(sqs, src, dlq, n):
    for i in range(n):
        sqs.send_message(QueueUrl=src, MessageBody=f"m{i}",
                         MessageAttributes={"n": {"DataType": "Number", "StringValue": str(i)}})
    got = receive_until(sqs, src, n, timeout=10)
    assert len(got) == n
    assert wait_for(lambda: counts(sqs, dlq)["visible"] == n), counts(sqs, dlq)


def test_message_move_task_redrives_back_to_source(sqs, pair):
    src, dlq = pair
    dead_letters(sqs, src, dlq, 3)
    dlq_arn = queue_arn(sqs, dlq)
    handle = sqs.start_message_move_task(SourceArn=dlq_arn)["TaskHandle"]
    assert handle
    t = wait_task(sqs, dlq_arn, "COMPLETED")
    assert t["SourceArn"] == dlq_arn
    assert t["ApproximateNumberOfMessagesMoved"] == 3
    assert t["ApproximateNumberOfMessagesToMove"] == 3
    assert "TaskHandle" not in t  # only RUNNING tasks show their handle
    assert "DestinationArn" not in t
    assert abs(t["StartedTimestamp"] - time.time() * 1000) < 120_000  # milliseconds
    assert counts(sqs, dlq)["visible"] == 0
    back = receive_until(sqs, src, 3, timeout=10, AttributeNames=["ApproximateReceiveCount"],
                         VisibilityTimeout=60)
    assert sorted(m["Body"] for m in back) == ["m0", "m1", "m2"]
    # Moved back with a fresh receive count.
    assert {m["Attributes"]["ApproximateReceiveCount"] for m in back} == {"1"}
    # A finished task cannot be cancelled.
    with pytest.raises(sqs.exceptions.ResourceNotFoundException):
        sqs.cancel_message_move_task(TaskHandle=handle)


def test_move_task_to_a_destination_keeps_attributes(sqs, pair, make_queue):
    src, dlq = pair
    dead_letters(sqs, src, dlq, 2)
    dest = make_queue(prefix="dest")
    dlq_arn, dest_arn = queue_arn(sqs, dlq), queue_arn(sqs, dest)
    sqs.start_message_move_task(SourceArn=dlq_arn, DestinationArn=dest_arn)
    t = wait_task(sqs, dlq_arn, "COMPLETED")
    assert (t["DestinationArn"], t["ApproximateNumberOfMessagesMoved"]) == (dest_arn, 2)
    got = receive_until(sqs, dest, 2, timeout=10, MessageAttributeNames=["All"])
    assert sorted((m["Body"], m["MessageAttributes"]["n"]["StringValue"]) for m in got) == [
        ("m0", "0"), ("m1", "1")]
    assert counts(sqs, src)["visible"] == 0


def test_a_rate_limited_task_runs_in_the_background_and_can_be_cancelled(sqs, pair):
    src, dlq = pair
    dead_letters(sqs, src, dlq, 5)
    dlq_arn = queue_arn(sqs, dlq)
    first = sqs.start_message_move_task(SourceArn=dlq_arn, MaxNumberOfMessagesPerSecond=1)["TaskHandle"]
    running = sqs.list_message_move_tasks(SourceArn=dlq_arn)["Results"][0]
    assert running["Status"] == "RUNNING" and running["TaskHandle"] == first
    assert running["MaxNumberOfMessagesPerSecond"] == 1
    assert running["ApproximateNumberOfMessagesToMove"] == 5
    # One active task per source queue.
    with pytest.raises(ClientError) as e:
        sqs.start_message_move_task(SourceArn=dlq_arn)
    assert error_code(e) == "InvalidParameterValue"
    moved = sqs.cancel_message_move_task(TaskHandle=first)["ApproximateNumberOfMessagesMoved"]
    assert 0 <= moved <= 5
    cancelled = wait_task(sqs, dlq_arn, "CANCELLED")
    assert cancelled["ApproximateNumberOfMessagesMoved"] < 5
    # The rest moves with a second task; both are listed, newest first.
    second = sqs.start_message_move_task(SourceArn=dlq_arn)["TaskHandle"]
    assert second != first
    wait_task(sqs, dlq_arn, "COMPLETED")
    both = sqs.list_message_move_tasks(SourceArn=dlq_arn, MaxResults=10)["Results"]
    assert [t["Status"] for t in both] == ["COMPLETED", "CANCELLED"]
    assert sum(t["ApproximateNumberOfMessagesMoved"] for t in both) == 5
    assert counts(sqs, dlq)["visible"] == 0
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
    # A missing source or destination queue.
    with pytest.raises(sqs.exceptions.ResourceNotFoundException):
        sqs.start_message_move_task(SourceArn=f"arn:aws:sqs:us-east-1:{ACCOUNT}:{unique('nope')}")
    with pytest.raises(sqs.exceptions.ResourceNotFoundException):
        sqs.start_message_move_task(
            SourceArn=dlq_arn, DestinationArn=f"arn:aws:sqs:us-east-1:{ACCOUNT}:{unique('nope')}")
    # Rate limits out of range.
    with pytest.raises(ClientError) as e:
        sqs.start_message_move_task(SourceArn=dlq_arn, MaxNumberOfMessagesPerSecond=501)
    assert error_code(e) == "InvalidParameterValue"


def test_move_tasks_survive_a_restart(tmp_path):
    from sqs_helpers import make_client, sluice_binary, start_server, stop_server

    data, log = tmp_path / "data", tmp_path / "server.log"
    server = start_server(sluice_binary(), data, log)
    try:
        c = make_client(server.endpoint)
        dlq = c.create_queue(QueueName="restart-dlq")["QueueUrl"]
        arn = queue_arn(c, dlq)
        src = c.create_queue(QueueName="restart-src", Attributes={"VisibilityTimeout": "1",
                             "RedrivePolicy": redrive(arn, 1)})["QueueUrl"]
        dead_letters(c, src, dlq, 4)
        c.start_message_move_task(SourceArn=arn, MaxNumberOfMessagesPerSecond=1)
    finally:
        stop_server(server)
    server = start_server(sluice_binary(), data, log)
    try:
        c = make_client(server.endpoint)
        t = wait_task(c, arn, "COMPLETED", timeout=60)
        # Approximate, as its name says: a step cut short by the shutdown (its messages moved,
        # its progress not yet saved) is not counted; every message arrives all the same.
        assert 3 <= t["ApproximateNumberOfMessagesMoved"] <= 4
        assert t["MaxNumberOfMessagesPerSecond"] == 1
        assert counts(c, src)["visible"] == 4
    finally:
        stop_server(server)


def test_cancel_unknown_move_task(sqs):
    with pytest.raises(sqs.exceptions.ResourceNotFoundException):
        sqs.cancel_message_move_task(TaskHandle="bm90LWEtdGFzaw==")

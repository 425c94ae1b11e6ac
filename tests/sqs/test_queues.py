"""Queue actions through boto3 (AWS JSON 1.0): create, look up, list, delete, purge, attributes, tags."""

import json
import time

import pytest
from botocore.exceptions import ClientError

from sqs_helpers import ACCOUNT, counts, make_client, queue_arn, unique

# Every attribute name GetQueueAttributes accepts (QUEUE_ATTRIBUTES in actions.rs).
QUEUE_ATTRIBUTES = [
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
    "CreatedTimestamp",
    "LastModifiedTimestamp",
    "QueueArn",
    "VisibilityTimeout",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "DelaySeconds",
    "ReceiveMessageWaitTimeSeconds",
    "RedrivePolicy",
    "RedriveAllowPolicy",
    "FifoQueue",
    "ContentBasedDeduplication",
    "SqsManagedSseEnabled",
]


def error_code(excinfo) -> str:
    return excinfo.value.response["Error"]["Code"]


# ---------- CreateQueue ----------


def test_create_queue_returns_url_and_arn(sqs, endpoint, make_queue):
    name = unique("create")
    url = make_queue(name=name)
    assert url == f"{endpoint}/{ACCOUNT}/{name}"
    assert queue_arn(sqs, url) == f"arn:aws:sqs:us-east-1:{ACCOUNT}:{name}"


def test_arn_region_follows_the_client_region(endpoint, make_queue):
    url = make_queue()
    west = make_client(endpoint, region="eu-west-3")
    arn = west.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    assert arn.startswith("arn:aws:sqs:eu-west-3:000000000000:")


def test_create_queue_with_attributes_and_tags(sqs, make_queue):
    url = make_queue(
        attributes={
            "VisibilityTimeout": 45,
            "DelaySeconds": 3,
            "MaximumMessageSize": 2048,
            "MessageRetentionPeriod": 3600,
            "ReceiveMessageWaitTimeSeconds": 2,
        },
        tags={"team": "core", "env": "test"},
    )
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert a["VisibilityTimeout"] == "45"
    assert a["DelaySeconds"] == "3"
    assert a["MaximumMessageSize"] == "2048"
    assert a["MessageRetentionPeriod"] == "3600"
    assert a["ReceiveMessageWaitTimeSeconds"] == "2"
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"team": "core", "env": "test"}


def test_create_queue_is_idempotent_with_equal_attributes(sqs, make_queue):
    name = unique("idem")
    url = make_queue(name=name, attributes={"VisibilityTimeout": 40})
    again = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "40"})
    assert again["QueueUrl"] == url
    # No attributes at all: also the existing queue.
    assert sqs.create_queue(QueueName=name)["QueueUrl"] == url


def test_create_queue_with_conflicting_attributes_is_queue_name_exists(sqs, make_queue):
    name = unique("conflict")
    make_queue(name=name, attributes={"VisibilityTimeout": 40})
    with pytest.raises(sqs.exceptions.QueueNameExists) as e:
        sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "41"})
    assert error_code(e) == "QueueAlreadyExists"  # the query-era code, as SQS sends it
    # The existing queue is unchanged.
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])["Attributes"]
    assert a["VisibilityTimeout"] == "40"


@pytest.mark.parametrize("name", ["has space", "bad/slash", "x" * 81, "dots.in.name"])
def test_create_queue_with_invalid_name(sqs, name):
    with pytest.raises(ClientError) as e:
        sqs.create_queue(QueueName=name)
    assert error_code(e) == "InvalidParameterValue"


def test_create_queue_name_of_80_characters(sqs, make_queue):
    name = unique("n") + "x" * 80
    name = name[:80]
    url = make_queue(name=name)
    assert url.endswith("/" + name)


def test_create_queue_unknown_attribute_is_invalid_attribute_name(sqs):
    with pytest.raises(sqs.exceptions.InvalidAttributeName):
        sqs.create_queue(QueueName=unique("bad"), Attributes={"NoSuchAttribute": "1"})


def test_policy_and_encryption_attributes_are_stored_and_returned(sqs, make_queue):
    policy = json.dumps({"Version": "2012-10-17", "Statement": []})
    url = make_queue(
        attributes={
            "Policy": policy,
            "KmsMasterKeyId": "alias/aws/sqs",
            "KmsDataKeyReusePeriodSeconds": 600,
        }
    )
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert json.loads(a["Policy"]) == json.loads(policy)
    assert a["KmsMasterKeyId"] == "alias/aws/sqs"
    assert a["KmsDataKeyReusePeriodSeconds"] == "600"
    assert a["SqsManagedSseEnabled"] == "false"  # a KMS key replaces SQS-managed encryption
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"KmsMasterKeyId": "", "SqsManagedSseEnabled": "true"})
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert "KmsMasterKeyId" not in a and a["SqsManagedSseEnabled"] == "true"
    for name, bad in [("Policy", "{not json"), ("Policy", "[1]"),
                      ("KmsDataKeyReusePeriodSeconds", "59"), ("SqsManagedSseEnabled", "maybe")]:
        with pytest.raises(sqs.exceptions.InvalidAttributeValue):
            sqs.set_queue_attributes(QueueUrl=url, Attributes={name: bad})
    # Creating it again with the same attributes is idempotent; with others, a conflict.
    assert sqs.create_queue(QueueName=url.rsplit("/", 1)[1], Attributes={"Policy": policy})["QueueUrl"] == url
    with pytest.raises(sqs.exceptions.QueueNameExists):
        sqs.create_queue(QueueName=url.rsplit("/", 1)[1], Attributes={"KmsMasterKeyId": "other"})


def test_fifo_throughput_attributes(sqs, make_queue):
    url = make_queue(name=unique("ht") + ".fifo", attributes={"FifoQueue": "true"})
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert (a["DeduplicationScope"], a["FifoThroughputLimit"]) == ("queue", "perQueue")
    # High-throughput mode.
    sqs.set_queue_attributes(QueueUrl=url, Attributes={
        "DeduplicationScope": "messageGroup", "FifoThroughputLimit": "perMessageGroupId"})
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["DeduplicationScope", "FifoThroughputLimit"])
    assert a["Attributes"] == {"DeduplicationScope": "messageGroup", "FifoThroughputLimit": "perMessageGroupId"}
    with pytest.raises(sqs.exceptions.InvalidAttributeValue):
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"DeduplicationScope": "queue"})
    with pytest.raises(sqs.exceptions.InvalidAttributeValue):
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"FifoThroughputLimit": "perGroup"})
    standard = make_queue()
    with pytest.raises(sqs.exceptions.InvalidAttributeName):
        sqs.set_queue_attributes(QueueUrl=standard, Attributes={"DeduplicationScope": "queue"})
    assert "DeduplicationScope" not in sqs.get_queue_attributes(
        QueueUrl=standard, AttributeNames=["All"])["Attributes"]


def test_add_and_remove_permission_maintain_the_policy(sqs, queue):
    sqs.add_permission(QueueUrl=queue, Label="senders", AWSAccountIds=["111122223333"],
                       Actions=["SendMessage"])
    sqs.add_permission(QueueUrl=queue, Label="workers", AWSAccountIds=["111122223333", "444455556666"],
                       Actions=["ReceiveMessage", "DeleteMessage"])
    policy = json.loads(sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["Policy"])["Attributes"]["Policy"])
    st = {s["Sid"]: s for s in policy["Statement"]}
    assert st["senders"]["Action"] == "SQS:SendMessage"
    assert st["senders"]["Principal"] == {"AWS": "arn:aws:iam::111122223333:root"}
    assert st["workers"]["Action"] == ["SQS:ReceiveMessage", "SQS:DeleteMessage"]
    assert st["workers"]["Resource"].endswith(":" + queue.rsplit("/", 1)[1])
    with pytest.raises(ClientError) as e:
        sqs.add_permission(QueueUrl=queue, Label="senders", AWSAccountIds=["111122223333"],
                           Actions=["SendMessage"])
    assert error_code(e) == "InvalidParameterValue" and "Already exists" in e.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as e:
        sqs.add_permission(QueueUrl=queue, Label="x", AWSAccountIds=["111122223333"], Actions=["Fly"])
    assert error_code(e) == "InvalidParameterValue"
    with pytest.raises(ClientError) as e:
        sqs.add_permission(QueueUrl=queue, Label="y", AWSAccountIds=["111122223333"],
                           Actions=["SendMessage", "ReceiveMessage", "DeleteMessage", "PurgeQueue",
                                    "GetQueueUrl", "GetQueueAttributes", "ChangeMessageVisibility",
                                    "ListQueueTags"])
    assert error_code(e) == "OverLimit"
    sqs.remove_permission(QueueUrl=queue, Label="senders")
    policy = json.loads(sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["Policy"])["Attributes"]["Policy"])
    assert [s["Sid"] for s in policy["Statement"]] == ["workers"]
    with pytest.raises(ClientError) as e:
        sqs.remove_permission(QueueUrl=queue, Label="senders")
    assert error_code(e) == "InvalidParameterValue"
    sqs.remove_permission(QueueUrl=queue, Label="workers")
    assert "Policy" not in sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]


def test_create_fifo_queue(sqs, make_queue):
    # FIFO semantics are tested elsewhere; here only that the queue exists and says it is FIFO.
    name = unique("fifo") + ".fifo"
    url = make_queue(name=name, attributes={"FifoQueue": "true"})
    assert url.endswith("/" + name)
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert a["FifoQueue"] == "true"
    assert a["ContentBasedDeduplication"] == "false"
    assert a["QueueArn"].endswith(":" + name)


def test_content_based_deduplication_on_standard_queue_is_unknown(sqs):
    with pytest.raises(sqs.exceptions.InvalidAttributeName):
        sqs.create_queue(QueueName=unique("std"), Attributes={"ContentBasedDeduplication": "true"})


def test_fifo_name_without_fifo_attribute_and_the_reverse_are_invalid(sqs):
    with pytest.raises(ClientError) as e:
        sqs.create_queue(QueueName=unique("f") + ".fifo")
    assert error_code(e) == "InvalidParameterValue"
    with pytest.raises(ClientError) as e:
        sqs.create_queue(QueueName=unique("f"), Attributes={"FifoQueue": "true"})
    assert error_code(e) == "InvalidParameterValue"


def test_create_queue_without_name_is_missing_parameter(sqs):
    with pytest.raises(ClientError) as e:
        sqs.create_queue(QueueName="")
    assert error_code(e) == "MissingParameter"


# ---------- GetQueueUrl ----------


def test_get_queue_url(sqs, make_queue):
    name = unique("geturl")
    url = make_queue(name=name)
    assert sqs.get_queue_url(QueueName=name)["QueueUrl"] == url
    assert sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=ACCOUNT)["QueueUrl"] == url


def test_get_queue_url_of_missing_queue(sqs):
    with pytest.raises(sqs.exceptions.QueueDoesNotExist) as e:
        sqs.get_queue_url(QueueName=unique("missing"))
    assert error_code(e) == "AWS.SimpleQueueService.NonExistentQueue"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert e.value.response["Error"]["QueryErrorCode"] == "QueueDoesNotExist"


# ---------- ListQueues ----------


def test_list_queues_by_prefix(sqs, make_queue):
    prefix = unique("list")
    urls = sorted(make_queue(name=f"{prefix}-{i}") for i in range(3))
    other = make_queue(prefix="other")
    got = sqs.list_queues(QueueNamePrefix=prefix)["QueueUrls"]
    assert sorted(got) == urls
    assert other not in got
    assert other in sqs.list_queues()["QueueUrls"]


def test_list_queues_with_no_match(sqs):
    assert sqs.list_queues(QueueNamePrefix=unique("nomatch")).get("QueueUrls", []) == []


def test_list_queues_pages_with_max_results_and_next_token(sqs, make_queue):
    prefix = unique("page")
    urls = sorted(make_queue(name=f"{prefix}-{i}") for i in range(5))
    seen, token, pages = [], None, 0
    while True:
        kwargs = {"QueueNamePrefix": prefix, "MaxResults": 2}
        if token:
            kwargs["NextToken"] = token
        r = sqs.list_queues(**kwargs)
        pages += 1
        assert len(r["QueueUrls"]) <= 2
        seen += r["QueueUrls"]
        token = r.get("NextToken")
        if not token:
            break
        assert pages < 10
    assert pages == 3
    assert sorted(seen) == urls
    # The boto3 paginator agrees.
    pag = sqs.get_paginator("list_queues").paginate(
        QueueNamePrefix=prefix, PaginationConfig={"PageSize": 2}
    )
    assert sorted(u for p in pag for u in p.get("QueueUrls", [])) == urls


def test_list_queues_without_max_results_has_no_next_token(sqs, make_queue):
    prefix = unique("nt")
    make_queue(name=f"{prefix}-a")
    assert "NextToken" not in sqs.list_queues(QueueNamePrefix=prefix)


@pytest.mark.parametrize("bad", [0, 1001])
def test_list_queues_max_results_out_of_range(sqs, bad):
    with pytest.raises(ClientError) as e:
        sqs.list_queues(MaxResults=bad)
    assert error_code(e) == "InvalidParameterValue"


def test_list_queues_with_invalid_next_token(sqs):
    with pytest.raises(ClientError) as e:
        sqs.list_queues(MaxResults=5, NextToken="%%% not base64 %%%")
    assert error_code(e) == "InvalidParameterValue"


# ---------- DeleteQueue ----------


def test_delete_queue(sqs):
    name = unique("del")
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="x")
    sqs.delete_queue(QueueUrl=url)
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.get_queue_url(QueueName=name)
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.send_message(QueueUrl=url, MessageBody="x")
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.delete_queue(QueueUrl=url)
    # sluice allows the name again at once (SQS asks to wait 60 s).
    assert sqs.create_queue(QueueName=name)["QueueUrl"] == url
    assert counts(sqs, url)["visible"] == 0
    sqs.delete_queue(QueueUrl=url)


# ---------- PurgeQueue ----------


def test_purge_queue(sqs, queue):
    for i in range(3):
        sqs.send_message(QueueUrl=queue, MessageBody=f"m{i}")
    sqs.receive_message(QueueUrl=queue, VisibilityTimeout=30)
    sqs.purge_queue(QueueUrl=queue)
    assert counts(sqs, queue) == {"visible": 0, "inflight": 0, "delayed": 0}
    assert "Messages" not in sqs.receive_message(QueueUrl=queue)
    # One purge per queue per 60 s, as in SQS.
    sqs.send_message(QueueUrl=queue, MessageBody="again")
    with pytest.raises(sqs.exceptions.PurgeQueueInProgress) as e:
        sqs.purge_queue(QueueUrl=queue)
    assert e.value.response["Error"]["Message"].startswith("Only one PurgeQueue operation on ")
    assert counts(sqs, queue)["visible"] == 1


def test_purge_missing_queue(sqs, endpoint):
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.purge_queue(QueueUrl=f"{endpoint}/{ACCOUNT}/{unique('nope')}")


# ---------- GetQueueAttributes ----------


def test_get_queue_attributes_all_defaults(sqs, queue):
    before = int(time.time())
    a = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    assert a["VisibilityTimeout"] == "30"
    assert a["DelaySeconds"] == "0"
    assert a["MessageRetentionPeriod"] == "345600"
    assert a["ReceiveMessageWaitTimeSeconds"] == "0"
    assert a["MaximumMessageSize"] == "1048576"
    assert a["ApproximateNumberOfMessages"] == "0"
    assert a["ApproximateNumberOfMessagesNotVisible"] == "0"
    assert a["ApproximateNumberOfMessagesDelayed"] == "0"
    assert a["QueueArn"].endswith(":" + queue.rsplit("/", 1)[1])
    assert a["SqsManagedSseEnabled"] == "true"  # SQS's default for new queues
    # Seconds since the epoch, not milliseconds.
    assert abs(int(a["CreatedTimestamp"]) - before) < 120
    assert abs(int(a["LastModifiedTimestamp"]) - before) < 120
    # Absent on a standard queue without redrive.
    for absent in ["FifoQueue", "ContentBasedDeduplication", "RedrivePolicy", "RedriveAllowPolicy"]:
        assert absent not in a
    assert set(a) <= set(QUEUE_ATTRIBUTES)


@pytest.mark.parametrize("name", QUEUE_ATTRIBUTES)
def test_get_queue_attributes_each_name(sqs, make_queue, name):
    src_dlq = make_queue(prefix="eachdlq")
    url = make_queue(
        prefix="each",
        attributes={
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": queue_arn(sqs, src_dlq), "maxReceiveCount": 3}
            ),
            "RedriveAllowPolicy": json.dumps({"redrivePermission": "allowAll"}),
        },
    )
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[name])["Attributes"]
    if name in ("FifoQueue", "ContentBasedDeduplication"):
        assert a == {}  # standard queue: not reported
    else:
        assert list(a) == [name]
        assert a[name] != ""


def test_get_queue_attributes_several_names(sqs, queue):
    a = sqs.get_queue_attributes(
        QueueUrl=queue, AttributeNames=["VisibilityTimeout", "DelaySeconds"]
    )["Attributes"]
    assert a == {"VisibilityTimeout": "30", "DelaySeconds": "0"}


def test_get_queue_attributes_without_names_returns_none(sqs, queue):
    assert sqs.get_queue_attributes(QueueUrl=queue).get("Attributes", {}) == {}


def test_get_queue_attributes_unknown_name(sqs, queue):
    with pytest.raises(sqs.exceptions.InvalidAttributeName):
        sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["Bogus"])


def test_get_queue_attributes_of_missing_queue(sqs, endpoint):
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.get_queue_attributes(
            QueueUrl=f"{endpoint}/{ACCOUNT}/{unique('nope')}", AttributeNames=["All"]
        )


def test_get_queue_attributes_without_names_of_missing_queue(sqs, endpoint):
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.get_queue_attributes(QueueUrl=f"{endpoint}/{ACCOUNT}/{unique('nope')}")


def test_approximate_counts(sqs, queue):
    sqs.send_message(QueueUrl=queue, MessageBody="visible-1")
    sqs.send_message(QueueUrl=queue, MessageBody="visible-2")
    sqs.send_message(QueueUrl=queue, MessageBody="delayed", DelaySeconds=60)
    assert counts(sqs, queue) == {"visible": 2, "inflight": 0, "delayed": 1}
    got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=1, VisibilityTimeout=60)
    assert len(got["Messages"]) == 1
    assert counts(sqs, queue) == {"visible": 1, "inflight": 1, "delayed": 1}
    sqs.delete_message(QueueUrl=queue, ReceiptHandle=got["Messages"][0]["ReceiptHandle"])
    assert counts(sqs, queue) == {"visible": 1, "inflight": 0, "delayed": 1}


# ---------- SetQueueAttributes ----------


def test_set_queue_attributes(sqs, queue):
    created = int(
        sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["CreatedTimestamp"])[
            "Attributes"
        ]["CreatedTimestamp"]
    )
    sqs.set_queue_attributes(
        QueueUrl=queue,
        Attributes={
            "VisibilityTimeout": "5",
            "DelaySeconds": "1",
            "MaximumMessageSize": "4096",
            "MessageRetentionPeriod": "60",
            "ReceiveMessageWaitTimeSeconds": "20",
            "RedriveAllowPolicy": json.dumps({"redrivePermission": "denyAll"}),
            "Policy": "{}",
        },
    )
    a = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    assert a["VisibilityTimeout"] == "5"
    assert a["DelaySeconds"] == "1"
    assert a["MaximumMessageSize"] == "4096"
    assert a["MessageRetentionPeriod"] == "60"
    assert a["ReceiveMessageWaitTimeSeconds"] == "20"
    assert json.loads(a["RedriveAllowPolicy"]) == {"redrivePermission": "denyAll"}
    assert int(a["LastModifiedTimestamp"]) >= created
    # Unmentioned attributes keep their values.
    sqs.set_queue_attributes(QueueUrl=queue, Attributes={"VisibilityTimeout": "6"})
    a = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    assert a["VisibilityTimeout"] == "6" and a["DelaySeconds"] == "1"


@pytest.mark.parametrize(
    "attr,value",
    [
        ("VisibilityTimeout", "-1"),
        ("VisibilityTimeout", "43201"),
        ("VisibilityTimeout", "abc"),
        ("MessageRetentionPeriod", "59"),
        ("MessageRetentionPeriod", "1209601"),
        ("MaximumMessageSize", "1023"),
        ("ReceiveMessageWaitTimeSeconds", "21"),
        ("DelaySeconds", "-5"),
    ],
)
def test_set_queue_attributes_out_of_range(sqs, queue, attr, value):
    with pytest.raises(sqs.exceptions.InvalidAttributeValue):
        sqs.set_queue_attributes(QueueUrl=queue, Attributes={attr: value})


def test_set_queue_attributes_unknown_name(sqs, queue):
    with pytest.raises(sqs.exceptions.InvalidAttributeName):
        sqs.set_queue_attributes(QueueUrl=queue, Attributes={"Bogus": "1"})
    # FifoQueue cannot be switched on a standard queue.
    with pytest.raises(sqs.exceptions.InvalidAttributeName):
        sqs.set_queue_attributes(QueueUrl=queue, Attributes={"FifoQueue": "true"})


def test_set_queue_attributes_bad_redrive_allow_policy(sqs, queue):
    with pytest.raises(ClientError) as e:
        sqs.set_queue_attributes(
            QueueUrl=queue, Attributes={"RedriveAllowPolicy": json.dumps({"redrivePermission": "x"})}
        )
    assert error_code(e) == "InvalidParameterValue"


def test_set_queue_attributes_of_missing_queue(sqs, endpoint):
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.set_queue_attributes(
            QueueUrl=f"{endpoint}/{ACCOUNT}/{unique('nope')}", Attributes={"DelaySeconds": "1"}
        )


def test_delay_seconds_stops_at_900_as_in_sqs(sqs, queue):
    sqs.set_queue_attributes(QueueUrl=queue, Attributes={"DelaySeconds": "900"})
    with pytest.raises(sqs.exceptions.InvalidAttributeValue):
        sqs.set_queue_attributes(QueueUrl=queue, Attributes={"DelaySeconds": "901"})


# ---------- Tags ----------


def test_tag_untag_list(sqs, make_queue):
    url = make_queue(tags={"a": "1"})
    sqs.tag_queue(QueueUrl=url, Tags={"b": "2", "a": "one"})
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"a": "one", "b": "2"}
    sqs.untag_queue(QueueUrl=url, TagKeys=["a", "not-there"])
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"b": "2"}
    sqs.untag_queue(QueueUrl=url, TagKeys=["b"])
    assert sqs.list_queue_tags(QueueUrl=url).get("Tags", {}) == {}


def test_tag_limits_and_missing_queue(sqs, queue, endpoint):
    with pytest.raises(ClientError) as e:
        sqs.tag_queue(QueueUrl=queue, Tags={})
    assert error_code(e) == "MissingParameter"
    with pytest.raises(ClientError) as e:
        sqs.tag_queue(QueueUrl=queue, Tags={f"k{i}": "v" for i in range(51)})
    assert error_code(e) == "InvalidParameterValue"
    missing = f"{endpoint}/{ACCOUNT}/{unique('nope')}"
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.tag_queue(QueueUrl=missing, Tags={"a": "b"})
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.list_queue_tags(QueueUrl=missing)
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.untag_queue(QueueUrl=missing, TagKeys=["a"])


# ---------- protocol edges ----------


def test_unknown_action_is_invalid_action(endpoint):
    import requests

    r = requests.post(
        endpoint + "/",
        data="{}",
        headers={"X-Amz-Target": "AmazonSQS.NoSuchAction",
                 "Content-Type": "application/x-amz-json-1.0"},
        timeout=10,
    )
    assert r.status_code == 400
    assert r.json()["__type"].endswith("#InvalidAction")
    assert r.headers["x-amzn-query-error"] == "InvalidAction;Sender"


def test_malformed_json_body(endpoint):
    import requests

    r = requests.post(
        endpoint + "/",
        data="{not json",
        headers={"X-Amz-Target": "AmazonSQS.ListQueues",
                 "Content-Type": "application/x-amz-json-1.0"},
        timeout=10,
    )
    assert r.status_code == 400
    assert r.json()["__type"].endswith("#SerializationException")

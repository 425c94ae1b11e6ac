"""The SQS query protocol: form-encoded `Action=...` requests answered in XML.

Raw requests are parsed with xml.etree against the documented shapes (namespace
http://queue.amazonaws.com/doc/2012-11-05/). A last group drives boto3 itself over the query
protocol: current botocore only ships SQS's JSON model, so it is given the same model switched
back to `query`, with the XML names the query-era model had.
"""

import copy
import json
import xml.etree.ElementTree as ET

import pytest
import requests

from sqs_helpers import ACCOUNT, counts, queue_arn, unique
from sqs_md5 import md5_of_attributes, md5_of_body

NS = "http://queue.amazonaws.com/doc/2012-11-05/"
N = {"q": NS}


def post(url, params, method="POST"):
    if method == "GET":
        r = requests.get(url, params=params, timeout=30)
    else:
        r = requests.post(url, data=params, timeout=30)
    root = ET.fromstring(r.content)
    return r, root


def text(node, path):
    found = node.find(path, N)
    assert found is not None, f"{path} missing in {ET.tostring(node, encoding='unicode')}"
    return found.text or ""


def assert_request_id(root):
    rid = root.find("q:ResponseMetadata/q:RequestId", N)
    assert rid is not None and rid.text


def attributes_of(node, tag="Attribute"):
    return {text(a, "q:Name"): text(a, "q:Value") for a in node.findall(f"q:{tag}", N)}


# ---------- raw form posts ----------


def test_create_get_url_and_list_queues(endpoint, sqs):
    name = unique("qp")
    r, root = post(endpoint + "/", {
        "Action": "CreateQueue", "QueueName": name, "Version": "2012-11-05",
        "Attribute.1.Name": "VisibilityTimeout", "Attribute.1.Value": "45",
        "Attribute.2.Name": "DelaySeconds", "Attribute.2.Value": "2",
        "Tag.1.Key": "team", "Tag.1.Value": "core",
    })
    try:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/xml")
        assert root.tag == f"{{{NS}}}CreateQueueResponse"
        url = text(root, "q:CreateQueueResult/q:QueueUrl")
        assert url == f"{endpoint}/{ACCOUNT}/{name}"
        assert_request_id(root)

        r, root = post(endpoint + "/", {"Action": "GetQueueUrl", "QueueName": name})
        assert text(root, "q:GetQueueUrlResult/q:QueueUrl") == url

        r, root = post(endpoint + "/", {"Action": "ListQueues", "QueueNamePrefix": name})
        assert [u.text for u in root.findall("q:ListQueuesResult/q:QueueUrl", N)] == [url]

        r, root = post(url, {"Action": "GetQueueAttributes", "AttributeName.1": "All"})
        attrs = attributes_of(root.find("q:GetQueueAttributesResult", N))
        assert attrs["VisibilityTimeout"] == "45" and attrs["DelaySeconds"] == "2"
        assert attrs["QueueArn"] == f"arn:aws:sqs:us-east-1:{ACCOUNT}:{name}"

        r, root = post(url, {"Action": "ListQueueTags"})
        tags = {text(t, "q:Key"): text(t, "q:Value")
                for t in root.findall("q:ListQueueTagsResult/q:Tag", N)}
        assert tags == {"team": "core"}
    finally:
        sqs.delete_queue(QueueUrl=f"{endpoint}/{ACCOUNT}/{name}")


def test_send_on_queue_url_and_receive_all_attributes(endpoint, queue):
    body = "query <body> & 'quotes' ✓\r\nline"
    r, root = post(queue, {
        "Action": "SendMessage", "MessageBody": body,
        "MessageAttribute.1.Name": "city", "MessageAttribute.1.Value.DataType": "String",
        "MessageAttribute.1.Value.StringValue": "Zürich",
        "MessageAttribute.2.Name": "n", "MessageAttribute.2.Value.DataType": "Number.int",
        "MessageAttribute.2.Value.StringValue": "7",
        "MessageAttribute.3.Name": "bin", "MessageAttribute.3.Value.DataType": "Binary",
        "MessageAttribute.3.Value.BinaryValue": "AAEC",
    })
    assert r.status_code == 200, r.text
    assert root.tag == f"{{{NS}}}SendMessageResponse"
    res = root.find("q:SendMessageResult", N)
    sent_attrs = {
        "city": {"DataType": "String", "StringValue": "Zürich"},
        "n": {"DataType": "Number.int", "StringValue": "7"},
        "bin": {"DataType": "Binary", "BinaryValue": b"\x00\x01\x02"},
    }
    assert text(res, "q:MD5OfMessageBody") == md5_of_body(body)
    assert text(res, "q:MD5OfMessageAttributes") == md5_of_attributes(sent_attrs)
    message_id = text(res, "q:MessageId")
    assert_request_id(root)

    r, root = post(endpoint + "/", {
        "Action": "ReceiveMessage", "QueueUrl": queue, "AttributeName.1": "All",
        "MessageAttributeName.1": "All", "MaxNumberOfMessages": "5", "VisibilityTimeout": "0",
    })
    assert r.status_code == 200, r.text
    msgs = root.findall("q:ReceiveMessageResult/q:Message", N)
    assert len(msgs) == 1
    m = msgs[0]
    assert text(m, "q:MessageId") == message_id
    assert text(m, "q:Body") == body  # \r survives as &#xD;
    assert text(m, "q:MD5OfBody") == md5_of_body(body)
    assert text(m, "q:ReceiptHandle")
    system = attributes_of(m)
    assert {"SenderId", "SentTimestamp", "ApproximateReceiveCount",
            "ApproximateFirstReceiveTimestamp"} <= set(system)
    assert system["ApproximateReceiveCount"] == "1"
    got = {}
    for a in m.findall("q:MessageAttribute", N):
        v = a.find("q:Value", N)
        entry = {"DataType": text(v, "q:DataType")}
        if v.find("q:BinaryValue", N) is not None:
            import base64

            entry["BinaryValue"] = base64.b64decode(text(v, "q:BinaryValue"))
        else:
            entry["StringValue"] = text(v, "q:StringValue")
        got[text(a, "q:Name")] = entry
    assert got == sent_attrs
    assert text(m, "q:MD5OfMessageAttributes") == md5_of_attributes(sent_attrs)


def test_empty_receive_has_an_empty_result(queue):
    r, root = post(queue, {"Action": "ReceiveMessage"})
    assert r.status_code == 200
    result = root.find("q:ReceiveMessageResult", N)
    assert result is not None and list(result) == []


def test_batches_and_deletes(endpoint, queue):
    r, root = post(queue, {
        "Action": "SendMessageBatch",
        "SendMessageBatchRequestEntry.1.Id": "a",
        "SendMessageBatchRequestEntry.1.MessageBody": "one",
        "SendMessageBatchRequestEntry.2.Id": "b",
        "SendMessageBatchRequestEntry.2.MessageBody": "two",
        "SendMessageBatchRequestEntry.2.MessageAttribute.1.Name": "k",
        "SendMessageBatchRequestEntry.2.MessageAttribute.1.Value.DataType": "String",
        "SendMessageBatchRequestEntry.2.MessageAttribute.1.Value.StringValue": "v",
        "SendMessageBatchRequestEntry.3.Id": "c",
        "SendMessageBatchRequestEntry.3.MessageBody": "",
    })
    assert r.status_code == 200, r.text
    res = root.find("q:SendMessageBatchResult", N)
    ok = {text(e, "q:Id"): e for e in res.findall("q:SendMessageBatchResultEntry", N)}
    assert set(ok) == {"a", "b"}
    assert text(ok["a"], "q:MD5OfMessageBody") == md5_of_body("one")
    assert text(ok["b"], "q:MD5OfMessageAttributes") == md5_of_attributes(
        {"k": {"DataType": "String", "StringValue": "v"}})
    (failed,) = res.findall("q:BatchResultErrorEntry", N)
    assert text(failed, "q:Id") == "c"
    assert text(failed, "q:Code") == "MissingParameter"
    assert text(failed, "q:SenderFault") == "true"

    r, root = post(queue, {"Action": "ReceiveMessage", "MaxNumberOfMessages": "10",
                           "VisibilityTimeout": "60"})
    handles = [text(m, "q:ReceiptHandle")
               for m in root.findall("q:ReceiveMessageResult/q:Message", N)]
    assert len(handles) == 2

    r, root = post(queue, {
        "Action": "ChangeMessageVisibilityBatch",
        "ChangeMessageVisibilityBatchRequestEntry.1.Id": "x",
        "ChangeMessageVisibilityBatchRequestEntry.1.ReceiptHandle": handles[0],
        "ChangeMessageVisibilityBatchRequestEntry.1.VisibilityTimeout": "90",
    })
    assert r.status_code == 200, r.text
    assert [text(e, "q:Id") for e in root.findall(
        "q:ChangeMessageVisibilityBatchResult/q:ChangeMessageVisibilityBatchResultEntry", N)] == ["x"]

    r, root = post(queue, {"Action": "ChangeMessageVisibility", "ReceiptHandle": handles[1],
                           "VisibilityTimeout": "90"})
    assert r.status_code == 200, r.text
    assert root.tag == f"{{{NS}}}ChangeMessageVisibilityResponse"
    assert root.find("q:ChangeMessageVisibilityResult", N) is None
    assert_request_id(root)

    r, root = post(queue, {"Action": "DeleteMessage", "ReceiptHandle": handles[0]})
    assert r.status_code == 200 and root.tag == f"{{{NS}}}DeleteMessageResponse"

    r, root = post(queue, {
        "Action": "DeleteMessageBatch",
        "DeleteMessageBatchRequestEntry.1.Id": "d1",
        "DeleteMessageBatchRequestEntry.1.ReceiptHandle": handles[1],
        "DeleteMessageBatchRequestEntry.2.Id": "d2",
        "DeleteMessageBatchRequestEntry.2.ReceiptHandle": "garbage",
    })
    res = root.find("q:DeleteMessageBatchResult", N)
    assert [text(e, "q:Id") for e in res.findall("q:DeleteMessageBatchResultEntry", N)] == ["d1"]
    (failed,) = res.findall("q:BatchResultErrorEntry", N)
    assert text(failed, "q:Code") == "ReceiptHandleIsInvalid"


def test_set_attributes_tags_purge_delete(endpoint, sqs):
    name = unique("qp2")
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    r, root = post(url, {"Action": "SetQueueAttributes",
                         "Attribute.1.Name": "VisibilityTimeout", "Attribute.1.Value": "12"})
    assert r.status_code == 200 and root.tag == f"{{{NS}}}SetQueueAttributesResponse"
    assert sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])[
        "Attributes"]["VisibilityTimeout"] == "12"
    r, root = post(url, {"Action": "TagQueue", "Tag.1.Key": "a", "Tag.1.Value": "1",
                         "Tag.2.Key": "b", "Tag.2.Value": "2"})
    assert r.status_code == 200
    r, root = post(url, {"Action": "UntagQueue", "TagKey.1": "a"})
    assert r.status_code == 200
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"b": "2"}
    sqs.send_message(QueueUrl=url, MessageBody="x")
    r, root = post(url, {"Action": "PurgeQueue"})
    assert r.status_code == 200 and root.tag == f"{{{NS}}}PurgeQueueResponse"
    assert counts(sqs, url)["visible"] == 0
    r, root = post(url, {"Action": "DeleteQueue"})
    assert r.status_code == 200 and root.tag == f"{{{NS}}}DeleteQueueResponse"
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.get_queue_url(QueueName=name)


def test_dead_letter_sources_and_move_tasks(endpoint, sqs, make_queue):
    dlq = make_queue(prefix="qpdlq")
    arn = queue_arn(sqs, dlq)
    src = make_queue(prefix="qpsrc", attributes={
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": 2})})
    r, root = post(dlq, {"Action": "ListDeadLetterSourceQueues"})
    assert [u.text for u in root.findall("q:ListDeadLetterSourceQueuesResult/q:QueueUrl", N)] == [src]
    r, root = post(endpoint + "/", {"Action": "StartMessageMoveTask", "SourceArn": arn})
    assert r.status_code == 200, r.text
    assert text(root, "q:StartMessageMoveTaskResult/q:TaskHandle")
    import time

    deadline = time.monotonic() + 30
    while True:
        r, root = post(endpoint + "/", {"Action": "ListMessageMoveTasks", "SourceArn": arn})
        entries = root.findall("q:ListMessageMoveTasksResult/q:ListMessageMoveTasksResultEntry", N)
        assert len(entries) == 1, r.text
        if text(entries[0], "q:Status") == "COMPLETED" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert text(entries[0], "q:Status") == "COMPLETED"
    assert entries[0].find("q:TaskHandle", N) is None  # only RUNNING tasks show it


def test_error_response_shape(endpoint):
    r, root = post(endpoint + "/", {"Action": "GetQueueUrl", "QueueName": unique("missing")})
    assert r.status_code == 400
    assert r.headers["content-type"].startswith("text/xml")
    assert root.tag == f"{{{NS}}}ErrorResponse"
    err = root.find("q:Error", N)
    assert text(err, "q:Type") == "Sender"
    assert text(err, "q:Code") == "AWS.SimpleQueueService.NonExistentQueue"
    assert text(err, "q:Message")
    assert root.find("q:RequestId", N).text


@pytest.mark.parametrize(
    "params,code",
    [
        ({"Action": "ReceiveMessage", "MaxNumberOfMessages": "11"}, "InvalidParameterValue"),
        ({"Action": "ReceiveMessage", "WaitTimeSeconds": "abc"}, "InvalidParameterValue"),
        ({"Action": "SendMessage"}, "MissingParameter"),
        ({"Action": "DeleteMessage", "ReceiptHandle": "garbage"}, "ReceiptHandleIsInvalid"),
        ({"Action": "SendMessageBatch"}, "AWS.SimpleQueueService.EmptyBatchRequest"),
        ({"Action": "GetQueueAttributes", "AttributeName.1": "Nope"}, "InvalidAttributeName"),
        ({"Action": "SetQueueAttributes", "Attribute.1.Name": "VisibilityTimeout",
          "Attribute.1.Value": "-1"}, "InvalidAttributeValue"),
        ({"Action": "NoSuchAction"}, "InvalidAction"),
        ({"Version": "2012-11-05"}, "MissingAction"),
    ],
)
def test_error_codes(queue, params, code):
    r, root = post(queue, params)
    assert r.status_code == 400, r.text
    assert text(root, "q:Error/q:Code") == code
    assert text(root, "q:Error/q:Type") == "Sender"


def test_create_fifo_queue_over_query(endpoint, sqs):
    name = unique("f") + ".fifo"
    r, root = post(endpoint + "/", {"Action": "CreateQueue", "QueueName": name,
                                    "Attribute.1.Name": "FifoQueue", "Attribute.1.Value": "true"})
    assert r.status_code == 200, r.text
    url = text(root, "q:CreateQueueResult/q:QueueUrl")
    assert url.endswith("/" + name)
    sqs.delete_queue(QueueUrl=url)


def test_queue_url_host_follows_host_header(endpoint, sqs, make_queue):
    name = unique("host")
    make_queue(name=name)
    # A loopback name: without API keys, other names are refused (DNS rebinding guard).
    r = requests.post(endpoint + "/", data={"Action": "GetQueueUrl", "QueueName": name},
                      headers={"Host": "sqs.localhost:9324"}, timeout=10)
    root = ET.fromstring(r.content)
    assert text(root, "q:GetQueueUrlResult/q:QueueUrl") == f"http://sqs.localhost:9324/{ACCOUNT}/{name}"
    r = requests.post(endpoint + "/", data={"Action": "GetQueueUrl", "QueueName": name},
                      headers={"Host": "sqs.example.test:9324"}, timeout=10)
    assert r.status_code == 403 and b"forbidden_host" in r.content


# ---------- boto3 over the query protocol ----------

# XML names of the query-era SQS model, which the JSON model dropped.
LIST_MEMBER_NAMES = {
    "AttributeNameList": "AttributeName",
    "MessageAttributeNameList": "MessageAttributeName",
    "MessageSystemAttributeList": "MessageSystemAttributeName",
    "TagKeyList": "TagKey",
    "QueueUrlList": "QueueUrl",
    "MessageList": "Message",
    "BatchResultErrorEntryList": "BatchResultErrorEntry",
}
MEMBER_NAMES = {
    "Attributes": "Attribute",
    "MessageAttributes": "MessageAttribute",
    "MessageSystemAttributes": "MessageSystemAttribute",
    "Tags": "Tag",
    "tags": "Tag",
}
# Error codes of the query-era model (the JSON model names exceptions by shape only).
ERROR_CODES = {
    "QueueDoesNotExist": "AWS.SimpleQueueService.NonExistentQueue",
    "QueueNameExists": "QueueAlreadyExists",
    "UnsupportedOperation": "AWS.SimpleQueueService.UnsupportedOperation",
    "EmptyBatchRequest": "AWS.SimpleQueueService.EmptyBatchRequest",
    "TooManyEntriesInBatchRequest": "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
    "BatchEntryIdsNotDistinct": "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
    "InvalidBatchEntryId": "AWS.SimpleQueueService.InvalidBatchEntryId",
    "BatchRequestTooLong": "AWS.SimpleQueueService.BatchRequestTooLong",
    "MessageNotInflight": "AWS.SimpleQueueService.MessageNotInflight",
}
MAP_KEYS = {
    "QueueAttributeMap": ("Name", "Value"),
    "MessageSystemAttributeMap": ("Name", "Value"),
    "MessageBodyAttributeMap": ("Name", "Value"),
    "MessageBodySystemAttributeMap": ("Name", "Value"),
    "TagMap": ("Key", "Value"),
}


def query_model(json_model: dict) -> dict:
    m = copy.deepcopy(json_model)
    m["metadata"]["protocol"] = "query"
    m["metadata"]["protocols"] = ["query"]
    m["metadata"].pop("awsQueryCompatible", None)
    m["metadata"].pop("jsonVersion", None)
    m["metadata"].pop("targetPrefix", None)
    m["metadata"]["xmlNamespace"] = NS
    for name, op in m["operations"].items():
        if "output" in op:
            op["output"]["resultWrapper"] = f"{name}Result"
    for name, shape in m["shapes"].items():
        if shape["type"] == "list" and shape.get("flattened"):
            member = shape["member"]
            member["locationName"] = LIST_MEMBER_NAMES.get(name, member["shape"])
        if shape["type"] == "map" and name in MAP_KEYS:
            k, v = MAP_KEYS[name]
            shape["key"]["locationName"] = k
            shape["value"]["locationName"] = v
        if shape.get("exception"):
            shape["error"] = {"code": ERROR_CODES.get(name, name), "httpStatusCode": 400,
                              "senderFault": True}
        if shape["type"] == "structure":
            for member_name, member in shape["members"].items():
                if member_name in MEMBER_NAMES:
                    member["locationName"] = MEMBER_NAMES[member_name]
    return m


@pytest.fixture(scope="module")
def query_sqs(endpoint, tmp_path_factory):
    import boto3
    import botocore.loaders
    import botocore.session
    from botocore.config import Config

    loader = botocore.loaders.Loader()
    try:
        json_model = loader.load_service_model("sqs", "service-2")
    except Exception as e:  # pragma: no cover
        pytest.skip(f"no SQS model in botocore: {e}")
    api = json_model["metadata"]["apiVersion"]
    data = tmp_path_factory.mktemp("botocore-data")
    target = data / "sqs" / api
    target.mkdir(parents=True)
    (target / "service-2.json").write_text(json.dumps(query_model(json_model)))
    session = botocore.session.get_session()
    session.get_component("data_loader").search_paths.insert(0, str(data))
    client = boto3.Session(botocore_session=session).client(
        "sqs", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x",
        endpoint_url=endpoint, config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )
    if client.meta.service_model.protocol != "query":
        pytest.skip("botocore would not load a query-protocol SQS model")
    return client


def test_boto3_query_protocol_flow(query_sqs, sqs):
    c = query_sqs
    name = unique("bq")
    url = c.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "20"},
                         tags={"t": "1"})["QueueUrl"]
    try:
        assert c.get_queue_url(QueueName=name)["QueueUrl"] == url
        assert url in c.list_queues(QueueNamePrefix=name)["QueueUrls"]
        attrs = {"s": {"DataType": "String", "StringValue": "v"},
                 "b": {"DataType": "Binary", "BinaryValue": b"\x00\xff"},
                 "n": {"DataType": "Number.float", "StringValue": "1.5"}}
        sent = c.send_message(QueueUrl=url, MessageBody="over query", MessageAttributes=attrs)
        assert sent["MD5OfMessageBody"] == md5_of_body("over query")
        assert sent["MD5OfMessageAttributes"] == md5_of_attributes(attrs)
        batch = c.send_message_batch(QueueUrl=url, Entries=[
            {"Id": "a", "MessageBody": "b1"}, {"Id": "b", "MessageBody": "b2"}])
        assert sorted(e["Id"] for e in batch["Successful"]) == ["a", "b"]

        got = []
        for _ in range(10):
            got += c.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"],
                                     MessageAttributeNames=["All"], VisibilityTimeout=60,
                                     WaitTimeSeconds=1).get("Messages", [])
            if len(got) == 3:
                break
        assert sorted(m["Body"] for m in got) == ["b1", "b2", "over query"]
        for m in got:
            assert m["MD5OfBody"] == md5_of_body(m["Body"])
            assert m["Attributes"]["ApproximateReceiveCount"] == "1"
        first = next(m for m in got if m["Body"] == "over query")
        assert first["MessageAttributes"] == attrs
        assert first["MD5OfMessageAttributes"] == md5_of_attributes(attrs)
        c.change_message_visibility(QueueUrl=url, ReceiptHandle=got[0]["ReceiptHandle"],
                                    VisibilityTimeout=100)
        d = c.delete_message_batch(QueueUrl=url, Entries=[
            {"Id": f"d{i}", "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)])
        assert len(d["Successful"]) == len(got)

        a = c.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert a["VisibilityTimeout"] == "20"
        c.set_queue_attributes(QueueUrl=url, Attributes={"DelaySeconds": "1"})
        c.tag_queue(QueueUrl=url, Tags={"u": "2"})
        assert c.list_queue_tags(QueueUrl=url)["Tags"] == {"t": "1", "u": "2"}
        c.untag_queue(QueueUrl=url, TagKeys=["t"])
        c.purge_queue(QueueUrl=url)

        with pytest.raises(c.exceptions.QueueDoesNotExist):
            c.get_queue_url(QueueName=unique("missing"))
        with pytest.raises(c.exceptions.ReceiptHandleIsInvalid):
            c.delete_message(QueueUrl=url, ReceiptHandle="garbage")
        with pytest.raises(c.exceptions.BatchEntryIdsNotDistinct):
            c.send_message_batch(QueueUrl=url, Entries=[{"Id": "a", "MessageBody": "1"},
                                                        {"Id": "a", "MessageBody": "2"}])
        with pytest.raises(c.exceptions.QueueNameExists):
            c.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "21"})
    finally:
        c.delete_queue(QueueUrl=url)
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.get_queue_url(QueueName=name)


def test_query_protocol_over_get(endpoint, queue):
    # Unsigned GETs with Action in the query string reach the SQS API (no keys configured).
    r, root = post(endpoint + "/", {"Action": "ListQueues"}, method="GET")
    assert r.status_code == 200 and root.tag == f"{{{NS}}}ListQueuesResponse", r.text
    r, root = post(queue, {"Action": "SendMessage", "MessageBody": "by GET"}, method="GET")
    assert r.status_code == 200, r.text
    r, root = post(queue, {"Action": "ReceiveMessage"}, method="GET")
    assert text(root, "q:ReceiveMessageResult/q:Message/q:Body") == "by GET"
    # A GET / without an action is still the dashboard.
    r = requests.get(endpoint + "/", timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")

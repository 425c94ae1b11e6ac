// The AWS SDK for JavaScript v3 (@aws-sdk/client-sqs) against sluice's SQS API.
//
// Needs a running sluice: SLUICE_SQS_ENDPOINT=http://127.0.0.1:PORT node --test
// (run.sh in this folder starts one). The SDK checks MD5OfBody / MD5OfMessageBody itself;
// the message-attribute digests are checked here with SQS's documented algorithm.

import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";

import {
  ChangeMessageVisibilityBatchCommand,
  ChangeMessageVisibilityCommand,
  CreateQueueCommand,
  DeleteMessageBatchCommand,
  DeleteMessageCommand,
  DeleteQueueCommand,
  GetQueueAttributesCommand,
  GetQueueUrlCommand,
  ListQueuesCommand,
  QueueDoesNotExist,
  ReceiveMessageCommand,
  SQSClient,
  SQSServiceException,
  SendMessageBatchCommand,
  SendMessageCommand,
} from "@aws-sdk/client-sqs";

const endpoint = process.env.SLUICE_SQS_ENDPOINT;
if (!endpoint) {
  throw new Error("set SLUICE_SQS_ENDPOINT (or use run.sh, which starts sluice)");
}

const client = new SQSClient({
  endpoint,
  region: "us-east-1",
  credentials: { accessKeyId: "x", secretAccessKey: "x" },
  maxAttempts: 1,
});

/** SQS's MD5 of message attributes: sorted names, length-prefixed fields, transport byte. */
function md5OfAttributes(attrs) {
  const names = Object.keys(attrs).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  if (names.length === 0) return undefined;
  const parts = [];
  const field = (buf) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(buf.length);
    parts.push(len, buf);
  };
  for (const name of names) {
    const a = attrs[name];
    field(Buffer.from(name, "utf8"));
    field(Buffer.from(a.DataType, "utf8"));
    if (a.DataType.split(".")[0] === "Binary") {
      parts.push(Buffer.from([2]));
      field(Buffer.from(a.BinaryValue));
    } else {
      parts.push(Buffer.from([1]));
      field(Buffer.from(a.StringValue, "utf8"));
    }
  }
  return createHash("md5").update(Buffer.concat(parts)).digest("hex");
}

const md5 = (s) => createHash("md5").update(Buffer.from(s, "utf8")).digest("hex");
const unique = (p) => `${p}-${randomBytes(6).toString("hex")}`;

/** Normalize SDK attributes (BinaryValue comes back as Uint8Array) for deep comparison. */
const norm = (attrs) =>
  Object.fromEntries(
    Object.entries(attrs ?? {}).map(([k, v]) => [
      k,
      v.BinaryValue !== undefined
        ? { DataType: v.DataType, BinaryValue: Buffer.from(v.BinaryValue).toString("base64") }
        : { DataType: v.DataType, StringValue: v.StringValue },
    ]),
  );

async function receiveUntil(QueueUrl, want, extra = {}) {
  const got = [];
  const deadline = Date.now() + 10_000;
  while (got.length < want && Date.now() < deadline) {
    const r = await client.send(
      new ReceiveMessageCommand({ QueueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1, ...extra }),
    );
    got.push(...(r.Messages ?? []));
  }
  return got;
}

async function counts(QueueUrl) {
  const r = await client.send(
    new GetQueueAttributesCommand({
      QueueUrl,
      AttributeNames: ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    }),
  );
  return {
    visible: Number(r.Attributes.ApproximateNumberOfMessages),
    inflight: Number(r.Attributes.ApproximateNumberOfMessagesNotVisible),
  };
}

describe("sluice via @aws-sdk/client-sqs", () => {
  const name = unique("js");
  let url;

  before(async () => {
    const r = await client.send(
      new CreateQueueCommand({
        QueueName: name,
        Attributes: { VisibilityTimeout: "30" },
        tags: { suite: "js" },
      }),
    );
    url = r.QueueUrl;
  });

  after(async () => {
    if (url) {
      try {
        await client.send(new DeleteQueueCommand({ QueueUrl: url }));
      } catch (e) {
        if (!(e instanceof QueueDoesNotExist)) throw e;
      }
    }
    client.destroy();
  });

  test("create queue returns the queue URL", async () => {
    assert.equal(url, `${endpoint.replace(/\/$/, "")}/000000000000/${name}`);
    const r = await client.send(new GetQueueUrlCommand({ QueueName: name }));
    assert.equal(r.QueueUrl, url);
    const list = await client.send(new ListQueuesCommand({ QueueNamePrefix: name }));
    assert.deepEqual(list.QueueUrls, [url]);
  });

  test("send with attributes, receive them back, delete", async () => {
    const attrs = {
      city: { DataType: "String", StringValue: "Zürich" },
      n: { DataType: "Number", StringValue: "12.5" },
      count: { DataType: "Number.int", StringValue: "7" },
      doc: { DataType: "String.json", StringValue: '{"a":1}' },
      bin: { DataType: "Binary", BinaryValue: new Uint8Array([0, 1, 2, 255]) },
    };
    const body = "hello from js ✓";
    const sent = await client.send(
      new SendMessageCommand({ QueueUrl: url, MessageBody: body, MessageAttributes: attrs }),
    );
    // The SDK has already verified MD5OfMessageBody; check both digests here too.
    assert.equal(sent.MD5OfMessageBody, md5(body));
    assert.equal(sent.MD5OfMessageAttributes, md5OfAttributes(attrs));

    const [m] = await receiveUntil(url, 1, {
      MessageAttributeNames: ["All"],
      MessageSystemAttributeNames: ["All"],
    });
    assert.ok(m, "no message received");
    assert.equal(m.MessageId, sent.MessageId);
    assert.equal(m.Body, body);
    assert.equal(m.MD5OfBody, md5(body));
    assert.deepEqual(norm(m.MessageAttributes), norm(attrs));
    assert.equal(m.MD5OfMessageAttributes, md5OfAttributes(attrs));
    assert.equal(m.Attributes.ApproximateReceiveCount, "1");
    assert.ok(Number(m.Attributes.SentTimestamp) > 1_600_000_000_000);
    assert.equal(m.Attributes.SenderId, "000000000000");

    await client.send(new DeleteMessageCommand({ QueueUrl: url, ReceiptHandle: m.ReceiptHandle }));
    assert.deepEqual(await counts(url), { visible: 0, inflight: 0 });
  });

  test("send batch, change visibility, delete batch", async () => {
    const entries = Array.from({ length: 4 }, (_, i) => ({
      Id: `m${i}`,
      MessageBody: `batch ${i}`,
      MessageAttributes: { i: { DataType: "Number", StringValue: String(i) } },
    }));
    const sent = await client.send(new SendMessageBatchCommand({ QueueUrl: url, Entries: entries }));
    assert.equal(sent.Failed?.length ?? 0, 0);
    assert.equal(sent.Successful.length, 4);
    for (const s of sent.Successful) {
      const e = entries.find((x) => x.Id === s.Id);
      assert.equal(s.MD5OfMessageBody, md5(e.MessageBody));
      assert.equal(s.MD5OfMessageAttributes, md5OfAttributes(e.MessageAttributes));
    }

    const got = await receiveUntil(url, 4, { VisibilityTimeout: 60, MessageAttributeNames: ["All"] });
    assert.equal(got.length, 4);
    assert.deepEqual(got.map((m) => m.Body).sort(), entries.map((e) => e.MessageBody).sort());

    // Make one visible again at once, keep the others hidden.
    await client.send(
      new ChangeMessageVisibilityCommand({
        QueueUrl: url,
        ReceiptHandle: got[0].ReceiptHandle,
        VisibilityTimeout: 0,
      }),
    );
    const cv = await client.send(
      new ChangeMessageVisibilityBatchCommand({
        QueueUrl: url,
        Entries: got.slice(1).map((m, i) => ({
          Id: `v${i}`,
          ReceiptHandle: m.ReceiptHandle,
          VisibilityTimeout: 120,
        })),
      }),
    );
    assert.equal(cv.Successful.length, 3);
    assert.equal(cv.Failed?.length ?? 0, 0);

    const again = await receiveUntil(url, 1, {
      VisibilityTimeout: 60,
      MessageSystemAttributeNames: ["ApproximateReceiveCount"],
    });
    assert.equal(again.length, 1);
    assert.equal(again[0].MessageId, got[0].MessageId);
    assert.equal(again[0].Attributes.ApproximateReceiveCount, "2");

    const del = await client.send(
      new DeleteMessageBatchCommand({
        QueueUrl: url,
        Entries: [
          { Id: "again", ReceiptHandle: again[0].ReceiptHandle },
          ...got.slice(1).map((m, i) => ({ Id: `d${i}`, ReceiptHandle: m.ReceiptHandle })),
          { Id: "bad", ReceiptHandle: "garbage" },
        ],
      }),
    );
    assert.equal(del.Successful.length, 4);
    assert.equal(del.Failed.length, 1);
    assert.equal(del.Failed[0].Id, "bad");
    assert.equal(del.Failed[0].Code, "ReceiptHandleIsInvalid");
    assert.deepEqual(await counts(url), { visible: 0, inflight: 0 });
  });

  test("get queue attributes", async () => {
    const r = await client.send(
      new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ["All"] }),
    );
    assert.equal(r.Attributes.VisibilityTimeout, "30");
    assert.equal(r.Attributes.QueueArn, `arn:aws:sqs:us-east-1:000000000000:${name}`);
    assert.equal(r.Attributes.DelaySeconds, "0");
  });

  test("a missing queue is QueueDoesNotExist", async () => {
    const missing = `${endpoint.replace(/\/$/, "")}/000000000000/${unique("nope")}`;
    await assert.rejects(
      client.send(new ReceiveMessageCommand({ QueueUrl: missing })),
      (e) => {
        assert.ok(e instanceof QueueDoesNotExist, `got ${e.name}: ${e.message}`);
        assert.ok(e instanceof SQSServiceException);
        assert.equal(e.name, "QueueDoesNotExist");
        assert.equal(e.$metadata.httpStatusCode, 400);
        return true;
      },
    );
    await assert.rejects(client.send(new GetQueueUrlCommand({ QueueName: unique("nope") })), {
      name: "QueueDoesNotExist",
    });
  });

  test("delete queue", async () => {
    const other = unique("js-del");
    const r = await client.send(new CreateQueueCommand({ QueueName: other }));
    await client.send(new DeleteQueueCommand({ QueueUrl: r.QueueUrl }));
    await assert.rejects(client.send(new GetQueueUrlCommand({ QueueName: other })), {
      name: "QueueDoesNotExist",
    });
  });
});

"""scripts/dlq.py against the local AWS-API server (scripts/moto_server.py): listing and redriving
both kinds of dead-letter message, poison records and OnFailure batches.

    .venv/bin/python -m unittest discover -s tests/python -v      (from the repository root)
"""
import base64
import contextlib
import io
import json
import os
import re
import subprocess
import sys
import threading
import time
import unittest
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPTS = os.path.join(ROOT, "scripts")
sys.path.insert(0, SCRIPTS)

import boto3  # noqa: E402

import dlq  # noqa: E402
import local_aws  # noqa: E402

PYTHON = sys.executable
SHARD = "shardId-000000000000"


def event(event_id, **extra):
    return json.dumps({"eventId": event_id, **extra}).encode()


def on_failure_message(stream_arn, shard, start, end, function="f", condition="RetryAttemptsExhausted"):
    return {
        "requestContext": {"requestId": str(uuid.uuid4()),
                           "functionArn": f"arn:aws:lambda:us-east-1:123456789012:function:{function}",
                           "condition": condition, "approximateInvokeCount": 3},
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "version": "1.0", "timestamp": "2019-11-14T00:38:06.021Z",
        "KinesisBatchInfo": {"shardId": shard, "startSequenceNumber": str(start), "endSequenceNumber": str(end),
                             "approximateArrivalOfFirstRecord": "2019-11-14T00:38:04.835Z",
                             "approximateArrivalOfLastRecord": "2019-11-14T00:38:05.580Z",
                             "batchSize": 500, "streamArn": stream_arn},
    }


class DlqTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = subprocess.Popen(
            [PYTHON, "-u", os.path.join(SCRIPTS, "moto_server.py"), "-H", "127.0.0.1", "-p", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
        found = threading.Event()
        cls.server_log = []

        def drain():
            # Reads the server's output to the end: the port announcement, then one line per request
            # (left unread, they would fill the pipe and stall the server).
            for line in cls.server.stdout:
                cls.server_log.append(line)
                m = re.search(r"Running on (http://127\.0\.0\.1:\d+)", line)
                if m and not found.is_set():
                    cls.endpoint = m.group(1)
                    found.set()

        threading.Thread(target=drain, daemon=True).start()
        if not found.wait(15):
            cls.server.kill()
            cls.server.wait()
            raise RuntimeError("moto_server.py did not announce its port:\n" + "".join(cls.server_log))
        try:
            subprocess.run([PYTHON, os.path.join(SCRIPTS, "local_aws.py"), "bootstrap", "--endpoint", cls.endpoint],
                           check=True, cwd=ROOT, timeout=60)
            cls.env = local_aws.settings()
            kw = dict(endpoint_url=cls.endpoint, region_name=cls.env["AWS_REGION"],
                      aws_access_key_id=cls.env["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=cls.env["AWS_SECRET_ACCESS_KEY"])
            cls.sqs = boto3.client("sqs", **kw)
            cls.kinesis = boto3.client("kinesis", **kw)
            cls.ddb = boto3.client("dynamodb", **kw)
            cls.s3 = boto3.client("s3", **kw)
            cls.dlq_url = cls.sqs.get_queue_url(QueueName=cls.env["DLQ_NAME"])["QueueUrl"]
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.server.terminate()
        try:
            cls.server.wait(10)
        except subprocess.TimeoutExpired:
            cls.server.kill()
            cls.server.wait()

    def setUp(self):
        # dlq.py reads its settings from local.env unless the environment overrides them.
        self._saved_env = {k: os.environ.pop(k) for k in ("DLQ_URL", "STREAM_NAME", "IDEMPOTENCY_TABLE", "AWS_REGION")
                           if k in os.environ}
        self.empty_queue()
        self.stream = f"dlq-test-{uuid.uuid4().hex[:12]}"
        self.kinesis.create_stream(StreamName=self.stream, ShardCount=1)
        self.kinesis.get_waiter("stream_exists").wait(StreamName=self.stream, WaiterConfig={"Delay": 0.1})
        self.stream_arn = self.kinesis.describe_stream_summary(
            StreamName=self.stream)["StreamDescriptionSummary"]["StreamARN"]

    def tearDown(self):
        os.environ.update(self._saved_env)

    # -- helpers ---------------------------------------------------------------------------------

    def empty_queue(self):
        # Not PurgeQueue: the server allows one a minute, as SQS does. Every message is visible here
        # (dlq.py and queue_bodies leave what they keep visible).
        while True:
            got = self.sqs.receive_message(QueueUrl=self.dlq_url, MaxNumberOfMessages=10).get("Messages", [])
            if not got:
                return
            for m in got:
                self.sqs.delete_message(QueueUrl=self.dlq_url, ReceiptHandle=m["ReceiptHandle"])

    def send(self, body):
        self.sqs.send_message(QueueUrl=self.dlq_url, MessageBody=json.dumps(body))

    def queue_bodies(self):
        """The bodies in the queue, left visible for whoever looks next."""
        out, handles = [], []
        while True:
            got = self.sqs.receive_message(QueueUrl=self.dlq_url, MaxNumberOfMessages=10,
                                           VisibilityTimeout=30).get("Messages", [])
            if not got:
                break
            out.extend(json.loads(m["Body"]) for m in got)
            handles.extend(m["ReceiptHandle"] for m in got)
        for h in handles:
            self.sqs.change_message_visibility(QueueUrl=self.dlq_url, ReceiptHandle=h, VisibilityTimeout=0)
        return out

    def put(self, data, key):
        return self.kinesis.put_record(StreamName=self.stream, Data=data, PartitionKey=key)["SequenceNumber"]

    def records_after(self, sequence_number=None):
        """Every record of the test stream's shard after sequence_number (all, without it)."""
        kw = ({"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "StartingSequenceNumber": sequence_number}
              if sequence_number else {"ShardIteratorType": "TRIM_HORIZON"})
        it = self.kinesis.get_shard_iterator(StreamName=self.stream, ShardId=SHARD, **kw)["ShardIterator"]
        out = []
        while it:
            page = self.kinesis.get_records(ShardIterator=it)
            if not page["Records"]:
                return out
            out.extend(page["Records"])
            it = page.get("NextShardIterator")
        return out

    def run_redrive(self, stream=None, choice=None):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            dlq.redrive(self.endpoint, stream, keep_unknown=False, choice=choice)
        return out.getvalue()

    def poison(self, seq, reason, cause=None, key=None):
        """A poison record in the queue, as a function captures it; returns its data."""
        data = event(f"evt-{seq}", orderId=f"o-{seq}")
        body = {"function": "email", "eventSourceArn": self.stream_arn, "shardId": SHARD,
                "partitionKey": key or f"order-{seq}", "sequenceNumber": str(seq), "subSequenceNumber": None,
                "data": base64.b64encode(data).decode(), "reason": reason, "capturedAtMs": 1}
        if cause:
            body["cause"] = cause
        self.send(body)
        return data

    # -- tests -----------------------------------------------------------------------------------

    def test_s3_failure_record_is_redriven_in_order_and_deleted(self):
        # Two failure records as the event source mapping writes them to S3: the payload as a JSON
        # string (ours) and as an object (another writer's); records of two keys, interleaved.
        bucket = self.env["FAILURE_BUCKET"]
        kept = [("k1", event("e1")), ("k2", event("e2")), ("k1", event("e3"))]
        payload = {"Records": [
            {"kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": k, "sequenceNumber": str(10 + i),
                         "data": base64.b64encode(d).decode(), "approximateArrivalTimestamp": 1.0},
             "eventSource": "aws:kinesis", "eventID": f"{SHARD}:{10 + i}"}
            for i, (k, d) in enumerate(kept)]}
        as_string = dict(on_failure_message(self.stream_arn, SHARD, 10, 12), payload=json.dumps(payload))
        as_object = dict(on_failure_message(self.stream_arn, SHARD, 20, 20),
                         payload={"Records": [{"kinesis": {"partitionKey": "k3", "data": base64.b64encode(
                             event("e4")).decode(), "sequenceNumber": "20"}}]})
        keys = [f"aws/lambda/uuid-1/{SHARD}/2026/11/30/2026-11-30T05.00.0{i}-{uuid.uuid4()}" for i in (1, 2)]
        for key, body in zip(keys, (as_string, as_object)):
            self.s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(body).encode())
        listed = io.StringIO()
        with contextlib.redirect_stdout(listed):
            dlq.list_messages(self.endpoint)
        self.assertIn("2 failure records", listed.getvalue())
        self.assertIn("3 records kept", listed.getvalue())

        # The other function's record of the first batch: the same range, redriven once.
        twin = dict(as_string, requestContext=dict(as_string["requestContext"],
                                                   functionArn="arn:aws:lambda:us-east-1:123456789012:function:g"))
        self.s3.put_object(Bucket=bucket, Key=keys[0] + "-twin", Body=json.dumps(twin).encode())
        out = self.run_redrive()
        self.assertIn("3 objects redriven from s3://", out)
        back = [(r["PartitionKey"], r["Data"]) for r in self.records_after()]
        self.assertEqual(back, kept + [("k3", event("e4"))], "in order, with their keys, once")
        left = self.s3.list_objects_v2(Bucket=bucket, Prefix="aws/lambda/").get("KeyCount", 0)
        self.assertEqual(left, 0, "the objects are deleted once redriven")

    def test_a_large_poison_record_behind_a_pointer_is_redriven(self):
        # A function's capture of a record too large for a message: the whole record in the
        # bucket, its metadata and a pointer in the queue.
        bucket, key = self.env["FAILURE_BUCKET"], f"poison/f/{SHARD}/77.json"
        data = event("big-1", note="x" * 300_000)
        whole = {"function": "f", "shardId": SHARD, "partitionKey": "big", "sequenceNumber": "77",
                 "data": base64.b64encode(data).decode(), "reason": "schema", "capturedAtMs": 1}
        self.s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(whole).encode())
        pointer = {k: v for k, v in whole.items() if k != "data"}
        pointer["s3Pointer"] = {"bucket": bucket, "key": key, "size": len(json.dumps(whole))}
        self.send(pointer)
        listed = io.StringIO()
        with contextlib.redirect_stdout(listed):
            dlq.list_messages(self.endpoint)
        self.assertIn(f"in s3://{bucket}/{key}", listed.getvalue())
        out = self.run_redrive(self.stream)
        self.assertIn("redrove poison record", out)
        self.assertEqual([(r["PartitionKey"], r["Data"]) for r in self.records_after()], [("big", data)])
        self.assertEqual(self.queue_bodies(), [])
        with self.assertRaises(Exception):
            self.s3.head_object(Bucket=bucket, Key=key)

    def test_redrive_chooses_and_keeps_what_would_fail_again(self):
        self.poison(101, "permanent error: SES refused the address", cause="effect")
        self.poison(102, "the ORDER_PLACED payload violates its schema: items is empty", cause="data")
        self.poison(103, "outcome unknown, not repeated to avoid a duplicate: timeout", cause="effect")
        self.poison(104, "not an event envelope: expected value")  # an older message: no cause

        dry = self.run_redrive(self.stream, dlq.Choice(dry_run=True))
        self.assertEqual(self.records_after(), [], "a dry run puts nothing back")
        self.assertEqual(len(self.queue_bodies()), 4, "and deletes nothing")
        self.assertIn("would redrive poison record shardId-000000000000 seq 101", dry)
        self.assertIn("would redrive poison record shardId-000000000000 seq 103", dry)
        self.assertRegex(dry, r"kept poison record \S+ seq 102: its data is what is wrong")
        self.assertRegex(dry, r"kept poison record \S+ seq 104: its data is what is wrong")
        self.assertIn("dry run: 2 of 4 in the queue would be redriven, 2 kept (they would fail again)", dry)

        out = self.run_redrive(self.stream, dlq.Choice(only_reason="SES"))
        self.assertEqual([r["PartitionKey"] for r in self.records_after()], ["order-101"], out)
        out = self.run_redrive(self.stream, dlq.Choice(sequences=["102"], everything=True))
        self.assertEqual([r["PartitionKey"] for r in self.records_after()], ["order-101", "order-102"], out)
        left = sorted(b["sequenceNumber"] for b in self.queue_bodies())
        self.assertEqual(left, ["103", "104"])

    def test_poison_record_is_put_back_and_deleted(self):
        data = event("evt-poison-1", orderId="o-1")
        self.send({"function": "inventory", "eventSourceArn": self.stream_arn, "shardId": SHARD,
                   "partitionKey": "order-o-1", "sequenceNumber": "4960000000001", "subSequenceNumber": None,
                   "data": base64.b64encode(data).decode(), "reason": "invalid JSON", "capturedAtMs": 1})
        table = self.env["IDEMPOTENCY_TABLE"]
        self.ddb.put_item(TableName=table, Item={"pk": {"S": "inventory#evt-poison-1"}, "status": {"S": "UNKNOWN"}})

        out = self.run_redrive(self.stream)

        records = self.records_after()
        self.assertEqual([(r["Data"], r["PartitionKey"]) for r in records], [(data, "order-o-1")], out)
        self.assertEqual(self.queue_bodies(), [], out)
        self.assertNotIn("Item", self.ddb.get_item(TableName=table, Key={"pk": {"S": "inventory#evt-poison-1"}},
                                                   ConsistentRead=True), "the UNKNOWN entry is forgotten")

    def test_on_failure_batch_replays_exactly_its_range_once(self):
        before = [self.put(event(f"evt-before-{i}"), f"key-b{i}") for i in range(2)]
        batch = [(event(f"evt-in-{i}"), f"key-{i % 2}") for i in range(4)]
        seqs = [self.put(data, key) for data, key in batch]
        after = [self.put(event(f"evt-after-{i}"), f"key-a{i}") for i in range(2)]
        self.assertTrue(int(before[-1]) < int(seqs[0]) and int(seqs[-1]) < int(after[0]))
        # The same batch from two functions' mappings.
        self.send(on_failure_message(self.stream_arn, SHARD, seqs[0], seqs[-1], function="inventory"))
        self.send(on_failure_message(self.stream_arn, SHARD, seqs[0], seqs[-1], function="email",
                                     condition="RecordAgeExceeded"))
        # An UNKNOWN entry stays: that applies to poison records only.
        table = self.env["IDEMPOTENCY_TABLE"]
        self.ddb.put_item(TableName=table, Item={"pk": {"S": "email#evt-in-0"}, "status": {"S": "UNKNOWN"}})

        out = self.run_redrive()  # the stream comes from streamArn

        replayed = self.records_after(after[-1])
        self.assertEqual([(r["Data"], r["PartitionKey"]) for r in replayed], batch, out)
        self.assertEqual(self.queue_bodies(), [], out)
        self.assertIn("4 records put back", out)
        self.assertIn("Item", self.ddb.get_item(TableName=table, Key={"pk": {"S": "email#evt-in-0"}},
                                                ConsistentRead=True))

        # Nothing left to do: a second run replays nothing.
        self.run_redrive()
        self.assertEqual(len(self.records_after(after[-1])), len(batch))

    def test_unreadable_on_failure_batch_is_kept_and_reported(self):
        seqs = [self.put(event(f"evt-{i}"), "k") for i in range(3)]
        last = int(seqs[-1])
        gone = [
            on_failure_message(self.stream_arn, "shardId-000000000099", seqs[0], seqs[-1]),  # no such shard
            on_failure_message(self.stream_arn, SHARD, last + 100, last + 105),  # past the end
            on_failure_message(self.stream_arn, SHARD, seqs[1], last + 5),  # only part of it is there
        ]
        for body in gone:
            self.send(body)

        out = self.run_redrive()

        self.assertEqual(self.records_after(seqs[-1]), [], "nothing was put back")
        kept = sorted(self.queue_bodies(), key=lambda b: b["KinesisBatchInfo"]["startSequenceNumber"])
        self.assertEqual(kept, sorted(gone, key=lambda b: b["KinesisBatchInfo"]["startSequenceNumber"]))
        self.assertEqual(out.count("kept OnFailure batch"), 3, out)
        self.assertIn("no longer in the stream", out)
        self.assertIn("shardId-000000000099", out)
        self.assertIn("0 redriven", out)

    def test_list_shows_both_kinds(self):
        self.send({"function": "email", "eventSourceArn": self.stream_arn, "shardId": SHARD,
                   "partitionKey": "order-o-9", "sequenceNumber": "4960000000009", "subSequenceNumber": 2,
                   "data": base64.b64encode(event("evt-9")).decode(), "reason": "missing field orderId",
                   "capturedAtMs": 1})
        self.send(on_failure_message(self.stream_arn, "shardId-000000000001", "49600000000000000001",
                                     "49600000000000000042", function="inventory"))

        out = subprocess.run([PYTHON, os.path.join(SCRIPTS, "dlq.py"), "list", "--endpoint", self.endpoint],
                             cwd=ROOT, capture_output=True, text=True, timeout=60,
                             env={k: v for k, v in os.environ.items() if k not in ("DLQ_URL", "STREAM_NAME")})

        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("2 messages", out.stdout)
        self.assertIn("2 messages in queue order-events-dlq on the local stack", out.stdout)
        self.assertIn("1 poison record, 1 OnFailure batch\n", out.stdout)
        self.assertIn("poison record from email: shardId-000000000000 seq 4960000000009/2 key 'order-o-9'",
                      out.stdout)
        self.assertIn("missing field orderId", out.stdout)
        self.assertIn(f"OnFailure batch from inventory: RetryAttemptsExhausted, stream {self.stream} "
                      "shardId-000000000001 seq 49600000000000000001..49600000000000000042, batchSize 500",
                      out.stdout)
        self.assertEqual(len(self.queue_bodies()), 2, "listing consumes nothing")


if __name__ == "__main__":
    unittest.main()

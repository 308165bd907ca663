#!/usr/bin/env python3
"""Look at the dead-letter queue of poison records, and redrive them into the stream.

    dlq.py list    [--endpoint URL]                       print each message: identity, function, reason
    dlq.py redrive [--endpoint URL] [--stream NAME] [--keep-unknown]
                                                          put each record back on the stream, then delete it

Each message is a poison record as the functions captured it (JSON): the original base64 data, the
partition key, sequence number, shard, function, reason and time. Redriving puts the data back on
the stream with its partition key, once per record even when several functions captured it, and
deletes the messages only after the stream accepted it.

An email whose send got no answer is marked UNKNOWN in the idempotency table, so that it is never
sent twice by accident. Redriving says it should be sent: unless --keep-unknown is given, the
UNKNOWN entry of each redriven event is deleted so the function sends it.

Settings come from the environment, else from local.env: DLQ_URL, STREAM_NAME (order-events),
IDEMPOTENCY_TABLE, AWS_REGION. Without --endpoint it talks to AWS with your usual credentials.
"""
import argparse
import base64
import json
import os
import sys

import boto3
from botocore.exceptions import ClientError

import local_aws

def settings(endpoint):
    # The local stack: local.env holds its names and dummy credentials.
    env = local_aws.settings() if endpoint else {"STREAM_NAME": "order-events"}
    for k in ("DLQ_URL", "STREAM_NAME", "IDEMPOTENCY_TABLE", "AWS_REGION"):
        if os.environ.get(k):
            env[k] = os.environ[k]
    if "DLQ_URL" not in env:
        sys.exit("set DLQ_URL (the dead-letter queue's URL)")
    return env


def client(name, endpoint, env):
    kw = {"region_name": env.get("AWS_REGION")}
    if endpoint:
        kw.update(endpoint_url=endpoint, aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                  aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    return boto3.client(name, **kw)


def receive_all(sqs, url):
    """Every message, hidden for five minutes while we work on them."""
    out = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=300,
                                  WaitTimeSeconds=0).get("Messages", [])
        if not got:
            return out
        out.extend(got)


def identity(record):
    return (record.get("shardId"), record.get("sequenceNumber"), record.get("subSequenceNumber"))


def event_key(record):
    """The idempotency key the functions use: the eventId, else shard:sequence[:sub]."""
    try:
        event = json.loads(base64.b64decode(record["data"]))
        if isinstance(event, dict) and event.get("eventId"):
            return event["eventId"]
    except (ValueError, TypeError):
        pass
    key = f"{record.get('shardId') or 'shard'}:{record.get('sequenceNumber')}"
    sub = record.get("subSequenceNumber")
    return f"{key}:{sub}" if sub is not None else key


def list_messages(endpoint):
    env = settings(endpoint)
    sqs = client("sqs", endpoint, env)
    messages = receive_all(sqs, env["DLQ_URL"])
    print(f"{len(messages)} poison records in {env['DLQ_URL']}")
    for m in messages:
        r = json.loads(m["Body"])
        sub = f"/{r['subSequenceNumber']}" if r.get("subSequenceNumber") is not None else ""
        print(f"- {r.get('function')}: {r.get('shardId')} seq {r.get('sequenceNumber')}{sub} "
              f"key {r.get('partitionKey')!r}, {len(r.get('data', ''))} base64 chars\n    {r.get('reason')}")
    # Make them visible again at once: listing consumes nothing.
    for m in messages:
        sqs.change_message_visibility(QueueUrl=env["DLQ_URL"], ReceiptHandle=m["ReceiptHandle"],
                                      VisibilityTimeout=0)


def redrive(endpoint, stream, keep_unknown):
    env = settings(endpoint)
    stream = stream or env["STREAM_NAME"]
    sqs, kinesis = client("sqs", endpoint, env), client("kinesis", endpoint, env)
    ddb = client("dynamodb", endpoint, env) if env.get("IDEMPOTENCY_TABLE") else None
    by_record = {}
    for m in receive_all(sqs, env["DLQ_URL"]):
        r = json.loads(m["Body"])
        by_record.setdefault(identity(r), (r, []))[1].append(m)
    redriven, deleted = 0, set()
    try:
        for r, messages in by_record.values():
            try:
                data = base64.b64decode(r["data"], validate=True)
            except ValueError:
                print(f"kept {r.get('shardId')} seq {r.get('sequenceNumber')}: its data was never base64, "
                      "so it cannot go back on the stream")
                continue
            if ddb and not keep_unknown:
                forget_unknown(ddb, env, r, messages)
            kinesis.put_record(StreamName=stream, Data=data, PartitionKey=r.get("partitionKey") or "redrive")
            for m in messages:
                sqs.delete_message(QueueUrl=env["DLQ_URL"], ReceiptHandle=m["ReceiptHandle"])
                deleted.add(m["ReceiptHandle"])
            redriven += 1
            print(f"redrove {r.get('shardId')} seq {r.get('sequenceNumber')} "
                  f"({len(messages)} message{'s' if len(messages) > 1 else ''}) into {stream}")
    finally:
        # Whatever was not redriven shows again at once, for the next look.
        for _, messages in by_record.values():
            for m in messages:
                if m["ReceiptHandle"] not in deleted:
                    sqs.change_message_visibility(QueueUrl=env["DLQ_URL"], ReceiptHandle=m["ReceiptHandle"],
                                                  VisibilityTimeout=0)
    print(f"{redriven} records redriven, {len(by_record) - redriven} left in the queue")


def forget_unknown(ddb, env, record, messages):
    """Deletes the UNKNOWN idempotency entries of a redriven event, so its functions act on it."""
    for fn in {json.loads(m["Body"]).get("function") for m in messages}:
        try:
            ddb.delete_item(TableName=env["IDEMPOTENCY_TABLE"],
                            Key={"pk": {"S": f"{fn}#{event_key(record)}"}},
                            ConditionExpression="#s = :unknown",
                            ExpressionAttributeNames={"#s": "status"},
                            ExpressionAttributeValues={":unknown": {"S": "UNKNOWN"}})
        except ClientError as e:
            if e.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    ls = sub.add_parser("list")
    ls.add_argument("--endpoint")
    rd = sub.add_parser("redrive")
    rd.add_argument("--endpoint")
    rd.add_argument("--stream")
    rd.add_argument("--keep-unknown", action="store_true")
    a = p.parse_args()
    if a.cmd == "list":
        list_messages(a.endpoint)
    else:
        redrive(a.endpoint, a.stream, a.keep_unknown)


if __name__ == "__main__":
    main()

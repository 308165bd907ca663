#!/usr/bin/env python3
"""Look at the failures kept for a person (the dead-letter queue and the failure bucket), and
redrive them into the stream.

    dlq.py list    [--endpoint URL]                       print each one: what it is, and where from
    dlq.py redrive [--endpoint URL] [--stream NAME] [--keep-unknown] [--from all|queue|bucket]
                   [--dry-run] [--only-reason TEXT] [--sequence N]... [--all]
                                                          put its records back on the stream, then delete it

Choosing what to redrive: --dry-run lists what would go back and changes nothing; --only-reason
takes only poison records whose reason holds TEXT (and batches whose condition does); --sequence
takes only the record with that sequence number (and a batch whose range holds it), and can be given
more than once. A poison record whose data is itself what is wrong (not an event, a payload that
breaks its schema, an eventId reused for another payload) would fail again exactly the same way: it
is kept unless --all is given, and redrive says so.

The failure bucket (FAILURE_BUCKET; the template's FailureDestination s3, the default) holds the
batches the event source mapping gave up on, whole: Lambda's invocation record with the batch's
records and their data under `payload` (a JSON string, or an object). Redriving puts those records
back on the stream (the one in the record's streamArn, or --stream) in order, each with its
partition key, and deletes the object once all were put back. This works after the stream has
dropped the records: the object holds them.

The queue holds two kinds of message:

- A poison record, as a function captured it (JSON): the original base64 data, the partition key,
  sequence number, shard, function, reason and time. A record too large for a message is in the
  failure bucket, and the message holds its metadata and `s3Pointer: {bucket, key}`: the tool
  follows the pointer, and deletes the object with the message. Redriving puts the data back on the stream
  (--stream, else STREAM_NAME) with its partition key, once per record even when several functions
  captured it, and deletes the messages only after the stream accepted it.

- A batch the event source mapping gave up on (its DestinationConfig.OnFailure: retries exhausted,
  records too old, payload too large). Such a message holds no data, only the function, the
  condition, the stream ARN, the shard and the range of sequence numbers. Redriving reads that range
  back from the shard (the stream named in the ARN, or --stream) and puts every record of it back on
  the same stream with its original partition key, in order; the message is deleted only after every
  record of the range was put back. Messages naming the same shard and range (one per function whose
  mapping gave up) are redriven once and all deleted.
  The records exist only in the stream: an OnFailure message can be redriven only while the stream
  still holds its records (its retention period, 24 hours by default). Once they are trimmed, or the
  shard cannot be read, the message is kept and reported, and the records are lost.

Replaying an event already handled is harmless: the functions' idempotency key is the eventId in
the data (else shard:sequence), so a function skips what it has done. A redriven range may therefore
hold events that succeeded the first time.

An email whose send got no answer is marked UNKNOWN in the idempotency table, so that it is never
sent twice by accident. Redriving a poison record says it should be sent: unless --keep-unknown is
given, the UNKNOWN entry of each redriven poison record is deleted so the function sends it. The
records of an OnFailure batch are replayed as they are: their UNKNOWN entries stay.

A message of neither kind is shown by list and kept by redrive.

Settings come from the environment, else from local.env: DLQ_URL, STREAM_NAME (order-events),
IDEMPOTENCY_TABLE, AWS_REGION. Without --endpoint it talks to AWS with your usual credentials.
"""
import argparse
import base64
import json
import os
import sys
import time

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

import local_aws

# Reading a range back: GetRecords pages may be empty in the middle of a shard (a time gap with no
# records), so a few empty pages are tolerated before giving up on reaching the end of the range.
MAX_EMPTY_READS = 10
EMPTY_READ_PAUSE_S = 0.2


def settings(endpoint):
    # The local stack: local.env holds its names and dummy credentials.
    env = local_aws.settings() if endpoint else {"STREAM_NAME": "order-events"}
    for k in ("DLQ_URL", "STREAM_NAME", "IDEMPOTENCY_TABLE", "AWS_REGION", "FAILURE_BUCKET"):
        if os.environ.get(k):
            env[k] = os.environ[k]
    if "DLQ_URL" not in env:
        sys.exit("set DLQ_URL (the dead-letter queue's URL)")
    return env


def client(name, endpoint, env):
    kw = {"region_name": env.get("AWS_REGION")}
    if endpoint:
        # The local server answers at once or not at all: no long retries against a stopped stack.
        kw.update(endpoint_url=endpoint, aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                  aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                  config=Config(connect_timeout=2, retries={"total_max_attempts": 2}))
    return boto3.client(name, **kw)


def queue_label(env, endpoint):
    """The queue, named so a local one is not taken for AWS's."""
    name = env["DLQ_URL"].rstrip("/").rsplit("/", 1)[-1]
    return f"queue {name} on the local stack ({endpoint})" if endpoint else env["DLQ_URL"]


def plural(n, word, words=None):
    return f"{n} {word if n == 1 else (words or word + 's')}"


# A poison record whose data is what is wrong fails again, exactly so, when put back as it is. The
# functions say so in `cause` ("data"); older messages only in their reason.
DATA_REASONS = ("not an event envelope", "payload violates its schema", "malformed Kinesis record",
                "kinesis.data", "eventId reused with a different payload")


def fails_again(record):
    """Why a poison record would certainly fail again if redriven as it is, or None."""
    reason = record.get("reason") or ""
    if record.get("cause") == "data" or any(r in reason for r in DATA_REASONS):
        return "its data is what is wrong"
    return None


def selected(record_seq, reason, only_reason, sequences, first=None, last=None):
    """Whether a record (or a batch, first..last) passes --only-reason and --sequence."""
    if only_reason and only_reason.lower() not in (reason or "").lower():
        return False
    if sequences:
        if first is not None:
            return any(first <= int(s) <= last for s in sequences if s.isdigit())
        return str(record_seq) in sequences
    return True


FAILURE_PREFIX = "aws/lambda/"


def failure_objects(s3, bucket):
    """(key, record) of every failure record in the bucket, oldest key first."""
    out = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=FAILURE_PREFIX):
        for obj in page.get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
            try:
                record = json.loads(body)
            except ValueError:
                record = None
            out.append((obj["Key"], record))
    return sorted(out, key=lambda kv: kv[0])


def failure_records(record):
    """The Kinesis records an S3 failure record keeps (its `payload`: a string or an object), or
    None when it holds none."""
    if not isinstance(record, dict) or not isinstance(record.get("KinesisBatchInfo"), dict):
        return None
    payload = record.get("payload")
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except ValueError:
            return None
    records = payload.get("Records") if isinstance(payload, dict) else None
    if not isinstance(records, list):
        return None
    return [r["kinesis"] for r in records if isinstance(r, dict) and isinstance(r.get("kinesis"), dict)]


def receive_all(sqs, url):
    """Every message, hidden for five minutes while we work on them."""
    out = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=300,
                                  WaitTimeSeconds=0).get("Messages", [])
        if not got:
            return out
        out.extend(got)


POISON, ON_FAILURE, OTHER = "poison", "on-failure", "other"


def parse(message):
    """(kind, body): a poison record, an OnFailure batch (KinesisBatchInfo), or anything else."""
    try:
        body = json.loads(message["Body"])
    except ValueError:
        return OTHER, message["Body"]
    if not isinstance(body, dict):
        return OTHER, body
    if isinstance(body.get("KinesisBatchInfo"), dict):
        info = body["KinesisBatchInfo"]
        try:
            int(info["startSequenceNumber"]), int(info["endSequenceNumber"])
            if not info.get("shardId"):
                raise KeyError("shardId")
        except (KeyError, TypeError, ValueError):
            return OTHER, body
        return ON_FAILURE, body
    if any(k in body for k in ("data", "sequenceNumber", "partitionKey")):
        return POISON, body
    return OTHER, body


def follow_pointer(s3, body):
    """The whole poison record behind a pointer message (the extended-client pattern)."""
    pointer = body.get("s3Pointer") or {}
    got = s3.get_object(Bucket=pointer["bucket"], Key=pointer["key"])
    return json.loads(got["Body"].read())


def identity(record):
    return (record.get("shardId"), record.get("sequenceNumber"), record.get("subSequenceNumber"))


def stream_name_of(arn):
    """arn:aws:kinesis:REGION:ACCOUNT:stream/NAME -> NAME."""
    return arn.split(":stream/", 1)[1] if arn and ":stream/" in arn else None


def function_name_of(arn):
    """arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER] -> NAME[:QUALIFIER]."""
    parts = (arn or "").split(":")
    return ":".join(parts[6:]) if len(parts) > 6 and parts[5] == "function" else arn


def batch_range(body):
    info = body["KinesisBatchInfo"]
    return (stream_name_of(info.get("streamArn")), info["shardId"],
            int(info["startSequenceNumber"]), int(info["endSequenceNumber"]))


def describe_batch(body):
    info, ctx = body["KinesisBatchInfo"], body.get("requestContext") or {}
    stream = stream_name_of(info.get("streamArn")) or info.get("streamArn")
    return (f"{function_name_of(ctx.get('functionArn'))}: {ctx.get('condition')}, stream {stream} "
            f"{info['shardId']} seq {info['startSequenceNumber']}..{info['endSequenceNumber']}, "
            f"batchSize {info.get('batchSize')}")


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
    parsed = [parse(m) for m in messages]
    counts = {k: sum(1 for kind, _ in parsed if kind == k) for k in (POISON, ON_FAILURE, OTHER)}
    kinds = [plural(counts[POISON], "poison record"), plural(counts[ON_FAILURE], "OnFailure batch", "OnFailure batches")]
    if counts[OTHER]:
        kinds.append(f"{counts[OTHER]} unrecognised")
    print(f"{plural(len(messages), 'message')} in {queue_label(env, endpoint)}"
          + (": " + ", ".join(kinds) if messages else ""))
    for kind, r in parsed:
        if kind == POISON:
            size = f"{len(r.get('data') or '')} base64 chars"
            if isinstance(r.get("s3Pointer"), dict):
                p = r["s3Pointer"]
                size = f"{p.get('size')} bytes in s3://{p.get('bucket')}/{p.get('key')}"
            sub = f"/{r['subSequenceNumber']}" if r.get("subSequenceNumber") is not None else ""
            key = f"key {r['partitionKey']!r}" if r.get("partitionKey") is not None else "no partition key"
            again = fails_again(r)
            print(f"- poison record from {r.get('function')}: {r.get('shardId')} seq {r.get('sequenceNumber')}{sub} "
                  f"{key}, {size}\n    {r.get('reason')}"
                  + (f"\n    (redrive keeps it unless --all: {again}, so it would fail again)" if again else ""))
        elif kind == ON_FAILURE:
            print(f"- OnFailure batch from {describe_batch(r)}")
        else:
            text = r if isinstance(r, str) else json.dumps(r)
            print(f"- unrecognised message: {text[:200]}{'...' if len(text) > 200 else ''}")
    # Make them visible again at once: listing consumes nothing.
    for m in messages:
        sqs.change_message_visibility(QueueUrl=env["DLQ_URL"], ReceiptHandle=m["ReceiptHandle"],
                                      VisibilityTimeout=0)
    if env.get("FAILURE_BUCKET"):
        objects = failure_objects(client("s3", endpoint, env), env["FAILURE_BUCKET"])
        print(f"{plural(len(objects), 'failure record')} in s3://{env['FAILURE_BUCKET']}/{FAILURE_PREFIX}")
        for key, record in objects:
            records = failure_records(record)
            if records is None:
                print(f"- unrecognised object {key}")
                continue
            print(f"- batch from {describe_batch(record)}: {plural(len(records), 'record')} kept\n    {key}")


class Choice:
    """What redrive takes: everything chosen (--only-reason, --sequence), less what would fail
    again (unless --all); --dry-run changes nothing."""

    def __init__(self, dry_run=False, only_reason=None, sequences=(), everything=False):
        self.dry_run, self.only_reason = dry_run, only_reason
        self.sequences, self.everything = list(sequences or []), everything
        self.not_chosen = 0

    def batch(self, condition, start, end):
        ok = selected(None, condition, self.only_reason, self.sequences, start, end)
        self.not_chosen += not ok
        return ok

    def record(self, r):
        ok = selected(r.get("sequenceNumber"), r.get("reason"), self.only_reason, self.sequences)
        self.not_chosen += not ok
        return ok


def redrive(endpoint, stream, keep_unknown, source="all", choice=None):
    choice = choice or Choice()
    env = settings(endpoint)
    sqs, kinesis = client("sqs", endpoint, env), client("kinesis", endpoint, env)
    if source == "bucket":
        if not env.get("FAILURE_BUCKET"):
            sys.exit("set FAILURE_BUCKET (the failure bucket's name)")
        return redrive_bucket(client("s3", endpoint, env), kinesis, env["FAILURE_BUCKET"], stream, env, choice)
    ddb = client("dynamodb", endpoint, env) if env.get("IDEMPOTENCY_TABLE") else None
    by_record, by_batch, others = {}, {}, []
    for m in receive_all(sqs, env["DLQ_URL"]):
        kind, body = parse(m)
        if kind == POISON:
            by_record.setdefault(identity(body), (body, []))[1].append(m)
        elif kind == ON_FAILURE:
            by_batch.setdefault(batch_range(body), (body, []))[1].append(m)
        else:
            others.append(m)
    redriven, kept_again, deleted = 0, 0, set()

    def delete(messages):
        for m in messages:
            sqs.delete_message(QueueUrl=env["DLQ_URL"], ReceiptHandle=m["ReceiptHandle"])
            deleted.add(m["ReceiptHandle"])

    def count(messages):
        return plural(len(messages), "message")

    try:
        target = stream or env["STREAM_NAME"]
        for r, messages in by_record.values():
            what = f"poison record {r.get('shardId')} seq {r.get('sequenceNumber')}"
            if not choice.record(r):
                continue
            again = fails_again(r)
            if again and not choice.everything:
                kept_again += 1
                print(f"kept {what}: {again} ({r.get('reason')}), so it would fail again; --all puts it back anyway")
                continue
            if choice.dry_run:
                redriven += 1
                print(f"would redrive {what} into {target}: {r.get('reason')}")
                continue
            pointer = r.get("s3Pointer") if isinstance(r.get("s3Pointer"), dict) else None
            if pointer:
                try:
                    r = follow_pointer(client("s3", endpoint, env), r)
                except (ClientError, ValueError, KeyError) as e:
                    print(f"kept {r.get('shardId')} seq {r.get('sequenceNumber')}: its body in "
                          f"s3://{pointer.get('bucket')}/{pointer.get('key')} cannot be read ({e})")
                    continue
            try:
                data = base64.b64decode(r.get("data"), validate=True)
            except (ValueError, TypeError):
                print(f"kept {r.get('shardId')} seq {r.get('sequenceNumber')}: its data is missing or was never "
                      "base64, so it cannot go back on the stream")
                continue
            if ddb and not keep_unknown:
                forget_unknown(ddb, env, r, messages)
            kinesis.put_record(StreamName=target, Data=data, PartitionKey=r.get("partitionKey") or "redrive")
            delete(messages)
            if pointer:
                client("s3", endpoint, env).delete_object(Bucket=pointer["bucket"], Key=pointer["key"])
            redriven += 1
            print(f"redrove poison record {r.get('shardId')} seq {r.get('sequenceNumber')} "
                  f"({count(messages)}) into {target}")
        for (arn_stream, shard, start, end), (body, messages) in by_batch.items():
            target_stream = stream or arn_stream or env["STREAM_NAME"]
            what = f"OnFailure batch {target_stream} {shard} seq {start}..{end} ({count(messages)})"
            if not choice.batch((body.get("requestContext") or {}).get("condition"), start, end):
                continue
            if choice.dry_run:
                redriven += 1
                print(f"would redrive {what}")
                continue
            source = target_stream
            records, problem = read_range(kinesis, source, shard, start, end)
            if problem:
                print(f"kept {what}: {problem}; it cannot be redriven from the stream")
                continue
            try:
                put_back(kinesis, source, records)
            except ClientError as e:
                print(f"kept {what}: putting its records back failed ({e}); redriving it again replays "
                      "the whole range, which the functions' idempotency makes harmless")
                continue
            delete(messages)
            redriven += 1
            print(f"redrove {what}: {plural(len(records), 'record')} put back into {source}")
    finally:
        # Whatever was not redriven shows again at once, for the next look.
        for messages in [ms for _, ms in by_record.values()] + [ms for _, ms in by_batch.values()] + [others]:
            for m in messages:
                if m["ReceiptHandle"] not in deleted:
                    sqs.change_message_visibility(QueueUrl=env["DLQ_URL"], ReceiptHandle=m["ReceiptHandle"],
                                                  VisibilityTimeout=0)
    for m in others:
        print(f"kept message {m.get('MessageId')}: neither a poison record nor an OnFailure batch")
    total = len(by_record) + len(by_batch) + len(others)
    if choice.dry_run:
        print(f"dry run: {redriven} of {total} in the queue would be redriven"
              + (f", {kept_again} kept (they would fail again)" if kept_again else "")
              + (f", {choice.not_chosen} not chosen" if choice.not_chosen else "") + "; nothing was changed")
    else:
        print(f"{redriven} redriven (poison records and OnFailure batches), {total - redriven} left in the queue"
              + (f" ({kept_again} would fail again, {choice.not_chosen} not chosen)" if kept_again or choice.not_chosen else ""))
    if env.get("FAILURE_BUCKET") and source == "all":
        choice.not_chosen = 0
        redrive_bucket(client("s3", endpoint, env), kinesis, env["FAILURE_BUCKET"], stream, env, choice)


def redrive_bucket(s3, kinesis, bucket, stream, env, choice=None):
    """Puts the records of each S3 failure record back on the stream, then deletes the object.
    Objects of the same shard and range (one per function whose mapping gave up on the batch) are
    redriven once and all deleted."""
    choice = choice or Choice()
    objects = failure_objects(s3, bucket)
    batches, done = {}, 0
    for key, record in objects:
        records = failure_records(record)
        if records is None:
            print(f"kept s3://{bucket}/{key}: not a failure record with its records")
            continue
        batches.setdefault(batch_range(record), (record, records, []))[2].append(key)
    for (arn_stream, _, _, _), (record, records, keys) in batches.items():
        target = stream or arn_stream or env["STREAM_NAME"]
        what = f"{describe_batch(record)} ({plural(len(keys), 'object')})"
        _, _, start, end = batch_range(record)
        if not choice.batch((record.get("requestContext") or {}).get("condition"), start, end):
            continue
        if choice.dry_run:
            done += len(keys)
            print(f"would redrive failure record {what}: {plural(len(records), 'record')} into {target}")
            continue
        try:
            put_back(kinesis, target, [{"PartitionKey": r["partitionKey"], "Data": base64.b64decode(r["data"])}
                                       for r in records])
        except (ClientError, KeyError, ValueError, TypeError) as e:
            print(f"kept {what}: putting its records back failed ({e}); redriving it again replays the "
                  "whole batch, which the functions' idempotency makes harmless")
            continue
        for key in keys:
            s3.delete_object(Bucket=bucket, Key=key)
            done += 1
        print(f"redrove failure record {what}: {plural(len(records), 'record')} put back into {target}")
    if choice.dry_run:
        print(f"dry run: {done} of {plural(len(objects), 'object')} in s3://{bucket} would be redriven; nothing was changed")
    else:
        print(f"{done} objects redriven from s3://{bucket}, {len(objects) - done} left there")


def read_range(kinesis, stream, shard, start, end):
    """The records of [start, end] on the shard, in order, or (None, why not) when the shard no
    longer holds all of them."""
    try:
        iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard,
                                              ShardIteratorType="AT_SEQUENCE_NUMBER",
                                              StartingSequenceNumber=str(start))["ShardIterator"]
    except ClientError as e:
        code = e.response["Error"]["Code"]
        if code in ("InvalidArgumentException", "ResourceNotFoundException"):
            return None, f"its records are no longer in the stream ({code}: {e.response['Error'].get('Message')})"
        raise
    records, empty_reads = [], 0
    while iterator:
        try:
            page = kinesis.get_records(ShardIterator=iterator, Limit=1000)
        except ClientError as e:
            code = e.response["Error"]["Code"]
            if code in ("InvalidArgumentException", "ResourceNotFoundException", "ExpiredIteratorException"):
                return None, f"reading its records failed ({code}: {e.response['Error'].get('Message')})"
            raise
        done = False
        for rec in page.get("Records", []):
            seq = int(rec["SequenceNumber"])
            if seq > end:
                done = True
                break
            if seq >= start:
                records.append(rec)
            if seq == end:
                done = True
                break
        if done:
            break
        iterator = page.get("NextShardIterator")
        if page.get("Records"):
            empty_reads = 0
        else:
            empty_reads += 1
            if empty_reads >= MAX_EMPTY_READS or page.get("MillisBehindLatest") == 0:
                break  # at the tip of the shard, or no progress
            time.sleep(EMPTY_READ_PAUSE_S)
    # Only a complete range goes back: the first record must be the start, the last the end.
    if not records or int(records[0]["SequenceNumber"]) != start:
        first = f"the shard now starts at {records[0]['SequenceNumber']}" if records else "nothing was read"
        return None, f"its records are no longer in the stream (trimmed or never there: {first})"
    if int(records[-1]["SequenceNumber"]) != end:
        return None, (f"the shard holds only part of its range (read up to {records[-1]['SequenceNumber']}, "
                      f"{len(records)} records)")
    return records, None


def put_back(kinesis, stream, records):
    """Puts the records on the stream one at a time, in order, each with its partition key; the
    records of one key keep their order (SequenceNumberForOrdering chains them)."""
    last_by_key = {}
    for rec in records:
        key = rec["PartitionKey"]
        kw = {"SequenceNumberForOrdering": last_by_key[key]} if key in last_by_key else {}
        out = kinesis.put_record(StreamName=stream, Data=rec["Data"], PartitionKey=key, **kw)
        last_by_key[key] = out["SequenceNumber"]


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
    rd.add_argument("--from", dest="source", choices=("all", "queue", "bucket"), default="all",
                    help="redrive the dead-letter queue, the failure bucket, or both (the default)")
    rd.add_argument("--dry-run", action="store_true", help="list what would be redriven; change nothing")
    rd.add_argument("--only-reason", metavar="TEXT", help="only records whose reason holds TEXT")
    rd.add_argument("--sequence", metavar="N", action="append", help="only this sequence number (repeatable)")
    rd.add_argument("--all", dest="everything", action="store_true",
                    help="also the poison records that would fail again (their data is what is wrong)")
    a = p.parse_args()
    where = a.endpoint or "AWS"
    try:
        if a.cmd == "list":
            list_messages(a.endpoint)
        else:
            redrive(a.endpoint, a.stream, a.keep_unknown, a.source,
                    Choice(a.dry_run, a.only_reason, a.sequence, a.everything))
    except EndpointConnectionError:
        sys.exit(f"cannot reach {where}; " + ("the local stack is down: start it with 'make up'" if a.endpoint
                                             else "check your network and AWS_REGION"))
    except ClientError as e:
        err = e.response.get("Error", {})
        sys.exit(f"{where} refused {e.operation_name}: {err.get('Code')}: {err.get('Message')}")
    except BotoCoreError as e:
        sys.exit(f"talking to {where} failed: {e}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Invoke a function of the running local stack with a sample event, through the Lambda Invoke API
that `cargo lambda watch` serves, as AWS does; print the response, then what the invocation did.

    invoke.py FUNCTION EVENT [--json]

EVENT is a file in events/ (with or without .json), or a path. The summary comes from the
function's own log (.local/watch.log): its `batch done` line of counts, and the lines each failed or
poison record wrote with its reason. --json (or JSON=1) prints the raw response only, for scripts.
"""
import argparse
import json
import os
import sys
import time

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from local_aws import log_lines

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STATE = os.environ.get("LOCAL_STATE", os.path.join(ROOT, ".local"))
EVENTS = os.path.join(ROOT, "events")

# What each count of a `batch done` line means, in the order a person reads them.
COUNTS = [
    ("applied", "applied"),
    ("duplicates", "done before (duplicates: nothing done again)"),
    ("rejected", "rejected (recorded, not retried)"),
    ("no_effect", "needing no effect"),
    ("skipped", "skipped (types this function does not handle)"),
    ("poison", "poison (kept in the dead-letter queue, not retried)"),
    ("failed", "failed (reported: Lambda retries from the first)"),
    ("blocked", "held back behind an earlier failure of their key"),
    ("unstarted", "not started (the deadline was near)"),
]


def event_path(name):
    """The sample's path, or exits naming the paths it tried."""
    tried = [name] if os.path.sep in name else []
    base = os.path.basename(name) if not tried else name
    if not tried:
        tried = [os.path.join(EVENTS, base)] + ([] if base.endswith(".json") else [os.path.join(EVENTS, base + ".json")])
    for path in tried:
        if os.path.isfile(path):
            return path
    samples = sorted(f[:-5] for f in os.listdir(EVENTS) if f.endswith(".json")) if os.path.isdir(EVENTS) else []
    sys.exit(f"no event file {' or '.join(os.path.relpath(p, ROOT) for p in tried)}; "
             f"the samples are: {', '.join(samples)}")


def watch_port():
    """The port `cargo lambda watch` serves, or exits saying the stack is down."""
    try:
        with open(os.path.join(STATE, "watch.port")) as f:
            port = int(f.read().strip())
        with open(os.path.join(STATE, "watch.pid")) as f:
            os.kill(int(f.read().strip()), 0)
        return port
    except (OSError, ValueError):
        sys.exit("the local stack is down: start it with 'make up', then 'make invoke' again")


def new_lines(log, offset):
    try:
        with open(log, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return []


def invocation_lines(log, offset, function, request_id, wait_s=10):
    """The invocation's `batch done` line and the WARN/ERROR lines before it, once it is written."""
    deadline = time.monotonic() + wait_s
    while True:
        lines = log_lines(new_lines(log, offset))
        for i, fields in enumerate(lines):
            if fields.get("message") != "batch done":
                continue
            if request_id and fields.get("request_id") not in (None, request_id):
                continue
            if fields.get("function") not in (None, function):
                continue
            warnings = [line for line in lines[:i] if line.get("level") in ("WARN", "ERROR")]
            return fields, warnings
        if time.monotonic() > deadline:
            return None, []
        time.sleep(0.1)


def identity(record, name):
    """A field of the record's identity: on the line, or in its `record` span."""
    return record.get(name) or (record.get("span") or {}).get(name)


def stream_order(record):
    seq = str(identity(record, "sequence_number") or "")
    return (len(seq), seq)


def where(record):
    sub, key = identity(record, "sub_sequence_number"), identity(record, "partition_key")
    text = f"seq {identity(record, 'sequence_number')}" + (f"/{sub}" if sub is not None else "")
    return text + (f" (key {key})" if key is not None else "")


def summary(function, event, response, done, warnings):
    print()
    if done is None:
        print(f"{function} wrote no `batch done` line within 10 s; see {os.path.relpath(os.path.join(STATE, 'watch.log'), ROOT)}")
        return
    parts = [f"{done[k]} {text}" for k, text in COUNTS if done.get(k)]
    received = done.get("received", 0)
    print(f"{function}, {os.path.relpath(event, ROOT)}: {received} record{'' if received == 1 else 's'}"
          + (": " + "; ".join(parts) if parts else ""))
    # In stream order: records of different keys log as they finish.
    for w in sorted(warnings, key=stream_order):
        reason = w.get("reason") or w.get("error") or w.get("message")
        if "poison" in (w.get("message") or ""):
            print(f"  poison {where(w)}: {reason}")
        elif "failed" in (w.get("message") or ""):
            print(f"  failed {where(w)}: {reason}")
        else:
            print(f"  {w.get('level')} {where(w)}: {w.get('message')}" + (f": {reason}" if reason != w.get("message") else ""))
    for failure in response.get("batchItemFailures") or []:
        print(f"  Lambda retries from {failure.get('itemIdentifier')}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("function")
    p.add_argument("event")
    p.add_argument("--json", action="store_true", default=os.environ.get("JSON") == "1")
    a = p.parse_args()
    event = event_path(a.event)
    port = watch_port()
    log = os.path.join(STATE, "watch.log")
    offset = os.path.getsize(log) if os.path.exists(log) else 0
    lam = boto3.client("lambda", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                       aws_access_key_id="local", aws_secret_access_key="local",
                       config=Config(retries={"total_max_attempts": 1}, read_timeout=900, connect_timeout=2))
    with open(event, "rb") as f:
        payload = f.read()
    try:
        out = lam.invoke(FunctionName=a.function, Payload=payload)
    except ClientError as e:
        err = e.response.get("Error", {})
        sys.exit(f"invoking {a.function} failed: {err.get('Code')}: {err.get('Message')}")
    except BotoCoreError as e:
        sys.exit(f"invoking {a.function} failed: {e}; is the stack up ('make up')?")
    body = out["Payload"].read().decode("utf-8", "replace")
    if out.get("FunctionError"):
        print(body)
        sys.exit(f"{a.function} failed as a whole ({out['FunctionError']}); see .local/watch.log")
    print(body)
    if a.json:
        return
    try:
        response = json.loads(body)
    except ValueError:
        response = {}
    request_id = out.get("ResponseMetadata", {}).get("RequestId")
    done, warnings = invocation_lines(log, offset, a.function, request_id)
    summary(a.function, event, response if isinstance(response, dict) else {}, done, warnings)


if __name__ == "__main__":
    main()

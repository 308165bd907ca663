#!/usr/bin/env python3
"""Writes events/README.md: what each sample event is for, and its records decoded (the base64
data as the producer wrote it; KPL aggregates opened with aws-kinesis-agg).

    .venv/bin/python events/describe.py      (make events runs it after the generators)
"""
import base64
import binascii
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
KPL_MAGIC = b"\xf3\x89\x9a\xc2"

# Each sample, in the order a newcomer tries them, with what it shows.
SAMPLES = [
    ("order-placed", "One ORDER_PLACED. email-notifier sends one confirmation; inventory-updater "
                     "reserves its two lines. Invoke it twice: the second time both count a duplicate."),
    ("order-cancelled", "The same order's ORDER_CANCELLED. inventory-updater gives its stock back "
                        "(after `order-placed`), or records the cancellation first; email-notifier skips it."),
    ("mixed-batch", "Eight records over five keys, as a shard interleaves them: placements, a creation, "
                    "a cancellation, a repeated SKU, types the functions skip (PAYMENT_CAPTURED, "
                    "ORDER_SHIPPED), an order beyond the stock and an unknown product (both rejected and "
                    "recorded, not retried)."),
    ("poison-batch", "Two good orders among six records that can never succeed, each bad its own way "
                     "(not base64, not JSON, not the envelope, a bad address, a partition key that is a "
                     "number, no items). Each bad one is kept in the dead-letter queue with its reason; "
                     "the good ones are applied; nothing is retried. inventory-updater reads no address, "
                     "so it applies the order with the bad one."),
    ("real-producers", "What real producers write: the article's Python producer (no eventId, spaces "
                       "after separators, a Decimal total as a string, quantities as floats, "
                       "`user#hash` partition keys) and a cancellation carrying only what a cancellation "
                       "needs. Every record is read and applied."),
    ("cancel-before-order", "A cancellation that overtakes its order under the same key: "
                            "inventory-updater records it, and the late placement is rejected and takes "
                            "no stock."),
    ("kpl-aggregated", "KPL aggregates made by aws-kinesis-agg: four user records in one Kinesis "
                       "record, a plain record, an aggregate whose digest is wrong (poison, kept whole) "
                       "and an aggregate holding one payload that breaks its schema (poison, kept alone)."),
]


def decode(record):
    """The record's data as a person reads it: one line per user record."""
    data = record["kinesis"].get("data")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError, TypeError):
        return [f"not base64: `{data}`"]
    if raw.startswith(KPL_MAGIC):
        try:
            from aws_kinesis_agg.deaggregator import deaggregate_records
        except ImportError:
            return ["a KPL aggregate (install aws-kinesis-agg to open it)"]
        users = deaggregate_records([json.loads(json.dumps(record))])
        if len(users) == 1 and users[0]["kinesis"]["data"] == data:
            return ["a KPL aggregate that does not check out (its digest is wrong): the record is read whole"]
        out = []
        for u in users:
            text = base64.b64decode(u["kinesis"]["data"]).decode("utf-8", "replace")
            out.append(f"KPL user record, key `{u['kinesis']['partitionKey']}`: `{text}`")
        return out
    try:
        return [f"`{json.dumps(json.loads(raw), separators=(',', ':'))}`"]
    except (ValueError, UnicodeDecodeError):
        return [f"not JSON: `{raw!r}`"]


def render():
    """The page, as text."""
    out = ["# Sample events", "",
           "Lambda Kinesis events as the event source mapping delivers them (the data base64), for "
           "`make invoke FN=<function> EVENT=<name>` and the tests. `make events` writes them "
           "(`generate.py`, `generate_kpl.py`) and this page (`describe.py`); they do not change "
           "when written again. Below, each sample's purpose and its records decoded.", ""]
    for name, purpose in SAMPLES:
        with open(os.path.join(HERE, name + ".json")) as f:
            records = json.load(f)["Records"]
        out += [f"## {name}", "", purpose, "", "| # | partition key | data |", "|---|---|---|"]
        for i, r in enumerate(records, 1):
            k = r["kinesis"]
            for j, line in enumerate(decode(r)):
                key = json.dumps(k.get("partitionKey"))
                out.append(f"| {i if j == 0 else ''} | {key if j == 0 else ''} | {line.replace('|', '&#124;')} |")
        out.append("")
    return "\n".join(out)


def main():
    with open(os.path.join(HERE, "README.md"), "w") as f:
        f.write(render())


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Writes events/kpl-aggregated.json: KPL-aggregated records made by an independent implementation,
the aws-kinesis-agg package's aggregator (installed in .venv by the Makefile), among plain records.

    .venv/bin/python events/generate_kpl.py

The records, in stream order:
  1. an aggregate of four user records over three partition keys (placed, created, cancelled, and
     an event type the functions skip);
  2. a plain record;
  3. an aggregate whose MD5 digest is wrong: by the KPL's rule a plain record, and poison;
  4. an aggregate holding one user record whose payload breaks the schema (poison, kept alone).
"""
import base64
import json
import os
import sys

from aws_kinesis_agg.aggregator import AggRecord

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from generate import order_event, record, write  # noqa: E402


def aggregate(user_records):
    agg = AggRecord()
    for key, event in user_records:
        agg.add_user_record(key, json.dumps(event, separators=(",", ":")).encode())
    _, _, data = agg.get_contents()
    return base64.b64encode(data).decode()


first = aggregate([
    ("order-4001", order_event("evt-4001", "ORDER_PLACED", "order-4001", "user-kim", [("sku-apple", 1)], "3.20")),
    ("order-4002", order_event("evt-4002", "ORDER_CREATED", "order-4002", "user-lee", [("sku-pear", 2)], "4.20")),
    ("order-4001", order_event("evt-4003", "ORDER_SHIPPED", "order-4001", "user-kim", [("sku-apple", 1)], "3.20")),
    ("order-4003", order_event("evt-4004", "ORDER_PLACED", "order-4003", "user-max", [("sku-plum", 1)], "2.00")),
])
plain = order_event("evt-4005", "ORDER_PLACED", "order-4004", "user-ned", [("sku-apple", 1)], "3.20")
corrupt = bytearray(base64.b64decode(aggregate([
    ("order-4006", order_event("evt-4006", "ORDER_PLACED", "order-4006", "user-oz", [("sku-pear", 1)], "2.10")),
])))
corrupt[-1] ^= 0xFF  # the digest no longer matches
bad_payload = aggregate([
    ("order-4007", order_event("evt-4007", "ORDER_PLACED", "order-4007", "user-pat", [], "0.00")),
])

write("kpl-aggregated.json", [
    record(40, "order-4001", first, raw=True),
    record(41, "order-4004", plain),
    record(42, "order-4006", base64.b64encode(bytes(corrupt)).decode(), raw=True),
    record(43, "order-4007", bad_payload, raw=True),
])

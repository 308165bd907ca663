#!/usr/bin/env python3
"""Writes the sample Lambda Kinesis events in this folder, exactly as the event source mapping
delivers them (base64 data). Deterministic: run it again and the files do not change.

    python3 events/generate.py
"""
import base64
import datetime
import decimal
import hashlib
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
STREAM = "arn:aws:kinesis:us-east-1:123456789012:stream/order-events"
SHARD = "shardId-000000000000"
SEQ0 = 49590338271490256608559692538361571095921575989136588800


def order_event(event_id, event_type, order_id, user, items, total, minute=0, email=None):
    return {
        "eventId": event_id,
        "eventType": event_type,
        "timestamp": f"2026-11-21T10:{minute:02d}:00.000Z",
        "payload": {
            "orderId": order_id,
            "userId": user,
            "email": email or f"{user}@example.com",
            "items": [{"productId": p, "quantity": q} for p, q in items],
            "total": total,
        },
    }


def record(i, partition_key, data, raw=False):
    seq = str(SEQ0 + i)
    if isinstance(data, bytes):  # already serialised, as a producer wrote it
        data = base64.b64encode(data).decode()
    elif not raw:
        data = base64.b64encode(json.dumps(data, separators=(",", ":")).encode()).decode()
    return {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": partition_key,
            "sequenceNumber": seq,
            "data": data,
            "approximateArrivalTimestamp": 1795000000.123 + i,
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"{SHARD}:{seq}",
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": "arn:aws:iam::123456789012:role/order-consumers",
        "awsRegion": "us-east-1",
        "eventSourceARN": STREAM,
    }


class ArticleProducer:
    """Serialises events as the article's Python producer does: `json.dumps(event, default=str)`
    (spaces after `:` and `,`), no eventId, a naive `datetime.isoformat()` timestamp, a Decimal
    total written as a string by `default=str`, quantities computed as floats, and a partition key
    of `f"{user_id}#{md5 % shard_count}"`."""

    SHARD_COUNT = 4
    NOW = datetime.datetime(2026, 11, 21, 10, 0, 0, 123456)

    def event(self, event_type, payload):
        return json.dumps(
            {"eventType": event_type, "timestamp": self.NOW.isoformat(), "payload": payload},
            default=str,
        ).encode()

    def partition_key(self, user_id, order_id):
        digest = int(hashlib.md5(order_id.encode()).hexdigest(), 16)
        return f"{user_id}#{digest % self.SHARD_COUNT}"


def write(name, records):
    with open(os.path.join(HERE, name), "w") as f:
        json.dump({"Records": records}, f, indent=2)
        f.write("\n")


def main():
    placed = order_event("evt-0001", "ORDER_PLACED", "order-1001", "user-ada",
                         [("sku-apple", 2), ("sku-pear", 1)], "12.50")
    write("order-placed.json", [record(1, "order-1001", placed)])

    cancelled = order_event("evt-0002", "ORDER_CANCELLED", "order-1001", "user-ada",
                            [("sku-apple", 2), ("sku-pear", 1)], "12.50", minute=5)
    write("order-cancelled.json", [record(2, "order-1001", cancelled)])

    # Several keys and types, interleaved as a shard delivers them.
    mixed = [
        ("order-2001", order_event("evt-1001", "ORDER_PLACED", "order-2001", "user-bob", [("sku-apple", 1)], "3.20", 1)),
        ("order-2002", order_event("evt-1002", "ORDER_CREATED", "order-2002", "user-cy", [("sku-pear", 2), ("sku-plum", 1)], "7.00", 1)),
        ("order-2001", order_event("evt-1003", "PAYMENT_CAPTURED", "order-2001", "user-bob", [("sku-apple", 1)], "3.20", 2)),
        ("order-2003", order_event("evt-1004", "ORDER_PLACED", "order-2003", "user-dee", [("sku-plum", 3), ("sku-apple", 1), ("sku-plum", 1)], 11.4, 2)),
        ("order-2002", order_event("evt-1005", "ORDER_CANCELLED", "order-2002", "user-cy", [("sku-pear", 2), ("sku-plum", 1)], "7.00", 3)),
        ("order-2004", order_event("evt-1006", "ORDER_PLACED", "order-2004", "user-eve", [("sku-gold", 500)], "9999.00", 3)),
        ("order-2001", order_event("evt-1007", "ORDER_SHIPPED", "order-2001", "user-bob", [("sku-apple", 1)], "3.20", 4)),
        ("order-2005", order_event("evt-1008", "ORDER_PLACED", "order-2005", "user-fay", [("sku-unknown", 1)], "1.00", 4)),
    ]
    write("mixed-batch.json", [record(10 + i, k, e) for i, (k, e) in enumerate(mixed)])

    # Undecodable and invalid records among good ones. Each bad record says what is wrong with it.
    good_a = order_event("evt-2001", "ORDER_PLACED", "order-3001", "user-gus", [("sku-apple", 1)], "3.20")
    good_b = order_event("evt-2002", "ORDER_PLACED", "order-3002", "user-hal", [("sku-pear", 1)], "2.10")
    bad_email = order_event("evt-2003", "ORDER_PLACED", "order-3003", "user-ivy", [("sku-pear", 1)], "2.10", email="not-an-address")
    no_items = order_event("evt-2004", "ORDER_PLACED", "order-3004", "user-jo", [], "0.00")
    bad_records = [
        ("order-3001", good_a, False),
        ("order-3100", "this is not base64!!", True),                        # not base64
        ("order-3101", base64.b64encode(b"\xff\xfe not json").decode(), True),  # not JSON
        ("order-3102", {"hello": "world"}, False),                            # not the envelope
        ("order-3003", bad_email, False),                                     # payload: bad email
        (3103, good_a, False),                                                # metadata: key is a number
        ("order-3004", no_items, False),                                      # payload: no items
        ("order-3002", good_b, False),
    ]
    poison = []
    for i, (key, data, raw) in enumerate(bad_records):
        r = record(20 + i, str(key), data, raw)
        r["kinesis"]["partitionKey"] = key
        poison.append(r)
    write("poison-batch.json", poison)

    # Real producers: the article's Python producer, and cancellations that carry only what a
    # cancellation needs. Every record is valid for the rule that reads it.
    article = ArticleProducer()
    created = {
        "orderId": "order-5001",
        "userId": "user-quinn",
        "items": [
            {"productId": "sku-apple", "quantity": 2.0},  # computed as a float
            {"productId": "sku-pear", "quantity": 1},
        ],
        "status": "CREATED",
        "total": decimal.Decimal("7.40"),  # written as "7.40" by default=str; no email
    }
    placed = {
        "orderId": "order-5002",
        "userId": "user-quinn",
        "email": "user-quinn@example.com",
        "items": [{"productId": "sku-plum", "quantity": 3.0}],
        "status": "PLACED",
        "total": decimal.Decimal("6.00"),
    }
    minimal_cancel = {"orderId": "order-5001", "userId": "user-quinn", "reason": "changed mind"}
    key = article.partition_key("user-quinn", "order-5001")
    write("real-producers.json", [
        record(50, key, article.event("ORDER_CREATED", created)),
        record(51, article.partition_key("user-quinn", "order-5002"),
               article.event("ORDER_PLACED", placed)),
        record(52, key, article.event("ORDER_CANCELLED", minimal_cancel)),
    ])

    # A cancellation that overtakes its order (here redriven ahead of it, under the same key):
    # the cancellation is recorded, and the late placement takes no stock.
    late = order_event("evt-6002", "ORDER_PLACED", "order-6001", "user-rae", [("sku-apple", 1)], "3.20", 2)
    early_cancel = {
        "eventId": "evt-6001",
        "eventType": "ORDER_CANCELLED",
        "timestamp": "2026-11-21T10:01:00Z",
        "payload": {"orderId": "order-6001", "reason": "fraud check failed"},
    }
    write("cancel-before-order.json", [
        record(60, "order-6001", early_cancel),
        record(61, "order-6001", late),
    ])


if __name__ == "__main__":
    main()

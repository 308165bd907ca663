#!/usr/bin/env python3
"""moto's standalone AWS-API server (what `moto_server` runs), answering one request at a time.

    moto_server.py [-H HOST] [-p PORT]      (-p 0: a free port, announced in the log)

Why not `moto_server` itself: moto applies a DynamoDB TransactWriteItems by backing up the tables
and restoring them if a condition fails. Two transactions at once can therefore undo each other's
writes (we saw a reservation vanish while another order's transaction was rejected), which real
DynamoDB never does. The functions do send concurrent transactions, one per partition key, so the
server must serialise them to behave like the service.

The same backup is a deep copy of every table a transaction touches, so a transaction costs time
in proportion to the table (60 ms at 3,000 items, seconds at the chaos test's sizes). Since requests
run one at a time, it is safe to keep instead an undo log of just the items the transaction
touches, and to restore those if it fails: same result, constant cost. Everything else is moto's
own server.
"""
import argparse
import copy
import threading

import moto.dynamodb.models as dynamodb_models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple


class _TablesNotCopied:
    """Stands in for the copy module inside moto's DynamoDB backend while a transaction runs:
    tables are not copied (the undo log below restores what the transaction touched)."""

    def __getattr__(self, name):
        return getattr(copy, name)

    @staticmethod
    def deepcopy(value, memo=None):
        if isinstance(value, dynamodb_models.Table):
            return value
        return copy.deepcopy(value, memo)


def _transaction_with_undo_log(original):
    def transact_write_items(self, transact_items):
        undo = []
        for entry in transact_items:
            op_type, op = next(iter(entry.items()))
            table = self.tables.get(op.get("TableName"))
            key = op.get("Item") if op_type == "Put" else op.get("Key")
            if table is None or not key or table.hash_key_attr not in key:
                continue
            hash_key = DynamoType(key[table.hash_key_attr])
            range_key = DynamoType(key[table.range_key_attr]) if table.range_key_attr in key else None
            try:
                before = table.get_item(hash_key, range_key)
            except Exception:  # a malformed key: moto's own checks will answer
                continue
            undo.append((table, hash_key, range_key, copy.deepcopy(before)))
        dynamodb_models.copy = _TablesNotCopied()
        try:
            return original(self, transact_items)
        except Exception:
            for table, hash_key, range_key, before in reversed(undo):
                items = table.items[hash_key] if range_key is not None else table.items
                slot = range_key if range_key is not None else hash_key
                if before is None:
                    items.pop(slot, None)
                else:
                    items[slot] = before
            raise
        finally:
            dynamodb_models.copy = copy

    return transact_write_items


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-H", "--host", default="127.0.0.1")
    p.add_argument("-p", "--port", type=int, default=5000)
    a = p.parse_args()

    DynamoDBBackend.transact_write_items = _transaction_with_undo_log(DynamoDBBackend.transact_write_items)
    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def one_at_a_time(environ, start_response):
        with lock:
            # Drain the response inside the lock: the handler runs while it is iterated.
            return [b"".join(app(environ, start_response))]

    run_simple(a.host, a.port, one_at_a_time, threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()

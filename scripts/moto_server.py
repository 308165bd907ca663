#!/usr/bin/env python3
"""moto's standalone AWS-API server (what `moto_server` runs), answering one request at a time.

    moto_server.py [-H HOST] [-p PORT]      (-p 0: a free port, announced in the log)

Why not `moto_server` itself: moto applies a DynamoDB TransactWriteItems by backing up the tables
and restoring them if a condition fails. Two transactions at once can therefore undo each other's
writes (we saw a reservation vanish while another order's transaction was rejected), which real
DynamoDB never does. The functions do send concurrent transactions, one per partition key, so the
server must serialise them to behave like the service. Everything else is moto's own server.
"""
import argparse
import threading

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-H", "--host", default="127.0.0.1")
    p.add_argument("-p", "--port", type=int, default=5000)
    a = p.parse_args()

    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def one_at_a_time(environ, start_response):
        with lock:
            # Drain the response inside the lock: the handler runs while it is iterated.
            return [b"".join(app(environ, start_response))]

    run_simple(a.host, a.port, one_at_a_time, threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()

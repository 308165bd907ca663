#!/usr/bin/env python3
"""The log a Powertools user writes by default for the same work: Logger (JSON, the Lambda context
injected), one INFO line per record handled. Prints the mean bytes per line over the event's records.

    powertools_log_line.py EVENT.json
"""
import base64
import io
import json
import logging
import sys

from aws_lambda_powertools import Logger


class Context:
    function_name = "order-consumer"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:order-consumer"
    aws_request_id = "c6af9ac6-7b61-11e6-9a41-93e812345678"


def main():
    with open(sys.argv[1]) as f:
        event = json.load(f)
    out = io.StringIO()
    logger = Logger(service="order-consumer", logger_handler=logging.StreamHandler(out))

    @logger.inject_lambda_context
    def handler(event, context):
        for record in event["Records"]:
            kinesis = record["kinesis"]
            data = json.loads(base64.b64decode(kinesis["data"]))
            logger.info("record processed", extra={
                "eventId": data.get("eventId"), "eventType": data.get("eventType"),
                "orderId": data.get("payload", {}).get("orderId"),
                "partitionKey": kinesis["partitionKey"], "sequenceNumber": kinesis["sequenceNumber"],
            })

    handler(event, Context())
    lines = out.getvalue().splitlines()
    print(json.dumps({"name": "powertools log line", "lines": len(lines),
                      "bytes_per_line": sum(len(l) + 1 for l in lines) / max(len(lines), 1)}))


if __name__ == "__main__":
    main()

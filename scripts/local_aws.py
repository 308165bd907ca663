#!/usr/bin/env python3
"""The local AWS-API server (moto) for the demo and the integration tests.

    local_aws.py bootstrap --endpoint URL   create what the functions need (safe to run twice)
    local_aws.py snapshot  --endpoint URL   print stock, reservations, emails, ledger and DLQ as JSON
    local_aws.py restock --endpoint URL --units N   add N units of each product
    local_aws.py stock --endpoint URL [--set N | --add N] [--sku SKU ...]
                                            set or add units of the products (default: the four
                                            the bootstrap seeds and the producer orders), and
                                            print the stock
    local_aws.py remove-dlq --endpoint URL  delete the dead-letter queue (bootstrap makes it again)
    local_aws.py esm-report --esm F         print what the local event source mapping did
    local_aws.py report --before F --after F
                                            print the demo's report of the state before and after
    local_aws.py saga-report --before F --after F --api URL
                                            per order: its status in the read model (through the
                                            read API at URL) beside the emails it received
    local_aws.py order --api URL --id ID    one order as the read API answers it, for a person
    local_aws.py functions                  the functions template.yaml deploys (their binaries)

Names come from local.env (the same file the functions read), so the functions and the resources
agree. Runs with the project's .venv Python (boto3 comes with moto).
"""
import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

import boto3
from botocore.exceptions import ClientError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The stock the demo and the integration tests start from.
STOCK = {"sku-apple": 10, "sku-pear": 5, "sku-plum": 8, "sku-gold": 10}

# The SES templates: template.yaml's resource of each, and the local.env setting naming it.
SES_TEMPLATES = {
    "ConfirmationTemplate": "TEMPLATE_NAME",
    "RejectedTemplate": "REJECTED_TEMPLATE_NAME",
    "PaymentFailedTemplate": "PAYMENT_FAILED_TEMPLATE_NAME",
}


def ses_templates(env):
    """The SES templates as template.yaml deploys them (one source for both), named by local.env."""
    from cfnlint.decode import cfn_yaml  # cfn-lint reads CloudFormation's YAML tags

    resources = cfn_yaml.load(os.path.join(ROOT, "template.yaml"))["Resources"]
    return [
        dict(resources[resource]["Properties"]["Template"], TemplateName=env[setting])
        for resource, setting in SES_TEMPLATES.items()
    ]


def functions():
    """The binaries of template.yaml's functions: the names `cargo lambda watch` serves them by."""
    from cfnlint.decode import cfn_yaml

    resources = cfn_yaml.load(os.path.join(ROOT, "template.yaml"))["Resources"]
    return sorted(
        r.get("Metadata", {}).get("BuildProperties", {}).get("Binary", name)
        for name, r in resources.items()
        if r.get("Type") == "AWS::Serverless::Function"
    )


def settings():
    env = {
        "STREAM_NAME": "order-events",
        "DLQ_NAME": "order-events-dlq",
        "FAILURE_BUCKET": "order-events-failures",
    }
    with open(os.path.join(ROOT, "local.env")) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                k, v = line.split("=", 1)
                env[k] = v
    return env


def clients(endpoint, env):
    kw = dict(
        endpoint_url=endpoint,
        region_name=env["AWS_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    return {name: boto3.client(name, **kw) for name in ("dynamodb", "ses", "sqs", "kinesis", "s3")}


def exists(call, *codes):
    try:
        call()
    except ClientError as e:
        if e.response["Error"]["Code"] not in codes:
            raise


def bootstrap(endpoint):
    env = settings()
    c = clients(endpoint, env)
    ddb = c["dynamodb"]
    for table in (env["INVENTORY_TABLE"], env["IDEMPOTENCY_TABLE"]):
        exists(lambda: ddb.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        ), "ResourceInUseException")
    # The order status (template: OrderStatusTable): pk and sk.
    exists(lambda: ddb.create_table(
        TableName=env["STATUS_TABLE"],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                   {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    ), "ResourceInUseException")
    ddb.update_time_to_live(
        TableName=env["IDEMPOTENCY_TABLE"],
        TimeToLiveSpecification={"Enabled": True, "AttributeName": "expiresAt"},
    ) if ddb.describe_time_to_live(TableName=env["IDEMPOTENCY_TABLE"])[
        "TimeToLiveDescription"].get("TimeToLiveStatus") != "ENABLED" else None
    for sku, qty in STOCK.items():
        # Seed only what is not there, so a second bootstrap keeps the running stack's state.
        exists(lambda: ddb.put_item(
            TableName=env["INVENTORY_TABLE"],
            Item={"pk": {"S": f"SKU#{sku}"}, "sku": {"S": sku}, "available": {"N": str(qty)}},
            ConditionExpression="attribute_not_exists(pk)",
        ), "ConditionalCheckFailedException")
    ses = c["ses"]
    ses.verify_email_identity(EmailAddress=env["SENDER_ADDRESS"])
    for template in ses_templates(env):
        exists(lambda: ses.create_template(Template=template), "AlreadyExists", "AlreadyExistsException")
    c["sqs"].create_queue(QueueName=env["DLQ_NAME"])
    # The failure bucket: the event source mapping's OnFailure destination (FailureDestination s3).
    exists(lambda: c["s3"].create_bucket(Bucket=env["FAILURE_BUCKET"]),
           "BucketAlreadyOwnedByYou", "BucketAlreadyExists")
    exists(lambda: c["kinesis"].create_stream(
        StreamName=env["STREAM_NAME"], StreamModeDetails={"StreamMode": "ON_DEMAND"},
    ), "ResourceInUseException")


def stock(endpoint, set_to=None, add=None, skus=None, show=True):
    """Sets (or adds to) the available units of `skus` (all the bootstrap's by default), then
    prints every product's stock. A product not there yet is created."""
    env = settings()
    ddb = clients(endpoint, env)["dynamodb"]
    for sku in skus or STOCK:
        if set_to is not None:
            ddb.put_item(
                TableName=env["INVENTORY_TABLE"],
                Item={"pk": {"S": f"SKU#{sku}"}, "sku": {"S": sku}, "available": {"N": str(set_to)}},
            )
        elif add is not None:
            ddb.update_item(
                TableName=env["INVENTORY_TABLE"],
                Key={"pk": {"S": f"SKU#{sku}"}},
                UpdateExpression="SET sku = :sku ADD available :n",
                ExpressionAttributeValues={":n": {"N": str(add)}, ":sku": {"S": sku}},
            )
    if show:
        for sku, units in snapshot(endpoint)["stock"].items():
            print(f"{sku:<14} {units:>6} available")


def remove_dlq(endpoint):
    env = settings()
    sqs = clients(endpoint, env)["sqs"]
    sqs.delete_queue(QueueUrl=sqs.get_queue_url(QueueName=env["DLQ_NAME"])["QueueUrl"])


def snapshot(endpoint):
    env = settings()
    c = clients(endpoint, env)
    ddb = c["dynamodb"]
    stock, reservations = {}, {}
    for page in ddb.get_paginator("scan").paginate(TableName=env["INVENTORY_TABLE"], ConsistentRead=True):
        for item in page["Items"]:
            pk = item["pk"]["S"]
            if pk.startswith("SKU#"):
                stock[pk[4:]] = int(item["available"]["N"])
            elif pk.startswith("ORDER#"):
                reservations[pk[6:]] = {
                    "status": item["status"]["S"],
                    "lines": {k: int(v["N"]) for k, v in item.get("lines", {}).get("M", {}).items()},
                    "reason": item.get("reason", {}).get("S"),
                    "cancelledBy": item.get("cancelledBy", {}).get("S"),
                }
    ledger = {}
    for page in ddb.get_paginator("scan").paginate(TableName=env["IDEMPOTENCY_TABLE"], ConsistentRead=True):
        for item in page["Items"]:
            ledger[item["pk"]["S"]] = item["status"]["S"]
    with urllib.request.urlopen(f"{endpoint}/moto-api/data.json") as r:
        data = json.load(r)
    emails = [
        {
            "to": m["destinations"].get("ToAddresses", []),
            "template": m["template"],
            "data": json.loads(m["template_data"]),
        }
        for m in data.get("ses", {}).get("TemplateMessage", [])
    ]
    sqs = c["sqs"]
    url = sqs.get_queue_url(QueueName=env["DLQ_NAME"])["QueueUrl"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    failures = [o["Key"] for o in c["s3"].list_objects_v2(
        Bucket=env["FAILURE_BUCKET"], Prefix="aws/lambda/").get("Contents", [])]
    return {
        "stock": dict(sorted(stock.items())),
        "reservations": dict(sorted(reservations.items())),
        "emails": emails,
        "ledger": dict(sorted(ledger.items())),
        "dlq_messages": int(attrs["Attributes"]["ApproximateNumberOfMessages"]),
        "failure_records": failures,
    }


def esm_report(esm):
    print("\n== The event source mapping (local-esm) ==")
    for name, f in esm["functions"].items():
        t = f["totals"]
        print(f"  {name}: {t['read']} records read from {len(f['shards'])} shards, "
              f"{t['delivered']} delivered in {t['invocations']} invocations; "
              f"{t['partial_failures']} partial failures, {t['function_errors']} function errors, "
              f"{t['bisections']} bisections, {t['retries']} retries, {t['discarded']} discarded; "
              f"iterator age max {t['max_iterator_age_ms']} ms")


def report(before, after):
    emails = after["emails"][len(before["emails"]):]
    print(f"\n== Emails recorded by the server: {len(emails)} ==")
    for m in emails[:10]:
        print(f"  to {', '.join(m['to'])}: template {m['template']}, order {m['data'].get('orderId')}, "
              f"{m['data'].get('itemCount')} items, total {m['data'].get('total')}")
    if len(emails) > 10:
        print(f"  ... and {len(emails) - 10} more")

    print("\n== Stock (before -> after) ==")
    for sku in sorted(set(before["stock"]) | set(after["stock"])):
        b, a = before["stock"].get(sku), after["stock"].get(sku)
        print(f"  {sku:<12} {b!s:>4} -> {a!s:<4}{'' if a == b else f'  ({a - b:+d})'}")

    print("\n== Reservations ==")
    new = {o: r for o, r in after["reservations"].items() if before["reservations"].get(o) != r}
    by_status = count(r["status"] for r in new.values())
    print("  " + ", ".join(f"{status}: {n}" for status, n in sorted(by_status.items())))
    shown = list(new.items())
    if len(shown) > 12:
        # One of each status and reason, then the count of the rest.
        seen, picked = set(), []
        for order, r in shown:
            kind = (r["status"], (r.get("reason") or "").split(":")[0])
            if kind not in seen:
                seen.add(kind)
                picked.append((order, r))
        print(f"  (one of each kind; {len(shown) - len(picked)} more in .local/after.json)")
        shown = picked
    for order, r in shown:
        lines = ", ".join(f"{v} {k}" for k, v in r["lines"].items())
        extra = f"  reason: {r['reason']}" if r.get("reason") else ""
        if r.get("cancelledBy"):
            extra += f"  (cancelled first by {r['cancelledBy']})"
        print(f"  {order:<20} {r['status']:<9} {lines}{extra}")

    print("\n== Idempotency ledger ==")
    print(f"  {len(after['ledger'])} entries: " + ", ".join(
        f"{status}={n}" for status, n in sorted(count(after['ledger'].values()).items())))
    print(f"\n== Dead-letter queue: {after['dlq_messages']} messages ==")
    failures = after.get("failure_records", [])
    print(f"\n== Failure bucket: {len(failures)} batches the event source mapping gave up on ==")
    for key in failures:
        print(f"  {key}")


def read_api(api, order_id):
    """The read API's answer for one order: (HTTP status, JSON body)."""
    url = f"{api}/orders/{urllib.parse.quote(order_id, safe='')}"
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def saga_report(before, after, api):
    """Per order: the read model's status beside the emails it received, and the saga's checks."""
    emails = {}
    for m in after["emails"][len(before["emails"]):]:
        emails.setdefault(m["data"].get("orderId"), []).append(m["template"])
    orders = sorted(set(after["reservations"]) - set(before["reservations"]) | set(emails))
    rows = []
    for order in orders:
        code, view = read_api(api, order)
        status = view.get("status") if code == 200 else f"HTTP {code}"
        inventory = after["reservations"].get(order, {}).get("status", "-")
        rows.append((order, status, inventory, emails.get(order, []), view))
    print(f"\n== The saga, order by order: {len(rows)} orders (status from the read API, {api}) ==")
    by_status = count(r[1] for r in rows)
    print("  " + ", ".join(f"{s}: {n}" for s, n in sorted(by_status.items())))
    # One order of each outcome (status and emails), then how many more.
    seen, shown = set(), []
    for row in rows:
        kind = (row[1], tuple(row[3]))
        if kind not in seen:
            seen.add(kind)
            shown.append(row)
    print(f"  {'order':<22} {'read model':<15} {'inventory':<10} emails received")
    for order, status, inventory, sent, view in shown:
        history = " > ".join(h["type"] for h in view.get("history", []))
        print(f"  {order:<22} {status:<15} {inventory:<10} {', '.join(sent) or '(none)'}")
        print(f"  {'':<22} history: {history}")
        if view.get("reason"):
            print(f"  {'':<22} reason: {view['reason']}")
    print(f"  (one order of each outcome; every order: make order ID=<order>)")

    rejected = [r for r in rows if r[2] == "REJECTED"]
    confirmed_rejected = [r[0] for r in rejected if "OrderConfirmation" in r[3]]
    reserved = [r for r in rows if r[2] in ("RESERVED", "RELEASED")]
    confirmations = count(o for o, _, _, sent, _ in reserved for t in sent if t == "OrderConfirmation")
    twice = [o for o, n in confirmations.items() if n > 1]
    unconfirmed = [r[0] for r in reserved if "OrderConfirmation" not in r[3]]
    print(f"\n== The customer hears only what is true ==")
    print(f"  {len(rejected)} orders rejected by inventory: {len(confirmed_rejected)} of them got a confirmation"
          + (f" ({', '.join(confirmed_rejected)})" if confirmed_rejected else ""))
    print(f"  {len(reserved)} orders reserved: {len(reserved) - len(unconfirmed)} confirmed once, "
          f"{len(twice)} twice, {len(unconfirmed)} not confirmed"
          + (f" ({', '.join(unconfirmed[:5])}: no address, or in the dead-letter queue)" if unconfirmed else ""))
    return 1 if confirmed_rejected or twice else 0


def show_order(api, order_id):
    """One order, as the read API answers it, for a person."""
    code, view = read_api(api, order_id)
    if code != 200:
        print(f"{order_id}: {view.get('message', code)} (HTTP {code})")
        return 1
    print(f"order {view['orderId']}: {view['status']}")
    if view.get("reason"):
        print(f"  reason: {view['reason']}")
    for line in view.get("lines", []):
        print(f"  {line['quantity']} x {line['productId']}")
    if view.get("total"):
        print(f"  total: {view['total']}")
    print("  history:")
    for h in view.get("history", []):
        print(f"    {h.get('time') or '(no time)':<26} {h['type']:<20} {h['eventId']}")
    return 0


def count(values):
    out = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("bootstrap", "snapshot"):
        s = sub.add_parser(name)
        s.add_argument("--endpoint", required=True)
    rm = sub.add_parser("remove-dlq")
    rm.add_argument("--endpoint", required=True)
    rs = sub.add_parser("restock")
    rs.add_argument("--endpoint", required=True)
    rs.add_argument("--units", type=int, required=True)
    st = sub.add_parser("stock")
    st.add_argument("--endpoint", required=True)
    what = st.add_mutually_exclusive_group()
    what.add_argument("--set", type=int, dest="set_to", help="units to set")
    what.add_argument("--add", type=int, help="units to add (negative: take away)")
    st.add_argument("--sku", action="append", help="a product (again for more; default: all four)")
    r = sub.add_parser("report")
    r.add_argument("--before", required=True)
    r.add_argument("--after", required=True)
    sr = sub.add_parser("saga-report")
    sr.add_argument("--before", required=True)
    sr.add_argument("--after", required=True)
    sr.add_argument("--api", required=True, help="the read API's URL (before /orders/...)")
    o = sub.add_parser("order")
    o.add_argument("--api", required=True)
    o.add_argument("--id", required=True)
    sub.add_parser("functions")
    e = sub.add_parser("esm-report")
    e.add_argument("--esm", required=True, help="the local event source mapping's status file")
    a = p.parse_args()
    if a.cmd == "bootstrap":
        bootstrap(a.endpoint)
    elif a.cmd == "remove-dlq":
        remove_dlq(a.endpoint)
    elif a.cmd == "restock":
        stock(a.endpoint, add=a.units, show=False)
    elif a.cmd == "stock":
        if (a.set_to is not None and a.set_to < 0):
            sys.exit("--set takes a number of units, 0 or more")
        stock(a.endpoint, a.set_to, a.add, a.sku)
    elif a.cmd == "snapshot":
        json.dump(snapshot(a.endpoint), sys.stdout, indent=2)
        print()
    elif a.cmd == "functions":
        print("\n".join(functions()))
    elif a.cmd == "esm-report":
        esm_report(json.load(open(a.esm)))
    elif a.cmd == "saga-report":
        sys.exit(saga_report(json.load(open(a.before)), json.load(open(a.after)), a.api))
    elif a.cmd == "order":
        sys.exit(show_order(a.api, a.id))
    else:
        report(json.load(open(a.before)), json.load(open(a.after)))


if __name__ == "__main__":
    try:
        main()
    except BrokenPipeError:
        # The reader stopped early (`| head`): not an error of ours.
        sys.stderr.close()
        os._exit(0)

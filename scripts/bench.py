#!/usr/bin/env python3
"""The benchmarks `make bench` runs: prints a table and writes it to BENCHMARKS.md.

    bench.py [--runs N] [--out BENCHMARKS.md]

1. CPU path: the full batch (6,000 records, ~5.7 MB, from scripts/bench/gen_event.py), event bytes
   to response, through our decoder, engine and each function's rule with no-op ports
   (tests/benches/cpu.rs), beside a bare serde_json validation pass over the same bytes, the
   Powertools Python batch processor and the Node handler of the article's shape, in the same run
   (three rounds of the three, each figure the median of its rounds').
2. I/O fan-out: 1,000 records over 200 partition keys, half of them wanted, against a stub AWS
   endpoint that answers each call after 20 ms: the engine at its concurrency and at 1
   (tests/benches/fanout.rs), per-key order verified; beside it the batch's critical path (the
   longest key's chain of calls, counted from the stub's log, times 20 ms) and what the run spent
   beside it.
3. Footprint: the release bootstraps (cargo lambda build --release) run against a local Lambda
   Runtime API: cold start to the first poll, peak RSS on the full batch, size
   (tests/benches/footprint.rs).
4. Cost per million events of the bench mix, and per million orders: the three functions of the
   template's mappings in the saga's flow (inventory-updater reads the mix and publishes its
   decisions; every mapping reads the mix and the decisions), in invocations of the template's
   BatchSize, against the stub endpoint (20 ms a call), counting what AWS bills: requests by API,
   DynamoDB units, SES messages, the decisions written to Kinesis and the stream read, log bytes,
   billed milliseconds at MemorySize (tests/benches/cost.rs); priced with
   scripts/bench/prices.json; beside the same work done one record at a time with a Powertools log
   line per record (scripts/bench/powertools_log_line.py).
5. Put to confirmation through the local pipeline (scripts/stack.sh up: moto, cargo lambda watch,
   tools/local-esm): 1,000 placements put with the producer, timed until every reserved order's
   confirmation is in moto's sent emails (at most 10 minutes; the stack is stopped after).

Benchmarks print figures; no test asserts on time. The targets are printed beside the figures,
met or not.
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request

import local_aws  # beside this script: the local stack's settings and products

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "scripts", "bench")
WORK = os.path.join(ROOT, ".local", "bench")
VENV_PY = os.path.join(ROOT, ".venv", "bin", "python")


def run(cmd, **kw):
    print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
    return subprocess.run(cmd, cwd=ROOT, check=True, text=True, stdout=subprocess.PIPE, **kw).stdout


def json_lines(text):
    return [json.loads(l) for l in text.splitlines() if l.startswith("{")]


def cargo_bench(name, *args, env=None):
    return json_lines(run(["cargo", "bench", "--quiet", "-p", "integration-tests", "--bench", name, "--", *args],
                          env=env))


def peer(cmd):
    """A peer's 'name records=N kept=K median_ms=X' line."""
    out = run(cmd).strip().splitlines()[-1]
    fields = dict(kv.split("=") for kv in out.split()[1:])
    return {"name": out.split()[0], "records": int(fields["records"]), "kept": int(fields["kept"]),
            "median_ms": float(fields["median_ms"])}


def machine():
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kib = int(next(l for l in f if l.startswith("MemTotal")).split()[1])
            mem = f"{kib / 1024 / 1024:.0f} GiB"
    except (OSError, StopIteration):
        pass
    versions = {}
    for name, cmd in (("rustc", ["rustc", "-V"]), ("node", ["node", "--version"]),
                      ("python", [VENV_PY, "--version"])):
        try:
            versions[name] = subprocess.run(cmd, text=True, capture_output=True).stdout.strip()
        except OSError:
            versions[name] = "not found"
    try:
        powertools = subprocess.run([VENV_PY, "-c", "import aws_lambda_powertools as p; print(p.__version__)"],
                                    text=True, capture_output=True).stdout.strip()
    except OSError:
        powertools = "?"
    return (f"{model}, {os.cpu_count()} cores, {mem}; {platform.system()} {platform.release()}; "
            f"{versions['rustc']}; Node {versions['node']}; {versions['python']}, "
            f"aws-lambda-powertools {powertools}")


ROUNDS = 3


def pooled(results):
    """One figure from a contender's rounds: the median of their medians, the least minimum."""
    out = dict(results[0])
    out["median_ms"] = statistics.median(r["median_ms"] for r in results)
    if "min_ms" in out:
        out["min_ms"] = min(r["min_ms"] for r in results)
    out["round_medians_ms"] = [round(r["median_ms"], 3) for r in results]
    return out


def verdict(ok):
    return "met" if ok else "**not met**"


POWERTOOLS_STYLE = "one record at a time, no cache (Powertools' default)"


def cost_lines(r, powertools_line, prices, per="events"):
    """One run's bill per million events of the mix (per="orders": per million orders):
    {line: (quantity, unit, usd)}."""
    p = {k: v["usd"] / v["per"] for k, v in prices["prices"].items()}
    scale = 1e6 / r[per]
    log_bytes = r["log_bytes"]
    if r["style"] == POWERTOOLS_STYLE:
        log_bytes += r["delivered"] * powertools_line["bytes_per_line"]
    gb_s = r["billed_ms"] / 1000 * r["memory_mb"] / 1024
    sqs = sum(n for api, n in r["requests_by_api"].items() if api.startswith("sqs:"))
    published = r.get("published", {})
    quantities = {
        "Lambda requests": (r["invocations"], "invocations", p["lambda_requests"]),
        "Lambda duration": (gb_s, "GB-s", p["lambda_gb_seconds_" + r["architecture"]]),
        "DynamoDB writes": (r["dynamodb_write_units"], "WRU", p["dynamodb_write_units"]),
        "DynamoDB reads": (r["dynamodb_read_units"], "RRU", p["dynamodb_read_units"]),
        "SES": (r["ses_messages"], "emails", p["ses_messages"]),
        "CloudWatch Logs": (log_bytes / 2**30, "GB", p["log_gb"]),
        "SQS": (sqs, "requests", p["sqs_requests"]),
        # The decisions it publishes, on-demand: each record rounded up to 1 KB.
        "Kinesis writes (decisions)": (published.get("on_demand_kib", 0) / 2**20, "GB",
                                       p["kinesis_on_demand_gb_written"]),
        # Its mapping reads every record of the stream, the mix and the decisions, filtered or not.
        "Kinesis reads": (r.get("stream_bytes", 0) / 2**30, "GB", p["kinesis_on_demand_gb_read"]),
    }
    return {k: (q * scale, unit, q * scale * price) for k, (q, unit, price) in quantities.items()}


def money(usd):
    return f"${usd:,.4f}" if usd < 1 else f"${usd:,.2f}"


def cost_section(out, costs, powertools_line, prices):
    """Section 4: per function, each cost line in each style, its share, and the ratio; then the
    saga per million orders, the three functions together."""
    styles = ["ours", "ours, FilterAtSource=true", POWERTOOLS_STYLE]
    first = costs[0]
    by = {(r["function"], r["style"]): r for r in costs}
    functions = list(dict.fromkeys(r["function"] for r in costs))
    publisher = next(r for r in costs if "published" in r and r["style"] == "ours")
    published = publisher["published"]
    out(f"## 4. What the work costs, per million events of the bench mix, and per million orders")
    out("")
    out(f"The saga over {first['events']:,} events of the mix `gen_event.py` writes (a quarter each "
        "ORDER_PLACED, ORDER_CREATED, ORDER_CANCELLED, PAYMENT_CAPTURED, each of its own order), as it runs: "
        f"{publisher['function']} reads the mix first and publishes one decision per decided order "
        f"({published['records']:,} here, "
        + ", ".join(f"{n:,} {t}" for t, n in published["by_type"].items())
        + f", in {publisher['requests_by_api'].get('kinesis:PutRecords', 0):,} `PutRecords` requests; the stub's "
        "success means every placement is reserved, and a cancellation of an order never placed leaves a "
        "tombstone and publishes nothing: in this mix every cancellation and payment is of an order of its own, "
        "where a cancellation of a reserved order would publish an INVENTORY_RELEASED too); the records those "
        "calls put are the decisions, and join the "
        f"mix on the stream ({first['stream_records']:,} records). Every mapping of the template ("
        + ", ".join(functions) + ") reads the whole stream and invokes its function with what its filters let "
        f"through, in invocations of the template's `BatchSize` ({first['batch_size']}) at its `MemorySize` "
        f"({first['memory_mb']} MB, {first['architecture']}): email-notifier emails from the decisions, "
        "order-status records every event, and inventory-updater reads its own decisions too. Through the real "
        f"engine, adapters and SDK clients against the stub endpoint answering each call after {first['delay_ms']} "
        "ms (`tests/benches/cost.rs`). Counted, not estimated: requests by API, DynamoDB request units from each "
        "request's item sizes, SES messages, the decisions' records and their sizes, the bytes logged (the JSON "
        "subscriber at INFO: each invocation's `batch done` line, and its EMF metrics), and each invocation's "
        "duration rounded up to the millisecond, as Lambda bills it. "
        f"Priced with `scripts/bench/prices.json` ({prices['region']}, as of {prices['as_of']}; "
        "sources there). Kinesis, on-demand as the template makes the stream: the decisions written "
        f"(${prices['prices']['kinesis_on_demand_gb_written']['usd']} per GB, each record rounded up to 1 KB) "
        f"and the stream each mapping reads (${prices['prices']['kinesis_on_demand_gb_read']['usd']} per GB); "
        "the orders' own records written by the producer and the stream's hourly charge are left out, the "
        "same whatever consumes the stream.")
    out("")
    out(f"*{POWERTOOLS_STYLE}*: the same engine, adapters and calls with `MAX_CONCURRENCY=1` and "
        "`IDEMPOTENCY_CACHE_SIZE=0`, plus the log line a Powertools user writes per record (Logger, JSON, "
        f"Lambda context injected): {powertools_line['bytes_per_line']:.0f} bytes, measured with "
        "aws-lambda-powertools itself (`scripts/bench/powertools_log_line.py`). The mix has no failures, so "
        "no redelivery: the warm cache saves nothing here (the chaos replay measures it), and neither "
        "does payload validation cost anything (its hash rides on the writes already made).")
    out("")
    grand = {s: 0.0 for s in styles}
    for function in functions:
        bills = {s: cost_lines(by[(function, s)], powertools_line, prices) for s in styles}
        totals = {s: sum(v[2] for v in bills[s].values()) for s in styles}
        for s in styles:
            grand[s] += totals[s]
        out(f"**{function}** (receives {by[(function, 'ours')]['delivered']:,} of the "
            f"{first['stream_records']:,} records; "
            f"{by[(function, 'ours, FilterAtSource=true')]['delivered']:,} with FilterAtSource):")
        out("")
        out("| per million events | ours | share | ours, FilterAtSource=true | one record at a time, Powertools logs | share |")
        out("|---|---:|---:|---:|---:|---:|")
        for line in bills["ours"]:
            cells = []
            for s in styles:
                q, unit, usd = bills[s][line]
                cell = f"{q:,.0f} {unit}: {money(usd)}" if q >= 10 else f"{q:,.2f} {unit}: {money(usd)}"
                cells.append(cell)
                if s != "ours, FilterAtSource=true":
                    cells.append(f"{100 * usd / totals[s]:.1f}%")
            out(f"| {line} | " + " | ".join(cells) + " |")
        out(f"| **total** | **{money(totals['ours'])}** | | **{money(totals['ours, FilterAtSource=true'])}** | "
            f"**{money(totals[POWERTOOLS_STYLE])}** | |")
        out("")
        ours, theirs = bills["ours"], bills[POWERTOOLS_STYLE]
        compute = lambda b: b["Lambda duration"][2] + b["Lambda requests"][2] + b["CloudWatch Logs"][2]
        out(f"One record at a time with a log line each costs **{totals[POWERTOOLS_STYLE] / totals['ours']:.2f}×** "
            f"ours in all; Lambda and its logs alone, **{compute(theirs) / compute(ours):.1f}×** "
            f"({money(compute(theirs))} against {money(compute(ours))}). "
            f"Billed duration: {by[(function, POWERTOOLS_STYLE)]['billed_ms'] / by[(function, 'ours')]['billed_ms']:.1f}× ours; "
            f"log bytes: {theirs['CloudWatch Logs'][0] / max(ours['CloudWatch Logs'][0], 1e-12):.0f}× ours.")
        requests = by[(function, "ours")]["requests_by_api"]
        scale = 1e6 / first["events"]
        out("AWS requests per million events, by API (the same in every style): "
            + ", ".join(f"{api} {n * scale:,.0f}" for api, n in requests.items()) + ".")
        out("")
    out(f"The {len(functions)} functions, per million events: ours **{money(grand['ours'])}**, with FilterAtSource "
        f"{money(grand['ours, FilterAtSource=true'])}, one record at a time with Powertools logs "
        f"{money(grand[POWERTOOLS_STYLE])} ({grand[POWERTOOLS_STYLE] / grand['ours']:.2f}×). "
        "docs/operating.md (Costs) says which settings move each line.")
    out("")

    # The saga per million orders: the same runs, scaled by the orders (the mix's placements).
    orders = first["orders"]
    per_order = {(f, s): cost_lines(by[(f, s)], powertools_line, prices, per="orders")
                 for f in functions for s in styles}
    scale = 1e6 / orders
    out(f"**Per million orders, the {len(functions)} functions together, the publish included.** An order "
        f"is a placement of the mix (ORDER_PLACED or ORDER_CREATED: {orders:,} of its {first['events']:,} "
        "events; its cancellations and payments come with them, one of each per two orders). Per million "
        f"orders {publisher['function']} publishes {published['records'] * scale:,.0f} decisions "
        f"({published['bytes'] / max(published['records'], 1):.0f} bytes a record with its key), "
        f"email-notifier sends {by[('email-notifier', 'ours')]['ses_messages'] * scale:,.0f} emails, and "
        f"every mapping reads {first['stream_records'] * scale:,.0f} records.")
    out("")
    out("| per million orders, ours | " + " | ".join(functions) + " | together | share |")
    out("|---|" + "---:|" * (len(functions) + 2))
    together = {s: sum(sum(v[2] for v in per_order[(f, s)].values()) for f in functions) for s in styles}
    for line in per_order[(functions[0], "ours")]:
        cells = []
        usd_sum = 0.0
        for f in functions:
            q, unit, usd = per_order[(f, "ours")][line]
            usd_sum += usd
            cells.append(f"{q:,.0f} {unit}: {money(usd)}" if q >= 10 else
                         (f"{q:,.2f} {unit}: {money(usd)}" if q else "–"))
        out(f"| {line} | " + " | ".join(cells) + f" | {money(usd_sum)} | {100 * usd_sum / together['ours']:.1f}% |")
    totals = {(f, s): sum(v[2] for v in per_order[(f, s)].values()) for f in functions for s in styles}
    out("| **total** | " + " | ".join(f"**{money(totals[(f, 'ours')])}**" for f in functions)
        + f" | **{money(together['ours'])}** | |")
    for s in styles[1:]:
        label = "with FilterAtSource=true" if s != POWERTOOLS_STYLE else "one record at a time, Powertools logs"
        out(f"| total, {label} | " + " | ".join(money(totals[(f, s)]) for f in functions)
            + f" | {money(together[s])} | |")
    out("")
    kinesis_written = sum(per_order[(f, "ours")]["Kinesis writes (decisions)"][2] for f in functions)
    kinesis_read = sum(per_order[(f, "ours")]["Kinesis reads"][2] for f in functions)
    ppu = published["put_payload_units"] * scale
    ppu_price = prices["prices"]["kinesis_put_payload_units"]
    out(f"Per million orders, the three together: ours **{money(together['ours'])}**, with FilterAtSource "
        f"{money(together['ours, FilterAtSource=true'])}, one record at a time with Powertools logs "
        f"{money(together[POWERTOOLS_STYLE])}. The publish: {published['on_demand_kib'] * scale:,.0f} KB written "
        f"on-demand, {money(kinesis_written)}, and the stream read by the {len(functions)} mappings, "
        f"{money(kinesis_read)}; on a provisioned stream the decisions would be {ppu:,.0f} PUT payload units "
        f"(25 KB each, ${ppu_price['usd']} per million: {money(ppu * ppu_price['usd'] / ppu_price['per'])}) "
        "plus its shard hours. Kinesis rates: on-demand (the template's mode) billed per GB written, each record "
        "rounded up to 1 KB, and per GB read, as the pricing page (aws.amazon.com/kinesis/data-streams/pricing) "
        "says; the dollar rates are us-east-1's, see the note in prices.json.")
    out("")


def fanout_critical_path(out, run):
    """Section 2's critical path: the batch's time against the longest key's chain of calls."""
    c = run["critical_path"]
    delay = run["delay_ms"]
    ratio = run["ms"] / c["critical_path_ms"]
    out(f"**Critical path.** Under per-key order a key's calls run one after another, each answered after "
        f"{delay} ms; the longest key's chain is the batch's physical limit, whatever the concurrency. Counted "
        f"from the stub's log (each call traced to its key by the event or order it names: "
        f"{run['aws_calls'] - c['unattributed_calls']:,} of the {run['aws_calls']:,} calls, over "
        f"{c['keys_with_calls']} keys, {run['aws_calls'] / max(run['wanted'], 1):.1f} calls per wanted record), "
        f"the longest key ({c['longest_key']}) makes {c['longest_key_calls']} calls: "
        f"{c['longest_key_calls']} × {delay} ms = **{c['critical_path_ms']:.0f} ms**.")
    out("")
    out("| batch | ms |")
    out("|---|---:|")
    out(f"| measured, concurrency {run['concurrency']} | {run['ms']:.0f} |")
    out(f"| critical path: the longest key's {c['longest_key_calls']} calls × {delay} ms | {c['critical_path_ms']:.0f} |")
    out(f"| the engine's schedule at concurrency {run['concurrency']} (longest keys by records first), "
        f"replayed with the counted calls, no client time | {c['engine_schedule_ms']:.0f} |")
    out(f"| the same with the longest chains first | {c['longest_chain_first_schedule_ms']:.0f} |")
    out(f"| all calls × {delay} ms ÷ {run['concurrency']} slots | {c['work_over_slots_ms']:.0f} |")
    out("")
    out(f"Measured ÷ critical path: **{ratio:.2f}×** (goal at most 1.2×: {verdict(ratio <= 1.2)}).")
    crit = c["critical_path_ms"]
    floor = max(crit, c["work_over_slots_ms"])
    out("")
    out(f"What takes the time: the longest key's first call went out {c['longest_key_first_call_after_ms']:.0f} ms "
        f"into the batch and its chain took {c['longest_key_span_ms']:.0f} ms, against {crit:.0f} ms of answers: "
        f"{c['longest_key_calls'] - 1} times the client's time between an answer and the key's next call (median "
        f"{c['gap_median_ms']:.1f} ms, p90 {c['gap_p90_ms']:.1f} ms, max {c['gap_max_ms']:.1f} ms over all keys: "
        "the engine, the SDK's serialising and signing, the connection pool). The rest is the concurrency cap: "
        f"{c['keys_with_calls']} keys with calls share {run['concurrency']} slots, so no schedule can finish before "
        f"all calls × {delay} ms ÷ {run['concurrency']} = {c['work_over_slots_ms']:.0f} ms "
        f"({floor / crit:.2f}× the critical path, with no client time at all); the engine takes the keys up "
        f"longest by records first (not by calls), which replayed with the counted calls needs "
        f"{c['engine_schedule_ms']:.0f} ms ({c['engine_schedule_ms'] / crit:.2f}×; longest chains first, "
        f"{c['longest_chain_first_schedule_ms']:.0f} ms), and the last key's first call went out "
        f"{c['last_key_first_call_after_ms']:.0f} ms into the batch. The first call left "
        f"{c['first_call_after_ms']:.1f} ms after the start; the batch ended {c['after_last_answer_ms']:.1f} ms after "
        f"the last answer was due; {c['connections_opened']} connections were opened during the batch "
        f"({c['connections_used']} carried its calls). Nothing in the engine was changed for this figure.")
    out("")


# 5. Put to confirmation through the local pipeline.
PIPELINE_ORDERS = 1000
PIPELINE_TIMEOUT_S = 600
PIPELINE_POLL_S = 2.0
# The products the local stack stocks, and local.env, as scripts/local_aws.py (their one reader)
# has them.
PIPELINE_SKUS = list(local_aws.STOCK)


def placements(n, path, seed=5):
    """n placements (bare ORDER_PLACED payloads, one a line, as `producer put --type` reads them) over
    the local stack's products; the units each product needs."""
    import random
    rnd = random.Random(seed)
    need = dict.fromkeys(PIPELINE_SKUS, 0)
    with open(path, "w") as f:
        for i in range(n):
            user = f"user-{rnd.randrange(200):04d}"
            items = [{"productId": rnd.choice(PIPELINE_SKUS), "quantity": rnd.randrange(1, 4)}
                     for _ in range(rnd.randrange(1, 4))]
            for item in items:
                need[item["productId"]] += item["quantity"]
            f.write(json.dumps({"orderId": f"bench-order-{i:05d}", "userId": user,
                                "email": f"{user}@example.com", "items": items,
                                "total": f"{rnd.randrange(5, 500)}.{rnd.randrange(100):02d}"}) + "\n")
    return need


def pipeline_state(endpoint, settings, orders):
    """What the stack has done for `orders` so far: their reservations (order: status) and the
    orders whose confirmation is among moto's sent emails (read as `local_aws.py snapshot` does)."""
    import boto3
    with urllib.request.urlopen(f"{endpoint}/moto-api/data.json", timeout=60) as r:
        data = json.load(r)
    confirmed = set()
    for m in data.get("ses", {}).get("TemplateMessage", []):
        if m.get("template") == settings["TEMPLATE_NAME"]:
            order = json.loads(m["template_data"]).get("orderId")
            if order in orders:
                confirmed.add(order)
    ddb = boto3.client("dynamodb", endpoint_url=endpoint, region_name=settings["AWS_REGION"],
                       aws_access_key_id=settings["AWS_ACCESS_KEY_ID"],
                       aws_secret_access_key=settings["AWS_SECRET_ACCESS_KEY"])
    reservations = {}
    for page in ddb.get_paginator("scan").paginate(TableName=settings["INVENTORY_TABLE"],
                                                   ConsistentRead=True):
        for item in page["Items"]:
            order = item["pk"]["S"].removeprefix("ORDER#")
            if order in orders and "status" in item:
                reservations[order] = item["status"]["S"]
    return reservations, confirmed


def pipeline(n=PIPELINE_ORDERS, timeout_s=PIPELINE_TIMEOUT_S):
    """Starts the local stack, puts n placements with the producer, and times the first put to the
    moment every reserved order's confirmation is in moto; stops the stack, also on failure. Never
    waits past timeout_s for the pipeline: what it had by then is reported."""
    state = os.path.join(WORK, "stack")
    stack = os.path.join(ROOT, "scripts", "stack.sh")
    env = dict(os.environ, LOCAL_STATE=state,
               PATH=os.path.join(ROOT, ".venv", "bin") + os.pathsep + os.environ["PATH"])
    result = {"bench": "pipeline", "orders": n, "timeout_s": timeout_s, "poll_s": PIPELINE_POLL_S}
    # The stack's children write to their logs: nothing of theirs may hold our pipes open.
    quiet = dict(cwd=ROOT, env=env, check=True, stdout=sys.stderr, stdin=subprocess.DEVNULL)
    try:
        # The functions built first, so that `cargo lambda watch` starts them rather than compiles them.
        print("+ cargo build --workspace --bins", file=sys.stderr, flush=True)
        subprocess.run(["cargo", "build", "--quiet", "--workspace", "--bins"], timeout=3600, **quiet)
        subprocess.run([stack, "down"], timeout=60, **dict(quiet, check=False))
        shutil.rmtree(state, ignore_errors=True)
        print("+ scripts/stack.sh up", file=sys.stderr, flush=True)
        subprocess.run([stack, "up"], timeout=300, **quiet)
        with open(os.path.join(state, "moto.port")) as f:
            endpoint = f"http://127.0.0.1:{f.read().strip()}"
        settings = local_aws.settings()
        orders_file = os.path.join(WORK, f"placements-{n}.jsonl")
        need = placements(n, orders_file)
        orders = {f"bench-order-{i:05d}" for i in range(n)}
        # Every product restocked by what all the orders together ask of it, at the least.
        units = max(need.values())
        subprocess.run([VENV_PY, os.path.join(ROOT, "scripts", "local_aws.py"), "restock",
                        "--endpoint", endpoint, "--units", str(units)], timeout=120, **quiet)
        result.update(restocked_units_per_product=units)
        print(f"+ scripts/stack.sh produce put {os.path.relpath(orders_file, ROOT)} --type ORDER_PLACED",
              file=sys.stderr, flush=True)
        started = time.monotonic()
        deadline = started + timeout_s
        subprocess.run([stack, "produce", "put", orders_file, "--type", "ORDER_PLACED"],
                       timeout=timeout_s, **quiet)
        result["put_s"] = time.monotonic() - started
        reservations, confirmed = {}, set()
        while True:
            now = time.monotonic()
            reservations, confirmed = pipeline_state(endpoint, settings, orders)
            seen = time.monotonic()
            reserved = {o for o, status in reservations.items() if status == "RESERVED"}
            if len(reservations) == n and reserved <= confirmed:
                # Done between the poll before this one and this one.
                result["seconds"] = now - started
                break
            if seen >= deadline:
                result["timed_out"] = True
                result["seconds"] = seen - started
                break
            time.sleep(max(0.0, min(PIPELINE_POLL_S - (seen - now), deadline - seen)))
        result.update(
            decided=len(reservations),
            reserved=sum(1 for s in reservations.values() if s == "RESERVED"),
            rejected=sum(1 for s in reservations.values() if s != "RESERVED"),
            confirmations=len(confirmed),
        )
        result["confirmations_per_s"] = result["confirmations"] / result["seconds"]
    except Exception as e:  # noqa: BLE001 - whatever broke, the step reports it and the run goes on
        result["error"] = f"{type(e).__name__}: {e}"
    finally:
        try:
            subprocess.run([stack, "down"], timeout=60, **dict(quiet, check=False))
        except subprocess.SubprocessError as e:
            result.setdefault("error", f"stopping the stack: {e}")
    print(json.dumps(result), file=sys.stderr, flush=True)
    return result


def pipeline_section(out, p):
    """Section 5: put to confirmation through the local pipeline."""
    out(f"## 5. Put to confirmation: {p['orders']:,} orders through the local pipeline")
    out("")
    out("The local stack of `scripts/stack.sh up` (moto's AWS-API server, `cargo lambda watch` running the "
        "debug builds, `tools/local-esm` feeding the stream to the template's three mappings), on this machine. "
        f"{p['orders']:,} placements (ORDER_PLACED, each of its own order, keyed by order id, 1 to 3 lines of "
        "the local stock's products), stock restocked beforehand so that every one can be reserved, put with "
        "the producer (`scripts/stack.sh produce put FILE --type ORDER_PLACED`); timed from the start of the "
        "put until every reserved order's confirmation is among moto's sent emails (read as "
        f"`scripts/local_aws.py snapshot` reads them), polled every {p['poll_s']:.0f} s (the time is the start "
        "of the first poll that found them all: within one poll of the last confirmation). Each order goes placement → "
        "inventory-updater (reserve, publish INVENTORY_RESERVED) → the stream → email-notifier (ledger, "
        "SES): two trips through the mapping. moto answers one request at a time, so this measures the "
        "local pipeline, not AWS.")
    out("")
    if "error" in p and "seconds" not in p:
        out(f"**Not measured**: {p['error']}.")
        out("")
        return
    out("| orders | reserved | confirmations | seconds, put to the last confirmation | confirmations per second | the put alone, s |")
    out("|---:|---:|---:|---:|---:|---:|")
    out(f"| {p['orders']:,} | {p['reserved']:,} | {p['confirmations']:,} | {p['seconds']:.1f} | "
        f"{p['confirmations_per_s']:.1f} | {p.get('put_s', 0):.1f} |")
    out("")
    if p.get("timed_out"):
        out(f"**Not finished in {p['timeout_s'] / 60:.0f} minutes**: {p['decided']:,} of the {p['orders']:,} "
            f"orders decided and {p['confirmations']:,} confirmations by then; the figures above are what it "
            "had done.")
        out("")
    if "error" in p:
        out(f"Note: {p['error']}.")
        out("")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=21)
    p.add_argument("--out", default=os.path.join(ROOT, "BENCHMARKS.md"))
    p.add_argument("--pipeline-orders", type=int, default=PIPELINE_ORDERS,
                   help="orders put through the local pipeline in step 5")
    a = p.parse_args()
    os.makedirs(WORK, exist_ok=True)
    big = os.path.join(WORK, "batch-6000.json")
    fan = os.path.join(WORK, "fanout-1000.json")
    run([sys.executable, os.path.join(BENCH, "gen_event.py"), "6000", big])
    run([sys.executable, os.path.join(BENCH, "gen_event.py"), "1000", fan, "--keys", "200",
         "--types", "ORDER_PLACED,PAYMENT_CAPTURED"])
    mix = os.path.join(WORK, "cost-1000.json")
    run([sys.executable, os.path.join(BENCH, "gen_event.py"), "1000", mix])

    # 1. CPU path, ours and the peers' on the same file, in ROUNDS turns (ours, Powertools, Node;
    # again; again), each figure the median of its rounds' medians: a slow spell of the shared
    # machine then falls on one round, not on one contender. The breakdown runs once, after.
    rounds = []
    for _ in range(ROUNDS):
        rounds.append((
            {r["name"]: r for r in cargo_bench("cpu", big, str(a.runs))},
            peer([VENV_PY, os.path.join(BENCH, "anchor_powertools.py"), big, str(a.runs)]),
            peer(["node", os.path.join(BENCH, "anchor_node.js"), big, str(a.runs)]),
        ))
    # The log bytes per record are a count, not a time: the mean over the rounds.
    log_bytes = statistics.mean(r[0].pop("log bytes per successful record at INFO")["bytes_per_record"]
                                for r in rounds)
    cpu = {name: pooled([r[0][name] for r in rounds]) for name in rounds[0][0]}
    breakdown = [r for r in cargo_bench("cpu", big, str(a.runs), env=dict(os.environ, CPU_BREAKDOWN="1"))
                 if "median_ms" in r]
    cpu.update({r["name"]: r for r in breakdown if r["name"] not in cpu})
    powertools = pooled([r[1] for r in rounds])
    node = pooled([r[2] for r in rounds])

    # 2. I/O fan-out.
    fanout = cargo_bench("fanout", fan, "20")

    # 3. Footprint of the release bootstraps, built as they are deployed.
    run(["cargo", "lambda", "build", "--release", "--quiet"],
        env=dict(os.environ, PATH=os.path.join(ROOT, ".venv", "bin") + os.pathsep + os.environ["PATH"]))
    footprint = cargo_bench("footprint", os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "lambda"),
                            big, str(a.runs))

    # 4. Cost: counted calls, bytes and billed time, priced.
    costs = cargo_bench("cost", mix, os.path.join(ROOT, "template.yaml"))
    powertools_line = json_lines(run([VENV_PY, os.path.join(BENCH, "powertools_log_line.py"), mix]))[0]
    with open(os.path.join(BENCH, "prices.json")) as f:
        prices = json.load(f)

    # 5. Put to confirmation through the local stack (bounded: it reports rather than hangs).
    put_to_confirmation = pipeline(a.pipeline_orders)

    floor = cpu["serde_json validation pass (IgnoredAny)"]
    size_mb = os.path.getsize(big) / 1e6
    lines = []
    out = lines.append
    out("# Benchmarks")
    out("")
    out(f"Measured by `make bench` on {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC.")
    out(f"Machine: {machine()}.")
    out("Each figure is the median of the runs given (the minimum beside it); the machine is shared and "
        "figures move by ±30% from run to run. Our CPU-path rows and the serde pass are timed in turns "
        "(each run times each once), so their ratios hold when the figures move; the peers run in "
        f"their own processes, so ours and theirs are measured in {ROUNDS} rounds (ours, Powertools, "
        "Node; again), each figure the median of its rounds' medians (the raw figures below list "
        "them). No test asserts on any of them.")
    out("")
    out(f"## 1. CPU path: {floor['records']:,} records, {size_mb:.1f} MB, event bytes to response")
    out("")
    out("Ours: the event read as the functions read it (`lambda_runtime`'s deserializer into a "
        "`KinesisBatch`: the body taken whole as raw JSON, then the one reader of the Lambda event), "
        "the engine and the function's rule, every effect a no-op port, the "
        "response serialised (`tests/benches/cpu.rs`); the ↳ rows split it, show what the reader alone "
        "costs, and what the functions' own logs add at "
        "INFO (their JSON subscriber, writing to a byte counter, timed in turns with the paths: each "
        "record's lines, such as email-notifier's confirmation sent, are kept and dropped when it "
        "succeeds). Peers: in-process on the same file, no-op effect "
        "(`scripts/bench/anchor_*`). All keep ORDER_PLACED and ORDER_CREATED (inventory-updater also "
        "ORDER_CANCELLED).")
    out("")
    out("| path | median ms | min ms | kept | vs serde pass | Node ÷ ours | Powertools ÷ ours |")
    out("|---|---:|---:|---:|---:|---:|---:|")
    out(f"| bare `serde_json` validation pass (`IgnoredAny`) | {floor['median_ms']:.2f} | {floor['min_ms']:.2f} | | 1.00× | | |")
    for name in ("email-notifier", "inventory-updater"):
        r = cpu[name]
        out(f"| **ours: {name}** | **{r['median_ms']:.2f}** | {r['min_ms']:.2f} | {r['kept']} | "
            f"{r['median_ms'] / floor['median_ms']:.2f}× | {node['median_ms'] / r['median_ms']:.1f}× | "
            f"{powertools['median_ms'] / r['median_ms']:.1f}× |")
    for name in ("decode only", "decode only, the reader alone (buffers reused)",
                 "email-notifier engine only", "inventory-updater engine only",
                 "email-notifier, logging at INFO", "inventory-updater, logging at INFO"):
        if name in cpu:
            r = cpu[name]
            out(f"| ↳ {name} | {r['median_ms']:.2f} | {r['min_ms']:.2f} | | {r['median_ms'] / floor['median_ms']:.2f}× | | |")
    out(f"| Node handler of the article's shape | {node['median_ms']:.2f} | | {node['kept']} | "
        f"{node['median_ms'] / floor['median_ms']:.1f}× | | |")
    out(f"| Powertools Python batch processor | {powertools['median_ms']:.2f} | | {powertools['kept']} | "
        f"{powertools['median_ms'] / floor['median_ms']:.1f}× | | |")
    out("")
    slowest = max(cpu[n]["median_ms"] for n in ("email-notifier", "inventory-updater"))
    out(f"Targets, for the slower of our two paths ({slowest:.2f} ms): at most 2.5× the serde pass "
        f"({2.5 * floor['median_ms']:.2f} ms): {verdict(slowest <= 2.5 * floor['median_ms'])} "
        f"(at most 3×, {3 * floor['median_ms']:.2f} ms, where the simpler design cannot: "
        f"{verdict(slowest <= 3 * floor['median_ms'])}); "
        f"at least 8× faster than Node: {verdict(node['median_ms'] / slowest >= 8)}; "
        f"at least 11× faster than Powertools: {verdict(powertools['median_ms'] / slowest >= 11)}.")
    # Logging: what the functions' own logs add at INFO, timed in turns with the paths without
    # them, and the bytes they write per successful record.
    overhead = {n: cpu[f"{n}, logging at INFO"]["median_ms"] / cpu[n]["median_ms"] - 1
                for n in ("email-notifier", "inventory-updater")}
    worst = max(overhead.values())
    out(f"Logging at INFO (log buffering: nothing per record on success) adds "
        + ", ".join(f"{100 * v:+.1f}% to {n}" for n, v in overhead.items())
        + f": at most 10%: {verdict(worst <= 0.10)}. Log bytes per successful record, over the "
        f"6,000-record batch: {log_bytes:.2f} (at most 2: {verdict(log_bytes <= 2)}); an invocation "
        "also writes its `batch done` line and its EMF metrics, about 1 KB, 0.2 bytes a record here.")
    out("")
    if "decode only" in cpu:
        decode = cpu["decode only"]["min_ms"]
        out("**Where the time goes** (minimums of the ↳ rows; instruction counts from "
            "`valgrind --tool=callgrind` on the same benchmark, `CPU_ONLY=` one row):")
        out("")
        out(f"- *Reading the event* ({decode:.2f} ms, {decode / floor['min_ms']:.2f}× the serde pass): "
            "`lambda_runtime` takes the body whole as raw JSON (a validating scan, through "
            "`serde_path_to_error`), then the one reader reads it field by field: the body's UTF-8 "
            "check (simdutf8), the base64 decoding of every record's data (base64-simd), and the "
            "fields. Issue 20 measured the two speed tricks that used to spare part of this (a layer "
            "reading the body's bytes before the runtime, and reading a record by the shape of the "
            "one before) through the release binary: each saved under 20% of the whole invocation, "
            "so the simple versions replaced them.")
        out("- *The engine* (the ↳ engine rows): the envelope and the payload are read by `serde_json` "
            "in one pass, the payload by the function's derived schema (for email-notifier about two "
            "fifths of the engine: some 5,000 instructions per order, a third of them the values "
            "checking themselves); email-notifier then writes each confirmation's template data with "
            "`serde_json` (about a fifth); grouping by key, the futures and the tally are the rest. "
            "The previous design read the envelope and the order with hand-written layout readers "
            "(three readers per format), in about two thirds of the instructions; issue 12 traded that for one "
            "reader per format.")
        out("")
    concurrent, serial = fanout[0], fanout[1]
    out(f"## 2. I/O fan-out: {concurrent['records']:,} records, {concurrent['keys']} keys, "
        f"{concurrent['wanted']} wanted, every AWS call answered after {concurrent['delay_ms']} ms")
    out("")
    out("email-notifier through the real adapters and SDK clients (claim, send, mark: three calls per "
        "wanted record) against `tests/src/stub_aws.rs` (`tests/benches/fanout.rs`).")
    out("")
    out("| engine | concurrency | AWS calls | ms | per-key order |")
    out("|---|---:|---:|---:|---|")
    out(f"| ours | {concurrent['concurrency']} | {concurrent['aws_calls']} | {concurrent['ms']:.0f} | {concurrent['per_key_order']} |")
    out(f"| ours, one record at a time (Powertools' default) | 1 | {serial['aws_calls']} | {serial['ms']:.0f} | {serial['per_key_order']} |")
    ratio = serial["ms"] / concurrent["ms"]
    out("")
    out(f"Ratio: **{ratio:.1f}×** (target at least 30×: {verdict(ratio >= 30)}).")
    out("")
    fanout_critical_path(out, concurrent)
    out("## 3. Cold start, memory, size of the release bootstraps")
    out("")
    out("`cargo lambda build --release` (LTO, one codegen unit, stripped, panic = unwind), run against a "
        "local Lambda Runtime API (`tests/src/runtime_api.rs`) with AWS calls to the stub endpoint "
        f"(`tests/benches/footprint.rs`). Cold start: process start to the first poll, SDK clients built, "
        f"median of {a.runs} starts. The {size_mb:.1f} MB batch, delivered first (every wanted record's "
        f"effects a call to the stub: the invocation is its I/O), then redelivered {a.runs} times to the "
        "same warm process (every record finished before and remembered: no call, so what is timed is "
        "the Runtime API's body, its reading and the engine; the median). Memory: peak RSS (VmHWM) over "
        "them all.")
    out("")
    out("| function | cold start ms (min) | peak RSS MB | first delivery ms | redelivery ms | bootstrap MB |")
    out("|---|---:|---:|---:|---:|---:|")
    for f in footprint:
        out(f"| {f['function']} | {f['cold_start_median_ms']:.1f} ({f['cold_start_min_ms']:.1f}) | "
            f"{f['peak_rss_kib'] / 1024:.1f} | {f['invocation_ms']:.0f} | {f['redelivery_ms']:.1f} | "
            f"{f['bootstrap_bytes'] / 1e6:.2f} |")
    out("")
    out(f"Targets: cold start at most 30 ms: {verdict(all(f['cold_start_median_ms'] <= 30 for f in footprint))}; "
        f"peak RSS at most 40 MB: {verdict(all(f['peak_rss_kib'] / 1024 <= 40 for f in footprint))}; "
        f"bootstrap at most 8 MB: {verdict(all(f['bootstrap_bytes'] / 1e6 <= 8 for f in footprint))}.")
    out("")
    cost_section(out, costs, powertools_line, prices)
    pipeline_section(out, put_to_confirmation)
    out("Raw figures (JSON lines):")
    out("")
    out("```")
    for r in [*cpu.values(), powertools, node, *fanout, *footprint, *costs, powertools_line,
              put_to_confirmation]:
        out(json.dumps(r))
    out("```")
    text = "\n".join(lines) + "\n"
    with open(a.out, "w") as f:
        f.write(text)
    print(text)
    print(f"written to {os.path.relpath(a.out, ROOT)}")


if __name__ == "__main__":
    main()

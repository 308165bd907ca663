#!/usr/bin/env bash
# The local stack: moto's AWS-API server and `cargo lambda watch`, both on free loopback ports,
# and the local event source mapping (tools/local-esm) that feeds the stream to the functions.
#
#   stack.sh up                 start all three, bootstrap the server, leave them running
#   stack.sh down               stop what `up` started
#   stack.sh invoke FN EVENT    invoke a function with events/EVENT against the running stack, and
#                               say what it did (fanout invoke)
#   stack.sh produce ARGS...    run the producer (tools/producer) against the running stack
#   stack.sh dlq | redrive ARGS...  the operator's tool (tools/fanout) against the running stack
#   stack.sh snapshot           print the running stack's stock, reservations, emails, ledger, DLQ
#   stack.sh order ID           one order as the read API (order-status-api's function URL) has it
#   stack.sh stock [--set N | --add N] [--sku SKU ...]   set or add units of stock, print the stock
#   stack.sh demo               up, produce a realistic mix onto the stream, wait until the mapping
#                               has delivered it, print a report, down (also on failure or Ctrl-C)
#
# State lives in .local/ (LOCAL_STATE): the ports, the process ids and the logs.
set -euo pipefail
cd "$(dirname "$0")/.."
STATE=${LOCAL_STATE:-.local}
PY=.venv/bin/python
mkdir -p "$STATE"

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_for_port() { # port, what, log
  for _ in $(seq 1 150); do
    (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
    sleep 0.2
  done
  echo "$2 did not start on port $1; its log:" >&2
  tail -20 "$3" >&2
  return 1
}

running() { [ -f "$STATE/$1.pid" ] && kill -0 "$(cat "$STATE/$1.pid")" 2>/dev/null; }

BIN="${CARGO_TARGET_DIR:-target}/debug"

# The local settings (local.env), for the tools.
with_env() {
  ( set -a; . ./local.env; set +a
    exec "$@" )
}

# The local settings and the server's endpoint, for the tools.
with_stack_env() {
  ( set -a; . ./local.env; set +a
    export AWS_ENDPOINT_URL="http://127.0.0.1:$(cat "$STATE/moto.port")"
    exec "$@" )
}

# Stops with one line unless the parts named (moto, watch, esm; all three by default) are running.
require_up() {
  local part
  for part in ${*:-moto watch esm}; do
    running "$part" || { echo "the local stack is down: start it with 'make up', then run this again" >&2; exit 1; }
  done
}

endpoint() { echo "http://127.0.0.1:$(cat "$STATE/moto.port")"; }

# The read API's function URL, as cargo lambda watch serves it.
read_api() { echo "http://127.0.0.1:$(cat "$STATE/watch.port")/lambda-url/order-status-api"; }

up() {
  if running moto && running watch && running esm; then
    echo "the stack is already up: AWS endpoint http://127.0.0.1:$(cat $STATE/moto.port), functions on port $(cat $STATE/watch.port)"
    return 0
  fi
  down >/dev/null 2>&1 || true
  local moto_port="" watch_port endpoint
  # Port 0: the server binds a free port itself and says which in its log.
  setsid "$PY" scripts/moto_server.py -H 127.0.0.1 -p 0 >"$STATE/moto.log" 2>&1 &
  echo $! >"$STATE/moto.pid"
  for _ in $(seq 1 150); do
    moto_port=$(grep -o 'Running on http://127.0.0.1:[0-9]*' "$STATE/moto.log" | grep -o '[0-9]*$' || true)
    [ -n "$moto_port" ] && break
    sleep 0.2
  done
  [ -n "$moto_port" ] || { echo "the AWS-API server (moto) did not start; its log:" >&2; tail -20 "$STATE/moto.log" >&2; exit 1; }
  echo "$moto_port" >"$STATE/moto.port"
  endpoint="http://127.0.0.1:$moto_port"
  wait_for_port "$moto_port" "the AWS-API server (moto)" "$STATE/moto.log"
  "$PY" scripts/local_aws.py bootstrap --endpoint "$endpoint"

  watch_port=$(free_port)
  setsid cargo lambda watch --quiet --env-file local.env \
    --env-var "AWS_ENDPOINT_URL=$endpoint" --env-var AWS_LAMBDA_LOG_FORMAT=JSON \
    --invoke-address 127.0.0.1 --invoke-port "$watch_port" >"$STATE/watch.log" 2>&1 &
  echo $! >"$STATE/watch.pid"
  echo "$watch_port" >"$STATE/watch.port"
  wait_for_port "$watch_port" "cargo lambda watch" "$STATE/watch.log"
  check_functions

  # The event source mapping: template.yaml's settings, the stream on the server, the functions
  # through watch's Invoke API, failure records to the local dead-letter queue.
  rm -f "$STATE/esm.json"
  # Retries 20 ms apart at first (doubling), so that a batch Lambda gives up on does so in seconds.
  setsid "$0" run-esm --invoke-endpoint "http://127.0.0.1:$watch_port" --status "$STATE/esm.json" \
    --retry-backoff-ms 20 >"$STATE/esm.log" 2>&1 &
  echo $! >"$STATE/esm.pid"
  for _ in $(seq 1 100); do
    [ -f "$STATE/esm.json" ] && break
    running esm || { echo "the local event source mapping did not start; its log:" >&2; tail -20 "$STATE/esm.log" >&2; exit 1; }
    sleep 0.2
  done
  echo "the stack is up: AWS endpoint $endpoint, functions on port $watch_port, the event source mapping polling the stream (logs in $STATE/)"
}

# Invokes each function once with an empty batch: one that cannot start (a wrong setting in
# local.env) is named now, with its start-up error, and the stack is stopped; nothing waits on it.
check_functions() {
  echo '{"Records":[]}' >"$STATE/empty-batch.json"
  local fn out
  for fn in $("$PY" scripts/local_aws.py functions); do
    if ! out=$(with_env "$BIN/fanout" invoke --state "$STATE" "$fn" "$STATE/empty-batch.json" --json 2>&1 >/dev/null); then
      case "$out" in
        *"cannot start"*)
          echo "$out" >&2
          down >/dev/null 2>&1 || true
          exit 1 ;;
      esac
    fi
  done
}

down() {
  for name in esm watch moto; do
    if [ -f "$STATE/$name.pid" ]; then
      # Each was started in its own session: stop its whole process group (cargo run, the function).
      kill -- "-$(cat "$STATE/$name.pid")" 2>/dev/null || true
      rm -f "$STATE/$name.pid" "$STATE/$name.port"
    fi
  done
  echo "the stack is down"
}

invoke() { # function, event name (events/NAME[.json]) or path
  with_env "$BIN/fanout" invoke --state "$STATE" "$@"
}

put_events() { # producer arguments
  require_up
  with_stack_env "$BIN/producer" "$@"
}

# The producer, then what the mapping and the functions did with what it wrote.
produce() { # producer arguments
  require_up
  local logged started
  logged=$(wc -l <"$STATE/watch.log")
  started=$(now_ms)
  put_events "$@"
  case "${1:-}" in generate|put) ;; *) return 0 ;; esac
  echo "waiting for the event source mapping to deliver it to the functions ..."
  wait_delivered "$started"
  "$PY" scripts/local_aws.py esm-report --esm "$STATE/esm.json"
  "$BIN/fanout" counts "$STATE/watch.log" --from-line "$logged"
}

now_ms() { "$PY" -c 'import time; print(int(time.time() * 1000))'; }

# Waits until the mapping has delivered everything written before $1 (epoch ms) to every function,
# then again until a round reads nothing new: inventory-updater's decisions, written meanwhile, are
# read by the other functions.
wait_delivered() {
  local since=$1 last="" reads
  for _ in $(seq 1 600); do
    if reads=$("$PY" - "$STATE/esm.json" "$since" <<'PY'
import json, sys
try:
    functions = json.load(open(sys.argv[1]))["functions"].values()
except (OSError, ValueError, KeyError):
    sys.exit(1)
if not functions or not all((f["settled_at_ms"] or 0) >= int(sys.argv[2]) for f in functions):
    sys.exit(1)
print(sum(f["totals"]["read"] for f in functions))
PY
    ); then
      [ "$reads" = "$last" ] && return 0
      last=$reads
      since=$(now_ms)
    fi
    sleep 0.5
  done
  echo "the event source mapping did not deliver everything in 5 minutes; see $STATE/esm.log" >&2
  return 1
}

# One order per outcome of the saga, as envelopes (one per line): confirmed and paid; refused for
# want of stock; confirmed, then its payment failed (the compensation); cancelled before its
# placement arrived.
saga_story() {
  local ts n=0
  ts=$(date -u +%Y-%m-%dT%H:%M:%S)
  event() { # id type order payload-rest: a millisecond after the one before
    n=$((n + 1))
    printf '{"eventId": "story-%s", "eventType": "%s", "timestamp": "%s.%03dZ", "payload": {"orderId": "%s"%s}}\n' \
      "$1" "$2" "$ts" "$n" "$3" "${4:-}"
  }
  local who=', "userId": "user-story", "email": "story@example.com", "total": "9.90"'
  event 1 ORDER_PLACED demo-confirmed "$who"', "items": [{"productId": "sku-pear", "quantity": 1}]'
  event 2 PAYMENT_CAPTURED demo-confirmed ', "amount": "9.90"'
  event 3 ORDER_PLACED demo-out-of-stock "$who"', "items": [{"productId": "sku-apple", "quantity": 999}]'
  event 4 ORDER_PLACED demo-payment-failed "$who"', "items": [{"productId": "sku-plum", "quantity": 1}]'
  event 5 PAYMENT_FAILED demo-payment-failed ', "reason": "card declined"'
  event 6 ORDER_CANCELLED demo-cancelled-first
  event 7 ORDER_PLACED demo-cancelled-first "$who"', "items": [{"productId": "sku-gold", "quantity": 1}]'
}

demo() {
  trap 'down >/dev/null' EXIT
  trap 'exit 130' INT TERM
  down >/dev/null 2>&1 || true
  up
  local endpoint="http://127.0.0.1:$(cat "$STATE/moto.port")" started put
  # Stock for the generated orders (the samples of `make invoke` need only the bootstrap's).
  "$PY" scripts/local_aws.py stock --endpoint "$endpoint" --add 30 >/dev/null
  "$PY" scripts/local_aws.py snapshot --endpoint "$endpoint" >"$STATE/before.json"
  local logged; logged=$(wc -l <"$STATE/watch.log")
  started=$(now_ms)
  echo
  echo "== The producer writes to the stream =="
  # First a story of one order per outcome of the saga, each keyed by its order (the payment
  # events stand for the payment service's), then the realistic mix.
  saga_story >"$STATE/saga-story.jsonl"
  put_events put "$STATE/saga-story.jsonl"
  # Orders, creations, cancellations, payments (skipped), a few duplicates and poison records:
  # once as plain records, once as KPL aggregates packed by shard.
  put_events generate --orders 40 --keys 8 --duplicates 0.05 --poison 0.05 --seed 11
  put_events generate --orders 40 --keys 8 --duplicates 0.05 --poison 0.05 --seed 12 --aggregate
  put=$(now_ms)
  echo
  echo "== The event source mapping delivers it to the three functions (and inventory's decisions on to the others) =="
  wait_delivered "$put"
  echo "delivered $(( ($(now_ms) - started) ))ms after the first put"
  "$PY" scripts/local_aws.py snapshot --endpoint "$endpoint" >"$STATE/after.json"
  "$PY" scripts/local_aws.py esm-report --esm "$STATE/esm.json"
  "$BIN/fanout" counts "$STATE/watch.log" --from-line "$logged"
  "$PY" scripts/local_aws.py report --before "$STATE/before.json" --after "$STATE/after.json"
  "$PY" scripts/local_aws.py saga-report --before "$STATE/before.json" --after "$STATE/after.json" \
    --api "$(read_api)"

  echo
  echo "== A batch Lambda gives up on, kept whole in S3 =="
  # The dead-letter queue goes away (deleted by mistake, say): a poison record cannot be captured,
  # so it is reported and retried until MaximumRetryAttempts runs out; the mapping then gives up
  # and its OnFailure destination, the failure bucket, keeps the batch with its records.
  "$PY" scripts/local_aws.py remove-dlq --endpoint "$endpoint"
  echo '{"eventId": "evt-lost-queue", "eventType": "ORDER_PLACED", "timestamp": "2026-11-30T00:00:00.000Z", "payload": {"orderId": "ord-lost-queue"}}' \
    >"$STATE/poison.jsonl"
  put_events put "$STATE/poison.jsonl"
  put=$(now_ms)
  wait_delivered "$put"
  "$PY" scripts/local_aws.py bootstrap --endpoint "$endpoint" # the queue is back
  with_stack_env "$BIN/fanout" dlq --from bucket
  echo
  echo "== Redriving the failure bucket: the records go back on the stream, in order; the objects are deleted =="
  with_stack_env "$BIN/fanout" redrive --from bucket
  put=$(now_ms)
  wait_delivered "$put"
  echo "redelivered: the queue is back, so the poison record is captured this time"
  with_stack_env "$BIN/fanout" dlq | grep -E "messages? in|ord-lost-queue|evt-lost-queue|failure records? in" || true
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  invoke) shift; invoke "$@" ;;
  produce) shift; produce "$@" ;;
  run-esm) shift; with_stack_env "$BIN/local-esm" "$@" ;; # for `up`
  dlq) shift; require_up moto; with_stack_env "$BIN/fanout" dlq "$@" ;;
  redrive) shift; require_up moto; with_stack_env "$BIN/fanout" redrive "$@" ;;
  snapshot) require_up moto; "$PY" scripts/local_aws.py snapshot --endpoint "$(endpoint)" ;;
  stock) shift; require_up moto; "$PY" scripts/local_aws.py stock --endpoint "$(endpoint)" "$@" ;;
  order) shift; require_up moto watch
    [ -n "${1:-}" ] || { echo "usage: make order ID=<orderId>" >&2; exit 2; }
    "$PY" scripts/local_aws.py order --api "$(read_api)" --id "$1" ;;
  demo) demo ;;
  *) echo "usage: $0 up|down|invoke FN EVENT|produce ARGS...|dlq|redrive ARGS...|snapshot|stock ARGS...|order ID|demo" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# The local stack: moto's AWS-API server and `cargo lambda watch`, both on free loopback ports.
#
#   stack.sh up                 start both, bootstrap the server, leave them running
#   stack.sh down               stop what `up` started
#   stack.sh invoke FN EVENT    invoke a function with events/EVENT against the running stack
#   stack.sh demo               up, invoke every sample, print a report, down (also on failure or Ctrl-C)
#
# State lives in .local/: the ports, the process ids and the logs.
set -euo pipefail
cd "$(dirname "$0")/.."
STATE=.local
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

up() {
  if running moto && running watch; then
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
  echo "the stack is up: AWS endpoint $endpoint, functions on port $watch_port (logs in $STATE/)"
}

down() {
  for name in watch moto; do
    if [ -f "$STATE/$name.pid" ]; then
      # Each was started in its own session: stop its whole process group (cargo run, the function).
      kill -- "-$(cat "$STATE/$name.pid")" 2>/dev/null || true
      rm -f "$STATE/$name.pid" "$STATE/$name.port"
    fi
  done
  echo "the stack is down"
}

invoke() { # function, event file name
  running watch || { echo "the stack is not up: run 'make up' first" >&2; exit 1; }
  cargo lambda invoke "$1" --invoke-address 127.0.0.1 --invoke-port "$(cat "$STATE/watch.port")" \
    --data-file "events/$2"
}

demo() {
  trap 'down >/dev/null' EXIT
  trap 'exit 130' INT TERM
  down >/dev/null 2>&1 || true
  up
  local endpoint="http://127.0.0.1:$(cat "$STATE/moto.port")"
  "$PY" scripts/local_aws.py snapshot --endpoint "$endpoint" >"$STATE/before.json"
  : >"$STATE/invocations.jsonl"
  local fn event response logged stats
  for fn in email-notifier inventory-updater; do
    for event in order-placed mixed-batch poison-batch real-producers cancel-before-order order-cancelled order-placed; do
      logged=$(wc -l <"$STATE/watch.log")
      response=$(invoke "$fn" "$event.json")
      # The function's own summary line of this invocation (JSON logs).
      stats=$(for _ in $(seq 1 50); do
                tail -n +"$((logged + 1))" "$STATE/watch.log" | grep '"batch done"' | tail -1 && break
                sleep 0.1
              done)
      "$PY" - "$fn" "$event.json" "$response" "${stats:-{\}}" >>"$STATE/invocations.jsonl" <<'PY'
import json, sys
fn, event, response, stats = sys.argv[1:5]
line = json.loads(stats[stats.index("{"):]) if "{" in stats else {}
fields = line.get("fields", line)
print(json.dumps({"function": fn, "event": event, "response": json.loads(response), "stats": fields}))
PY
    done
  done
  "$PY" scripts/local_aws.py snapshot --endpoint "$endpoint" >"$STATE/after.json"
  "$PY" scripts/local_aws.py report --before "$STATE/before.json" --after "$STATE/after.json" \
    --invocations "$STATE/invocations.jsonl"
  echo
  echo "order-placed.json is invoked twice: the second time it is a duplicate, and nothing changes."
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  invoke) shift; invoke "$@" ;;
  demo) demo ;;
  *) echo "usage: $0 up|down|invoke FN EVENT|demo" >&2; exit 2 ;;
esac

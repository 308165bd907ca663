#!/usr/bin/env bash
# Runs both functions under `cargo lambda watch` and invokes each with the samples in events/.
set -euo pipefail
cd "$(dirname "$0")/.."

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p .local
log=.local/watch.log
cargo lambda watch --env-file local.env --invoke-port "$port" --invoke-address 127.0.0.1 >"$log" 2>&1 &
watch_pid=$!
cleanup() { kill "$watch_pid" 2>/dev/null || true; pkill -P "$watch_pid" 2>/dev/null || true; wait "$watch_pid" 2>/dev/null || true; }
trap cleanup EXIT INT TERM

for _ in $(seq 1 100); do
  (echo >/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break
  sleep 0.2
done

for fn in email-notifier inventory-updater; do
  for event in order-placed order-cancelled mixed-batch poison-batch; do
    printf '%-18s %-16s ' "$fn" "$event"
    cargo lambda invoke "$fn" --invoke-port "$port" --invoke-address 127.0.0.1 --data-file "events/$event.json"
  done
done
echo
echo "What each invocation did (from the functions' logs):"
grep -o 'batch done.*' "$log" | sed 's/request_id=[^ ]* //' || true

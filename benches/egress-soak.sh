#!/usr/bin/env bash
# Egress soak: batches of hostile and ordinary traffic (see examples/egress_soak.rs) against one
# running daemon, printing its RSS after each batch. Memory that keeps growing batch after
# batch would be a leak; a flat line after the first batch (caches warmed) is the expectation.
# Prints figures; asserts nothing.
#
#   benches/egress-soak.sh            # BATCHES=6 ROUNDS=500 by default
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BATCHES="${BATCHES:-6}"
ROUNDS="${ROUNDS:-500}"
WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

cd "$ROOT"
cargo build --release --quiet --bin bot-bottle-egress --example egress_upstream --example egress_load --example egress_soak
BIN="$ROOT/target/release"

"$BIN/examples/egress_upstream" 127.0.0.1:0 "$WORK" > "$WORK/upstream.addr" &
PIDS+=($!)
for _ in $(seq 1 100); do [ -s "$WORK/upstream.addr" ] && break; sleep 0.05; done
UP_PORT="$(sed 's/.*://' "$WORK/upstream.addr")"
"$BIN/examples/egress_load" mint-ca "$WORK"
echo '{"routes": [{"host": "bench.test", "path_allowlist": ["/soak"], "auth_scheme": "Bearer", "token_env": "EGRESS_TOKEN_0"}]}' > "$WORK/routes.json"
EG_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
EGRESS_TOKEN_0=injected-secret "$BIN/bot-bottle-egress" --listen "127.0.0.1:$EG_PORT" --routes "$WORK/routes.json" \
  --ca-cert "$WORK/ca.pem" --ca-key "$WORK/ca-key.pem" --extra-ca "$WORK/upstream-ca.pem" \
  --resolve "bench.test=127.0.0.1:$UP_PORT" --allow-cidr 127.0.0.1/32 --audit-log "$WORK/audit.jsonl" &
EG_PID=$!; PIDS+=($EG_PID)
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$EG_PORT") 2>/dev/null && break; sleep 0.1; done
sleep 0.3
rss() { awk '/VmRSS/{print $2}' "/proc/$EG_PID/status"; }
echo "batch 0: egress RSS $(rss) KiB (idle)"
FIRST=""
for b in $(seq 1 "$BATCHES"); do
  out="$("$BIN/examples/egress_soak" --proxy "127.0.0.1:$EG_PORT" --host bench.test --ca "$WORK/ca.pem" --rounds "$ROUNDS")"
  kill -0 "$EG_PID" || { echo "egress died during batch $b" >&2; exit 1; }
  now="$(rss)"
  [ -z "$FIRST" ] && FIRST="$now"
  echo "batch $b: egress RSS $now KiB; $out"
done
echo "RSS after the last batch / after the first: $(python3 -c "print(round($now/$FIRST, 3))")"
echo "audit lines: $(wc -l < "$WORK/audit.jsonl")"

#!/usr/bin/env bash
# Egress benchmark: req/s and p50/p99 through egress vs direct vs mitmproxy (with the peer
# policy addon), c=1 and c=16, keep-alive and new connection per request; egress idle and
# loaded RSS and CPU per request. Prints figures; asserts nothing.
#
#   benches/egress.sh                  # DURATION=5 by default
#   MITMDUMP=/tmp/mitm/bin/mitmdump DURATION=10 benches/egress.sh
#   BIN_DIR=/path/to/release benches/egress.sh   # prebuilt binaries (A/B of two builds)
#
# Needs: cargo, mitmdump (`pip install mitmproxy`) unless SKIP_MITM=1.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DURATION="${DURATION:-5}"
MITMDUMP="${MITMDUMP:-$(command -v mitmdump || echo /tmp/mitm/bin/mitmdump)}"
ADDON="${ADDON:-$ROOT/../shared/bench/peer-mitmproxy/policy_addon.py}"
WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

cd "$ROOT"
if [ -n "${BIN_DIR:-}" ]; then
  BIN="$BIN_DIR"
else
  cargo build --release --quiet --bin bot-bottle-egress --example egress_upstream --example egress_load
  BIN="$ROOT/target/release"
fi
LOAD="$BIN/examples/egress_load"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }

# Upstream.
"$BIN/examples/egress_upstream" 127.0.0.1:0 "$WORK" > "$WORK/upstream.addr" &
PIDS+=($!)
for _ in $(seq 1 100); do [ -s "$WORK/upstream.addr" ] && break; sleep 0.05; done
UP_ADDR="$(cat "$WORK/upstream.addr")"; UP_PORT="${UP_ADDR##*:}"

# Egress.
"$LOAD" mint-ca "$WORK"
cat > "$WORK/routes.yaml" <<JSON
{"routes": [{"host": "bench.test", "path_allowlist": ["/"], "auth_scheme": "Bearer", "token_env": "EGRESS_TOKEN_0"}]}
JSON
EG_PORT="$(free_port)"
EGRESS_TOKEN_0=injected-secret "$BIN/bot-bottle-egress" --listen "127.0.0.1:$EG_PORT" --routes "$WORK/routes.yaml" \
  --ca-cert "$WORK/ca.pem" --ca-key "$WORK/ca-key.pem" --extra-ca "$WORK/upstream-ca.pem" \
  --resolve "bench.test=127.0.0.1:$UP_PORT" --allow-cidr 127.0.0.1/32 --audit-log "$WORK/audit.jsonl" &
EG_PID=$!; PIDS+=($EG_PID)
wait_port "$EG_PORT"
sleep 0.5
IDLE_RSS_KB="$(awk '/VmRSS/{print $2}' "/proc/$EG_PID/status")"

# mitmproxy with the peer addon.
MITM_PORT=""
if [ "${SKIP_MITM:-0}" != 1 ] && [ -x "$MITMDUMP" ]; then
  MITM_PORT="$(free_port)"
  mkdir -p "$WORK/mitm"
  ALLOW=localhost AUTH_HOSTS=localhost BB_TOKEN=injected-secret PATHS=/ \
    "$MITMDUMP" -q --listen-host 127.0.0.1 -p "$MITM_PORT" --set confdir="$WORK/mitm" \
    --set ssl_verify_upstream_trusted_ca="$WORK/upstream-ca.pem" --set connection_strategy=lazy \
    --set flow_detail=0 -s "$ADDON" > "$WORK/mitm.log" 2>&1 &
  MITM_PID=$!; PIDS+=($MITM_PID)
  wait_port "$MITM_PORT"
  for _ in $(seq 1 50); do [ -f "$WORK/mitm/mitmproxy-ca-cert.pem" ] && break; sleep 0.1; done
fi

cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
TICK="$(getconf CLK_TCK)"
RESULTS="$WORK/results.jsonl"

run() { # label, then egress_load args
  local label="$1"; shift
  "$LOAD" -d "$DURATION" --label "$label" "$@" | tee -a "$RESULTS"
}

for mode in ka new; do
  extra=(); [ "$mode" = new ] && extra=(--new-conn)
  for c in 1 16; do
    run "direct-$mode-c$c" --target "$UP_ADDR" --host localhost --port "$UP_PORT" --ca "$WORK/upstream-ca.pem" -c "$c" "${extra[@]}"
    before="$(cpu_ticks "$EG_PID")"
    run "egress-$mode-c$c" --target "127.0.0.1:$EG_PORT" --proxy --host bench.test --port 443 --ca "$WORK/ca.pem" -c "$c" "${extra[@]}"
    after="$(cpu_ticks "$EG_PID")"
    reqs="$(tail -1 "$RESULTS" | python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"])')"
    echo "{\"label\":\"egress-cpu-$mode-c$c\",\"cpu_us_per_req\":$(python3 -c "print(round(($after-$before)/$TICK*1e6/max($reqs,1),1))")}" | tee -a "$RESULTS"
    if [ -n "$MITM_PORT" ]; then
      run "mitm-$mode-c$c" --target "127.0.0.1:$MITM_PORT" --proxy --host localhost --port "$UP_PORT" --ca "$WORK/mitm/mitmproxy-ca-cert.pem" -c "$c" "${extra[@]}"
    fi
  done
done

LOADED_RSS_KB="$(awk '/VmHWM/{print $2}' "/proc/$EG_PID/status")"
MITM_RSS_KB=""
[ -n "$MITM_PORT" ] && MITM_RSS_KB="$(awk '/VmHWM/{print $2}' "/proc/$MITM_PID/status")"

python3 - "$RESULTS" "$IDLE_RSS_KB" "$LOADED_RSS_KB" "${MITM_RSS_KB:-0}" <<'PY'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    r = json.loads(line); rows[r["label"]] = r
idle, loaded, mitm_rss = (int(x) / 1024 for x in sys.argv[2:5])
print()
print(f"{'case':<10} {'direct r/s':>11} {'egress r/s':>11} {'mitm r/s':>9} {'eg/direct':>10} {'eg/mitm':>8} {'eg p50':>8} {'eg p99':>8} {'direct p99':>10} {'cpu us/req':>10}")
for mode in ("ka", "new"):
    for c in (1, 16):
        k = f"{mode}-c{c}"
        d, e, m = rows.get(f"direct-{k}"), rows.get(f"egress-{k}"), rows.get(f"mitm-{k}")
        cpu = rows.get(f"egress-cpu-{k}", {}).get("cpu_us_per_req", 0)
        ratio_d = e["rps"] / d["rps"] if d and d["rps"] else 0
        ratio_m = e["rps"] / m["rps"] if m and m["rps"] else float("nan")
        print(f"{k:<10} {d['rps']:>11.0f} {e['rps']:>11.0f} {(m['rps'] if m else 0):>9.0f} {ratio_d:>9.0%} {ratio_m:>7.1f}x {e['p50_ms']:>7.2f}ms {e['p99_ms']:>7.2f}ms {d['p99_ms']:>8.2f}ms {cpu:>10}")
print(f"\negress RSS: idle {idle:.1f} MiB, loaded (VmHWM) {loaded:.1f} MiB; mitmproxy VmHWM {mitm_rss:.1f} MiB")
ka1 = (rows["egress-ka-c1"]["p99_ms"] - rows["direct-ka-c1"]["p99_ms"])
print(f"added p99 latency at c=1 keep-alive: {ka1:.2f} ms")
errs = {k: v["errors"] for k, v in rows.items() if v.get("errors")}
if errs: print(f"errors: {errs}")
PY

#!/usr/bin/env bash
# Egress benchmark: req/s and p50/p99 through egress vs direct vs mitmproxy (with the peer
# policy addon), c=1 and c=16, keep-alive and new connection per request; egress idle and
# loaded RSS; CPU per request of egress next to that of the upstream TLS server (the cost of
# merely terminating the same TLS, measured in the same run). Prints figures; asserts nothing.
#
# Direct and egress runs alternate ROUNDS times per case and the medians are reported: the
# direct figure alone moves by 20% between back-to-back runs on a 2-core machine.
#
#   benches/egress.sh                  # DURATION=4 ROUNDS=3 by default
#   MITMDUMP=/tmp/mitm/bin/mitmdump DURATION=10 benches/egress.sh
#   BIN_DIR=/path/to/release benches/egress.sh   # prebuilt binaries (A/B of two builds)
#   EGRESS_THREADS=2 benches/egress.sh            # the daemon's --threads
#
# Needs: cargo, mitmdump (`pip install mitmproxy`) unless SKIP_MITM=1.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DURATION="${DURATION:-4}"
ROUNDS="${ROUNDS:-3}"
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
UP_PID=$!; PIDS+=($UP_PID)
for _ in $(seq 1 100); do [ -s "$WORK/upstream.addr" ] && break; sleep 0.05; done
UP_ADDR="$(cat "$WORK/upstream.addr")"; UP_PORT="${UP_ADDR##*:}"

# Egress.
"$LOAD" mint-ca "$WORK"
cat > "$WORK/routes.json" <<JSON
{"routes": [{"host": "bench.test", "path_allowlist": ["/"], "auth_scheme": "Bearer", "token_env": "EGRESS_TOKEN_0"}]}
JSON
EG_PORT="$(free_port)"
EGRESS_TOKEN_0=injected-secret "$BIN/bot-bottle-egress" --listen "127.0.0.1:$EG_PORT" --routes "$WORK/routes.json" \
  --ca-cert "$WORK/ca.pem" --ca-key "$WORK/ca-key.pem" --extra-ca "$WORK/upstream-ca.pem" \
  --resolve "bench.test=127.0.0.1:$UP_PORT" --allow-cidr 127.0.0.1/32 --audit-log "$WORK/audit.jsonl" \
  --threads "${EGRESS_THREADS:-1}" &
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

# run LABEL PID_TO_CHARGE egress_load-args...: one load run, plus the CPU the given process
# spent per request during it.
run() {
  local label="$1" pid="$2"; shift 2
  local before after line
  before="$(cpu_ticks "$pid")"
  line="$("$LOAD" -d "$DURATION" --label "$label" "$@")"
  after="$(cpu_ticks "$pid")"
  python3 -c 'import json,sys; r=json.loads(sys.argv[1]); r["cpu_us_per_req"]=round((int(sys.argv[3])-int(sys.argv[2]))/int(sys.argv[4])*1e6/max(r["requests"],1),1); print(json.dumps(r))' \
    "$line" "$before" "$after" "$TICK" | tee -a "$RESULTS"
}

for mode in ka new; do
  extra=(); [ "$mode" = new ] && extra=(--new-conn)
  for c in 1 16; do
    for round in $(seq 1 "$ROUNDS"); do
      run "direct-$mode-c$c" "$UP_PID" --target "$UP_ADDR" --host localhost --port "$UP_PORT" --ca "$WORK/upstream-ca.pem" -c "$c" "${extra[@]}"
      run "egress-$mode-c$c" "$EG_PID" --target "127.0.0.1:$EG_PORT" --proxy --host bench.test --port 443 --ca "$WORK/ca.pem" -c "$c" "${extra[@]}"
    done
    if [ -n "$MITM_PORT" ]; then
      run "mitm-$mode-c$c" "$MITM_PID" --target "127.0.0.1:$MITM_PORT" --proxy --host localhost --port "$UP_PORT" --ca "$WORK/mitm/mitmproxy-ca-cert.pem" -c "$c" "${extra[@]}"
    fi
  done
done

LOADED_RSS_KB="$(awk '/VmHWM/{print $2}' "/proc/$EG_PID/status")"
MITM_RSS_KB=""
[ -n "$MITM_PORT" ] && MITM_RSS_KB="$(awk '/VmHWM/{print $2}' "/proc/$MITM_PID/status")"

python3 - "$RESULTS" "$IDLE_RSS_KB" "$LOADED_RSS_KB" "${MITM_RSS_KB:-0}" <<'PY'
import json, sys
from statistics import median
runs = {}
for line in open(sys.argv[1]):
    r = json.loads(line); runs.setdefault(r["label"], []).append(r)
idle, loaded, mitm_rss = (int(x) / 1024 for x in sys.argv[2:5])
def med(label, key):
    rs = runs.get(label) or []
    return median(r[key] for r in rs) if rs else float("nan")
print()
print("medians over the alternating rounds; 'up cpu' is the upstream TLS server's own CPU per request")
print(f"{'case':<8} {'direct r/s':>10} {'egress r/s':>10} {'mitm r/s':>9} {'eg/direct':>9} {'(min-max)':>13} {'eg/mitm':>8} {'eg p50':>8} {'eg p99':>8} {'dir p99':>8} {'eg cpu':>8} {'up cpu':>8}")
for mode in ("ka", "new"):
    for c in (1, 16):
        k = f"{mode}-c{c}"
        d, e = runs.get(f"direct-{k}", []), runs.get(f"egress-{k}", [])
        ratios = [x["rps"] / y["rps"] for x, y in zip(e, d) if y["rps"]]
        m = med(f"mitm-{k}", "rps")
        print(f"{k:<8} {med('direct-'+k,'rps'):>10.0f} {med('egress-'+k,'rps'):>10.0f} {m:>9.0f} "
              f"{median(ratios):>9.0%} {min(ratios):>6.0%}-{max(ratios):<6.0%} {med('egress-'+k,'rps')/m:>7.1f}x "
              f"{med('egress-'+k,'p50_ms'):>6.2f}ms {med('egress-'+k,'p99_ms'):>6.2f}ms {med('direct-'+k,'p99_ms'):>6.2f}ms "
              f"{med('egress-'+k,'cpu_us_per_req'):>6.1f}us {med('direct-'+k,'cpu_us_per_req'):>6.1f}us")
print(f"\negress RSS: idle {idle:.1f} MiB, loaded (VmHWM) {loaded:.1f} MiB; mitmproxy VmHWM {mitm_rss:.1f} MiB")
added = med("egress-ka-c1", "p99_ms") - med("direct-ka-c1", "p99_ms")
print(f"added p99 latency at c=1 keep-alive: {added:.2f} ms")
errs = {k: sum(r["errors"] for r in v) for k, v in runs.items() if any(r["errors"] for r in v)}
if errs: print(f"errors: {errs}")
PY

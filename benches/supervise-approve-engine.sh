#!/usr/bin/env bash
# Approval→live on a real supervised bottle (`ENGINE=1 benches/supervise-approve.sh`): the
# agent proposes a route over MCP (plain curl through the relay), a probe loop inside the agent
# requests the new path through egress and stamps its first success, and the host runs
# `bot-bottle approve <id> --session` with a stamp taken just before. Containers share the
# host's clock, so (first success - approve start) is the whole path: CLI start, docker exec,
# decide, egress reload, one request. Baseline in the same run: `docker exec <bundle> true`.
# Prints figures; asserts nothing. Starts a real bottle: run it under the engine lock.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SAMPLES="${SAMPLES:-15}"
cd "$ROOT"
# BIN_DIR: run prebuilt binaries from there (all of them: the sidecar image is built from the
# binaries beside `bot-bottle`), e.g. a copy of an older build to compare against.
if [ -n "${BIN_DIR:-}" ]; then
  BIN="$BIN_DIR/bot-bottle"
else
  cargo build --quiet --bins
  BIN="$ROOT/target/debug/bot-bottle"
fi
STUB=bot-bottle-bench-agent:latest

TMP="$(mktemp -d)"
export BOT_BOTTLE_HOME="$TMP/home" HOME="$TMP/hosthome" BOT_BOTTLE_IMAGE="$STUB" COMPOSE_BAKE=false
AGENT="bench$$"
mkdir -p "$BOT_BOTTLE_HOME/bottles" "$BOT_BOTTLE_HOME/agents" "$HOME" "$TMP/work" "$TMP/img"
START_PID="" ID="" UPSTREAM=""
finish() {
  [ -n "$UPSTREAM" ] && docker rm -f "$UPSTREAM" >/dev/null 2>&1 || true
  [ -n "$ID" ] && "$BIN" exec "$ID" -- sh -c 'echo 0 > /tmp/stop' >/dev/null 2>&1 || true
  [ -n "$START_PID" ] && wait "$START_PID" 2>/dev/null || true
  rm -rf "$TMP"
}
trap finish EXIT

# The provider image with `claude` replaced by a process that waits for a stop file.
printf '#!/bin/sh\ntouch /tmp/started\nwhile [ ! -f /tmp/stop ]; do sleep 0.2; done\n' >"$TMP/img/claude"
printf 'FROM bot-bottle-claude:latest\nUSER root\nRUN rm -f /usr/local/bin/claude\nCOPY claude /usr/local/bin/claude\nRUN chmod 755 /usr/local/bin/claude\nUSER node\n' >"$TMP/img/Dockerfile"
"$BIN" build-images >/dev/null
docker build -q -t "$STUB" "$TMP/img" >/dev/null

cat >"$BOT_BOTTLE_HOME/bottles/sup.md" <<'EOF'
---
supervise: true
egress:
  routes:
    - host: upstream.test
      path_allowlist: ["/base/"]
      pipelock:
        ssrf_ip_allowlist: ["172.16.0.0/12", "10.0.0.0/8", "192.168.0.0/16"]
---
EOF
printf -- '---\nbottle: sup\n---\nWork.\n' >"$BOT_BOTTLE_HOME/agents/$AGENT.md"

cd "$TMP/work"
# A terminal-less `start` whose stdin never ends (held open on fd 3).
mkfifo "$TMP/stdin"
exec 3<>"$TMP/stdin"
script -qfec "$BIN start --yes $AGENT" /dev/null <"$TMP/stdin" >/dev/null 2>&1 &
START_PID=$!
for _ in $(seq 600); do
  ID="$("$BIN" list active --json | jq -r --arg a "$AGENT" '.[] | select(.agent == $a) | .id')"
  [ -n "$ID" ] && break
  sleep 0.5
done
[ -n "$ID" ] || { echo "the bottle never became active" >&2; exit 1; }
in_agent() { "$BIN" exec "$ID" -- sh -c "$1"; }
until in_agent 'test -f /tmp/started' 2>/dev/null; do sleep 0.3; done
BUNDLE="bot-bottle-sidecars-$ID"

# A plain HTTP upstream on the bottle's egress network, reached only through egress.
UPSTREAM="bot-bottle-bench-upstream-$ID"
docker run -d --name "$UPSTREAM" --network "bot-bottle-egress-$ID" --network-alias upstream.test \
  --entrypoint node bot-bottle-claude:latest \
  -e "require('http').createServer((q,s)=>s.end('ok\n')).listen(80,()=>console.log('LISTENING'))" >/dev/null
until docker logs "$UPSTREAM" 2>&1 | grep -q LISTENING; do sleep 0.2; done
PROBE="curl -s -o /dev/null -w '%{http_code}' -x http://127.0.0.1:9099 --max-time 5"
[ "$(in_agent "$PROBE http://upstream.test/base/x")" = 200 ] || { echo "the base route does not answer" >&2; exit 1; }

# One MCP call through the relay, as any agent could make it.
mcp() {
  in_agent "set -e; U=http://127.0.0.1:9100/mcp
post() { curl -sS --max-time 30 -H 'content-type: application/json' -H 'accept: application/json, text/event-stream' -H 'mcp-protocol-version: 2025-06-18' \"\$@\" \"\$U\"; }
sid=\$(post -D - -o /dev/null -d '{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{\"protocolVersion\":\"2025-06-18\",\"capabilities\":{},\"clientInfo\":{\"name\":\"bench\",\"version\":\"1\"}}}' | tr -d '\r' | awk 'tolower(\$1)==\"mcp-session-id:\"{print \$2}')
post -H \"mcp-session-id: \$sid\" -d '{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}' >/dev/null
post -H \"mcp-session-id: \$sid\" -d '{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":\"$1\",\"arguments\":$2}}'"
}

now() { date +%s%N; }
ms() { awk -v n="$1" 'BEGIN { printf "%.1f", n / 1e6 }'; }
stats() { sort -n | awk '{ v[NR] = $1 } END { m = v[int((NR - 1) * 0.5 + 0.5) + 1]; p = v[int((NR - 1) * 0.9 + 0.5) + 1]; printf "median %.1f ms, p90 %.1f ms, max %.1f ms", m / 1e6, p / 1e6, v[NR] / 1e6 }'; }

: >"$TMP/live" ; : >"$TMP/cli" ; : >"$TMP/base" ; : >"$TMP/exec" ; : >"$TMP/reload" ; : >"$TMP/period"
for i in $(seq "$SAMPLES"); do
  t=$(now); docker exec "$BUNDLE" true; echo $(($(now) - t)) >>"$TMP/base"
  req="$(mcp propose-egress-route "{\"host\":\"upstream.test\",\"path_prefixes\":[\"/g$i/\"],\"reason\":\"bench\"}" \
    | grep -o '[0-9]\{13\}-[0-9a-f]\{6\}' | head -n 1)"
  [ -n "$req" ] || { echo "no request id from propose" >&2; exit 1; }
  # The operator learns the id from `requests` (which queues it), then approves it.
  "$BIN" requests | grep -q "$req" || { echo "$req not listed by requests" >&2; exit 1; }
  # The probe loop runs inside the agent; it marks its first refusal so the approval starts
  # only once it is spinning, and prints the clock at its first success.
  # It also prints its mean period (one request through egress and a `touch`).
  in_agent "rm -f /tmp/probing; n=0; s=\$(date +%s%N); until [ \"\$($PROBE http://upstream.test/g$i/x)\" = 200 ]; do n=\$((n + 1)); touch /tmp/probing; done; e=\$(date +%s%N); echo \"\$e \$(((e - s) / (n + 1)))\"" \
    >"$TMP/hit" &
  probe=$!
  until in_agent 'test -f /tmp/probing' 2>/dev/null; do sleep 0.1; done
  sleep "0.0$((i * 37 % 60 / 10))"
  t0=$(now)
  "$BIN" -vv approve "$req" --session >/dev/null 2>"$TMP/vv"
  t1=$(now)
  wait "$probe"
  read -r hit period <"$TMP/hit"
  echo $((hit - t0)) >>"$TMP/live"
  echo $((t1 - t0)) >>"$TMP/cli"
  echo "$period" >>"$TMP/period"
  # The one engine call `approve` makes, as `-vv` stamps it.
  awk '/= docker exec/ { for (i = 1; i <= NF; i++) if ($i == "ms") print $(i - 1) * 1000000 }' "$TMP/vv" >>"$TMP/exec"
  # When egress swapped the new policy in, by the engine's stamp on its log line.
  # Egress logs the reload only at info level; without that line there is no figure.
  ts="$(docker logs -t --since "$((t0 / 1000000000))" "$BUNDLE" 2>&1 | { grep 'routes reloaded' || true; } | tail -n 1 | cut -d' ' -f1)"
  [ -n "$ts" ] && echo $(($(date -d "$ts" +%s%N) - t0)) >>"$TMP/reload"
done

echo "samples                           $SAMPLES (real bottle $ID, $BIN)"
echo "approve start -> live             $(stats <"$TMP/live") (goal < 200 ms)"
echo "  of which \`approve\` runs          $(stats <"$TMP/cli")"
echo "  its \`docker exec … decide\`       $(stats <"$TMP/exec")"
[ -s "$TMP/reload" ] && echo "approve start -> egress reloaded  $(stats <"$TMP/reload") ($(wc -l <"$TMP/reload") samples)"
echo "probe period in the agent         $(stats <"$TMP/period")"
echo "docker exec <bundle> true         $(stats <"$TMP/base") (baseline)"
lm=$(stats <"$TMP/live" | awk '{ print $2 }'); bm=$(stats <"$TMP/base" | awk '{ print $2 }')
echo "ratio live / docker exec          $(awk -v a="$lm" -v b="$bm" 'BEGIN { printf "%.1f", a / b }')"
echo "load average                      $(cut -d' ' -f1-3 /proc/loadavg)"
echo "last \`bot-bottle -vv approve\`:"
sed 's/^/    /' "$TMP/vv"

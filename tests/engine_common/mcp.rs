//! Supervise's MCP tools called from inside the agent through the relay (127.0.0.1:9100),
//! with nothing but curl, as any agent could; and the request id a `propose-*` answers.

use super::world::World;

/// A shell script that opens an MCP session and calls `tool` with `arguments`, printing the
/// SSE answer; each request may take 200 s (a `wait-for-decision` blocks).
pub(crate) fn mcp_call(tool: &str, arguments: &serde_json::Value) -> String {
    mcp_call_within(tool, arguments, 200)
}

/// [`mcp_call`] with each request limited to `secs`.
pub(crate) fn mcp_call_within(tool: &str, arguments: &serde_json::Value, secs: u32) -> String {
    let init = serde_json::json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "engine-test", "version": "1"}}
    });
    let call = serde_json::json!({
        "jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": tool, "arguments": arguments}
    });
    format!(
        "set -e; U=http://127.0.0.1:9100/mcp; \
         post() {{ curl -sS --max-time {secs} -H 'content-type: application/json' -H 'accept: application/json, text/event-stream' -H 'mcp-protocol-version: 2025-06-18' \"$@\" \"$U\"; }}; \
         sid=$(post -D - -o /dev/null -d '{init}' | tr -d '\\r' | awk 'tolower($1)==\"mcp-session-id:\"{{print $2}}'); \
         test -n \"$sid\"; \
         post -H \"mcp-session-id: $sid\" -d '{{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}}' >/dev/null; \
         post -H \"mcp-session-id: $sid\" -d '{call}'"
    )
}

/// The request id (`<13 digits>-<6 lower-case hex>`) in a `propose-*` answer, if any.
pub(crate) fn find_request_id(answer: &str) -> Option<String> {
    answer
        .as_bytes()
        .windows(20)
        .find(|w| {
            w[..13].iter().all(u8::is_ascii_digit)
                && w[13] == b'-'
                && w[14..]
                    .iter()
                    .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
        })
        .map(|w| String::from_utf8_lossy(w).into_owned())
}

/// The request id in a `propose-*` answer; none fails the test.
pub(crate) fn request_id(answer: &str) -> String {
    find_request_id(answer).unwrap_or_else(|| panic!("no request id in {answer}"))
}

impl World {
    /// The agent in bottle `id` calls the `propose-*` `tool`; returns the request id. A failed
    /// call fails the test.
    pub(crate) fn propose(&self, id: &str, tool: &str, arguments: &serde_json::Value) -> String {
        let (ok, answer) = self.exec(id, &mcp_call(tool, arguments));
        assert!(ok, "{answer}");
        request_id(&answer)
    }
}

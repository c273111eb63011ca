//! The MCP server: tools the agent calls to ask the operator for a change.
//!
//! Built on the official Rust MCP SDK (`rmcp`, docs/decisions/0025-supervise-mcp-rmcp.md)
//! over streamable HTTP. Every argument is validated (`validate`) before anything is queued;
//! a bad argument is a JSON-RPC error naming the field, and a body over the bound is refused
//! with 413 before it is parsed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData as McpError, ServerHandler, schemars, tool, tool_handler, tool_router};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Semaphore;

use super::grants::Grants;
use super::refusals;
use super::spool::{Change, Decision, Spool, Verdict};
use super::{SuperviseError, validate};

/// Default bound on one request body (a 64 KiB Dockerfile plus JSON framing fits).
pub const DEFAULT_MAX_BODY: usize = 128 * 1024;
/// Longest a `wait-for-decision` call blocks.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(300);
/// Default `wait-for-decision` timeout.
pub(crate) const DEFAULT_WAIT: Duration = Duration::from_secs(60);
/// Concurrent connections served; more wait for a slot.
const MAX_CONNECTIONS: usize = 64;
/// Most refusals one `list-refusals` call returns.
const MAX_REFUSALS: usize = 100;

/// What the server reads and writes.
#[derive(Debug, Clone)]
pub struct SuperviseConfig {
    /// The bottle's identity (labels refusal events).
    pub bottle: String,
    /// Where requests and decisions are kept.
    pub spool: PathBuf,
    /// Egress's live routes file.
    pub routes_file: PathBuf,
    /// The gates' audit logs (egress's, the git-gate's); a missing one reads as empty.
    pub audit_files: Vec<PathBuf>,
    /// Largest request body accepted.
    pub max_body: usize,
}

/// `propose-egress-route` arguments.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProposeRouteArgs {
    /// Host name only, e.g. `api.github.com` (no scheme, port or path).
    pub host: String,
    /// Path prefixes to allow, each starting with `/`; omit for the whole host.
    #[serde(default)]
    pub path_prefixes: Vec<String>,
    /// HTTP methods to allow (GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS); omit for any.
    #[serde(default)]
    pub methods: Vec<String>,
    /// One line saying why the task needs this host.
    pub reason: String,
}

/// `propose-image-change` arguments.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProposeImageArgs {
    /// The complete new Dockerfile for this bottle's agent image.
    pub dockerfile: String,
    /// One line saying why the task needs it.
    pub reason: String,
}

/// `list-refusals` arguments.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListRefusalsArgs {
    /// At most this many refusals, most recent last (default 20, at most 100).
    #[serde(default)]
    pub limit: Option<u32>,
}

/// `wait-for-decision` arguments.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct WaitArgs {
    /// The id `propose-*` returned.
    pub id: String,
    /// Seconds to wait before answering `pending` (default 60, at most 300).
    #[serde(default)]
    pub timeout_seconds: Option<u32>,
}

/// What `propose-*` and `wait-for-decision` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Status {
    pub id: String,
    /// `pending`, `approved` or `rejected`.
    pub status: String,
    /// Extra words: what was granted, or why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// One live route as the agent sees it (no credential names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LiveRoute {
    pub host: String,
    pub path_allowlist: Vec<String>,
    pub credential_injected: bool,
    /// Methods allowed (granted routes only; empty: any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// How the route is live: `route` (the bottle file), or the grant's lifetime
    /// (`once`, `timed`, `session`).
    #[serde(default)]
    pub(crate) source: String,
}

/// The MCP handler.
#[derive(Clone)]
pub(crate) struct Supervise {
    cfg: Arc<SuperviseConfig>,
    spool: Spool,
    tool_router: ToolRouter<Self>,
}

fn json_result<T: Serialize>(v: &T) -> Result<CallToolResult, McpError> {
    Ok(CallToolResult::success(vec![ContentBlock::json(v)?]))
}

fn internal(e: SuperviseError) -> McpError {
    McpError::internal_error(e.to_string(), None)
}

fn status_of(d: &Decision) -> Status {
    let detail = match (d.verdict, &d.route, d.lifetime, &d.note) {
        (Verdict::Rejected, _, _, Some(n)) => Some(n.clone()),
        (Verdict::Rejected, _, _, None) => None,
        (Verdict::Approved, route, lifetime, note) => {
            let mut parts = Vec::new();
            if let Some(r) = route {
                parts.push(format!("route {} is live", r.host));
            }
            if let Some(l) = lifetime {
                parts.push(format!("lifetime {l:?}").to_lowercase());
            }
            if let Some(n) = note {
                parts.push(n.clone());
            }
            (!parts.is_empty()).then(|| parts.join("; "))
        }
    };
    Status {
        id: d.id.clone(),
        status: match d.verdict {
            Verdict::Approved => "approved".into(),
            Verdict::Rejected => "rejected".into(),
        },
        detail,
    }
}

#[tool_router]
impl Supervise {
    pub(crate) fn new(cfg: SuperviseConfig) -> Result<Self, SuperviseError> {
        let spool = Spool::open(&cfg.spool)?;
        Ok(Supervise {
            cfg: Arc::new(cfg),
            spool,
            tool_router: Self::tool_router(),
        })
    }

    #[tool(
        name = "propose-egress-route",
        description = "Ask the operator to allow an egress host (optionally only some path prefixes and methods). Returns an id; call wait-for-decision with it."
    )]
    async fn propose_route(
        &self,
        Parameters(a): Parameters<ProposeRouteArgs>,
    ) -> Result<CallToolResult, McpError> {
        let route = validate::route(&a.host, &a.path_prefixes, &a.methods)
            .map_err(|m| McpError::invalid_params(m, None))?;
        let reason = validate::reason(&a.reason).map_err(|m| McpError::invalid_params(m, None))?;
        self.submit(Change::Route(route), reason)
    }

    #[tool(
        name = "propose-image-change",
        description = "Ask the operator to rebuild this bottle's agent image from a new Dockerfile. On approval the session ends and the operator resumes it on the new image."
    )]
    async fn propose_image(
        &self,
        Parameters(a): Parameters<ProposeImageArgs>,
    ) -> Result<CallToolResult, McpError> {
        let dockerfile =
            validate::dockerfile(&a.dockerfile).map_err(|m| McpError::invalid_params(m, None))?;
        let reason = validate::reason(&a.reason).map_err(|m| McpError::invalid_params(m, None))?;
        self.submit(Change::Image { dockerfile }, reason)
    }

    #[tool(
        name = "list-routes",
        description = "List the egress routes that are live now."
    )]
    async fn list_routes(&self) -> Result<CallToolResult, McpError> {
        let path = &self.cfg.routes_file;
        let text = match crate::sidecar::egress::reload::read_routes_file(path) {
            Ok(t) => t,
            Err(e) => return Err(McpError::internal_error(e.to_string(), None)),
        };
        let routes = crate::sidecar::egress::config::parse_routes(&text)
            .map_err(|m| McpError::internal_error(format!("routes file: {m}"), None))?;
        let mut live: Vec<LiveRoute> = routes
            .into_iter()
            .map(|r| LiveRoute {
                host: r.host,
                path_allowlist: r.path_allowlist,
                credential_injected: r.token_env.is_some(),
                methods: Vec::new(),
                source: "route".into(),
            })
            .collect();
        // The grants in force, as egress reads them beside the routes file.
        let grants = super::grants::Grants::new(&self.cfg.spool, path)
            .load()
            .map_err(internal)?;
        let now = super::grants::now_ms();
        for g in grants
            .iter()
            .filter(|g| g.expires_at_ms.is_none_or(|t| t > now))
        {
            live.push(LiveRoute {
                host: g.route.host.clone(),
                path_allowlist: g.route.path_prefixes.clone(),
                credential_injected: false,
                methods: g.route.methods.clone(),
                source: match g.lifetime {
                    super::spool::Lifetime::Once => "once",
                    super::spool::Lifetime::Seconds(_) => "timed",
                    _ => "session",
                }
                .into(),
            });
        }
        json_result(&live)
    }

    #[tool(
        name = "list-refusals",
        description = "List this bottle's recent refusals by egress and the git-gate, with the reason the gate gave for each."
    )]
    async fn list_refusals(
        &self,
        Parameters(a): Parameters<ListRefusalsArgs>,
    ) -> Result<CallToolResult, McpError> {
        let limit = a.limit.unwrap_or(20) as usize;
        if limit == 0 || limit > MAX_REFUSALS {
            return Err(McpError::invalid_params(
                format!("`limit` must be between 1 and {MAX_REFUSALS}"),
                None,
            ));
        }
        let mut events = Vec::new();
        for p in &self.cfg.audit_files {
            let text = refusals::read_tail(p)
                .map_err(|e| McpError::internal_error(format!("audit log: {e}"), None))?;
            events.extend(refusals::from_audit_text(&self.cfg.bottle, &text, limit));
        }
        // RFC 3339 UTC times with milliseconds: text order is time order.
        events.sort_by(|a, b| a.time.cmp(&b.time));
        let events = events.split_off(events.len().saturating_sub(limit));
        json_result(&events)
    }

    #[tool(
        name = "wait-for-decision",
        description = "Wait for the operator's decision on a request. Answers `approved`, `rejected`, or `pending` when the timeout passes (call it again)."
    )]
    async fn wait_for_decision(
        &self,
        Parameters(a): Parameters<WaitArgs>,
    ) -> Result<CallToolResult, McpError> {
        if !super::spool::is_request_id(&a.id) {
            return Err(McpError::invalid_params(
                "`id` is not a request id; use the id a propose-* tool returned",
                None,
            ));
        }
        let timeout = match a.timeout_seconds {
            None => DEFAULT_WAIT,
            Some(s) if Duration::from_secs(s.into()) <= MAX_WAIT => Duration::from_secs(s.into()),
            Some(_) => {
                return Err(McpError::invalid_params(
                    format!("`timeout_seconds` must be at most {}", MAX_WAIT.as_secs()),
                    None,
                ));
            }
        };
        match self.spool.wait(&a.id, timeout).await {
            Ok(Some(d)) => json_result(&status_of(&d)),
            Ok(None) => json_result(&Status {
                id: a.id,
                status: "pending".into(),
                detail: Some(
                    "the operator has not decided yet; call wait-for-decision again".into(),
                ),
            }),
            Err(SuperviseError::UnknownRequest(_)) => Err(McpError::invalid_params(
                "no request with this id in this bottle",
                None,
            )),
            Err(e) => Err(internal(e)),
        }
    }
}

impl Supervise {
    fn submit(&self, change: Change, reason: String) -> Result<CallToolResult, McpError> {
        match self.spool.submit(change, reason) {
            Ok(r) => {
                tracing::info!(id = %r.id, "request queued");
                json_result(&Status {
                    id: r.id,
                    status: "pending".into(),
                    detail: Some("queued for the operator; call wait-for-decision".into()),
                })
            }
            Err(e @ SuperviseError::TooManyPending { .. }) => {
                Err(McpError::invalid_request(e.to_string(), None))
            }
            Err(e) => Err(internal(e)),
        }
    }
}

/// Prefix rmcp gives an argument that does not deserialize into the tool's parameters.
const DESERIALIZE_PREFIX: &str = "failed to deserialize parameters:";

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Supervise {
    /// Route the call; an argument that does not fit the schema (unknown field, wrong type,
    /// missing key) is a JSON-RPC `invalid params` error, like every other bad argument,
    /// rather than the tool error rmcp reports by default.
    async fn call_tool(
        &self,
        request: rmcp::model::CallToolRequestParams,
        context: rmcp::service::RequestContext<rmcp::RoleServer>,
    ) -> Result<rmcp::model::CallToolResponse, McpError> {
        let tcc = rmcp::handler::server::tool::ToolCallContext::new(self, request, context);
        let resp = self.tool_router.call(tcc).await?;
        if let rmcp::model::CallToolResponse::Complete(r) = &resp
            && r.is_error == Some(true)
            && let Some(text) = r.content.first().and_then(|c| c.as_text())
            && text.text.starts_with(DESERIALIZE_PREFIX)
        {
            return Err(McpError::invalid_params(text.text.clone(), None));
        }
        Ok(resp)
    }

    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build()).with_instructions(
            "bot-bottle supervise: when egress refuses a request you need, call \
             propose-egress-route (or propose-image-change), then wait-for-decision with the id. \
             list-refusals shows what was refused and why; list-routes shows what is allowed.",
        )
    }
}

/// The streamable HTTP service (a tower service) for `cfg`.
pub(crate) fn service(
    cfg: SuperviseConfig,
) -> Result<StreamableHttpService<Supervise, LocalSessionManager>, SuperviseError> {
    let max_body = cfg.max_body;
    let handler = Supervise::new(cfg)?;
    let http = StreamableHttpServerConfig::default()
        .with_allowed_hosts(["localhost", "127.0.0.1", "::1", "supervise"])
        .with_max_request_body_bytes(max_body);
    Ok(StreamableHttpService::new(
        move || Ok(handler.clone()),
        LocalSessionManager::default().into(),
        http,
    ))
}

/// Where the server listens.
pub enum Listener {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

impl Listener {
    /// The TCP address, when listening on TCP.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            Listener::Tcp(l) => l.local_addr().ok(),
            Listener::Unix(_) => None,
        }
    }
}

/// How often expired grants are looked for.
const EXPIRY_TICK: Duration = Duration::from_millis(250);

/// Serve until the task is dropped; expired grants leave the routes file meanwhile.
pub async fn serve(listener: Listener, cfg: SuperviseConfig) -> Result<(), SuperviseError> {
    let grants = Grants::new(&cfg.spool, &cfg.routes_file);
    let svc = service(cfg)?;
    let _expiry = AbortOnDrop(tokio::spawn(async move {
        loop {
            tokio::time::sleep(EXPIRY_TICK).await;
            match grants.apply(super::grants::now_ms()) {
                Ok(expired) => {
                    for g in expired {
                        tracing::info!(id = %g.id, host = %g.route.host, "grant expired");
                    }
                }
                Err(e) => tracing::warn!("cannot apply grants: {e}"),
            }
        }
    }));
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = match slots.clone().acquire_owned().await {
            Ok(p) => p,
            Err(_) => return Ok(()),
        };
        let svc = svc.clone();
        match &listener {
            Listener::Tcp(l) => match l.accept().await {
                Ok((s, _)) => spawn_conn(s, svc, permit),
                Err(e) => accept_error(e).await,
            },
            Listener::Unix(l) => match l.accept().await {
                Ok((s, _)) => spawn_conn(s, svc, permit),
                Err(e) => accept_error(e).await,
            },
        }
    }
}

/// Stops the expiry task with the server.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn accept_error(e: std::io::Error) {
    // Out of descriptors or a reset before accept: pause rather than spin.
    tracing::warn!("accept failed: {e}");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

fn spawn_conn<S>(
    stream: S,
    svc: StreamableHttpService<Supervise, LocalSessionManager>,
    permit: tokio::sync::OwnedSemaphorePermit,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let _permit = permit;
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(10))
            .max_buf_size(64 * 1024)
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc));
        if let Err(e) = conn.await {
            tracing::debug!("connection ended: {e}");
        }
    });
}

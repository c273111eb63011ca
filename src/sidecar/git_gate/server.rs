//! The git smart-HTTP server: `info/refs`, `git-upload-pack` and `git-receive-pack` for the
//! declared repos only, each answered by `git <service> --stateless-rpc` on the repo's mirror.
//!
//! A repo is looked up by exact name in the declared set; no part of the request path is ever
//! joined to a file path, so traversal has nothing to reach. Request bodies are bounded before
//! and after gzip decoding. Every fetch-side `info/refs` (clone, fetch, pull, ls-remote) first
//! syncs the mirror from the upstream, and a push needs one successful sync since the gate
//! started (begun in the background at start); when that fails the client gets a git `ERR`
//! line naming the upstream and the reason, never the stale mirror.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::Read;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body, Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, UnixListener};
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::{Mutex, Semaphore};

use super::GateError;
use super::config::{GateArgs, RepoConfig, ReposFile};
use super::hook;
use super::upstream::{GitEnv, tail_lines};
use crate::sidecar::egress::ListenAddr;
use crate::sidecar::egress::audit::{Audit, Decision};

/// Longest a sync from the upstream may take before the client is told it failed.
pub(crate) const SYNC_TIMEOUT: Duration = Duration::from_secs(120);
/// Concurrent client connections.
pub(crate) const MAX_CONNECTIONS: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Service {
    Upload,
    Receive,
}

impl Service {
    fn name(self) -> &'static str {
        match self {
            Service::Upload => "git-upload-pack",
            Service::Receive => "git-receive-pack",
        }
    }

    fn parse(s: &str) -> Option<Service> {
        match s {
            "git-upload-pack" => Some(Service::Upload),
            "git-receive-pack" => Some(Service::Receive),
            _ => None,
        }
    }

    fn audit_method(self) -> &'static str {
        match self {
            Service::Upload => "FETCH",
            Service::Receive => "PUSH",
        }
    }
}

/// What a request asks for, after the path was matched against the declared names.
#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    Advertise(&'a str, Service),
    Rpc(&'a str, Service),
}

/// `/<name>.git/info/refs?service=…`, `/<name>.git/git-upload-pack`,
/// `/<name>.git/git-receive-pack`; anything else is refused with a reason.
fn route<'a>(
    method: &Method,
    path: &'a str,
    query: Option<&str>,
) -> Result<Route<'a>, &'static str> {
    let rest = path.strip_prefix('/').ok_or("path must start with /")?;
    let (repo, action) = rest
        .split_once(".git/")
        .ok_or("path must be /<repo>.git/…")?;
    if !super::config::valid_repo_name(repo) {
        return Err("not a repo name");
    }
    match (method, action) {
        (&Method::GET, "info/refs") => {
            let svc = query
                .and_then(|q| q.strip_prefix("service="))
                .and_then(Service::parse)
                .ok_or("only the smart protocol is served (info/refs?service=git-upload-pack|git-receive-pack)")?;
            Ok(Route::Advertise(repo, svc))
        }
        (&Method::POST, a) => Service::parse(a)
            .map(|s| Route::Rpc(repo, s))
            .ok_or("unknown service"),
        _ => Err("unsupported request"),
    }
}

struct Shared {
    repos: BTreeMap<String, RepoConfig>,
    /// Per repo: serialises syncs; `true` once a sync succeeded since the gate started.
    locks: BTreeMap<String, Mutex<bool>>,
    env: GitEnv,
    audit: Audit,
    max_body: u64,
    /// Variables for every git child (hook context included).
    child_env: BTreeMap<String, String>,
}

/// The bound server, ready to run.
pub struct GateServer {
    shared: Arc<Shared>,
    listener: Listener,
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl GateServer {
    /// Load the repos, prepare mirrors and hook, bind the listener.
    pub async fn bind(args: GateArgs) -> Result<GateServer, GateError> {
        let repos = ReposFile::load(&args.repos)?;
        let state = absolute(&args.state)?;
        let env = GitEnv {
            git: args.git.clone(),
            ssh: args.ssh.clone(),
            state: state.clone(),
        };
        let exe = std::env::current_exe().map_err(|source| GateError::State {
            path: PathBuf::from("/proc/self/exe"),
            source,
        })?;
        env.prepare(&repos, &exe)?;
        let audit =
            Audit::open(args.audit.as_deref()).map_err(|e| GateError::Audit(e.to_string()))?;
        let mut child_env = BTreeMap::new();
        if let Ok(path) = std::env::var("PATH") {
            child_env.insert("PATH".to_string(), path);
        }
        child_env.insert(
            hook::ENV_REPOS.into(),
            absolute(&args.repos)?.display().to_string(),
        );
        child_env.insert(hook::ENV_STATE.into(), state.display().to_string());
        child_env.insert(hook::ENV_GIT.into(), args.git.clone());
        child_env.insert(hook::ENV_SSH.into(), args.ssh.clone());
        if let Some(a) = &args.audit {
            child_env.insert(hook::ENV_AUDIT.into(), absolute(a)?.display().to_string());
        }
        match super::gitleaks::resolve(&args.gitleaks, std::env::var_os("PATH").as_deref())? {
            Some((program, version)) => {
                tracing::info!(program = %program.display(), %version, "gitleaks found: second opinion on every push");
                child_env.insert(hook::ENV_GITLEAKS.into(), program.display().to_string());
            }
            None => tracing::info!("gitleaks not used: only the built-in scanner judges pushes"),
        }
        let listener =
            match &args.listen {
                ListenAddr::Tcp(a) => {
                    Listener::Tcp(TcpListener::bind(a).await.map_err(|source| {
                        GateError::Listen {
                            addr: a.to_string(),
                            source,
                        }
                    })?)
                }
                ListenAddr::Unix(p) => {
                    let _ = std::fs::remove_file(p);
                    let l = UnixListener::bind(p).map_err(|source| GateError::Listen {
                        addr: p.display().to_string(),
                        source,
                    })?;
                    use std::os::unix::fs::PermissionsExt;
                    let mode = std::fs::Permissions::from_mode(crate::sidecar::relay::SOCKET_MODE);
                    std::fs::set_permissions(p, mode).map_err(|source| GateError::Listen {
                        addr: p.display().to_string(),
                        source,
                    })?;
                    Listener::Unix(l)
                }
            };
        let locks = repos
            .keys()
            .map(|k| (k.clone(), Mutex::new(false)))
            .collect();
        Ok(GateServer {
            shared: Arc::new(Shared {
                repos,
                locks,
                env,
                audit,
                max_body: args.max_body,
                child_env,
            }),
            listener,
        })
    }

    /// The TCP address, when listening on TCP (tests bind port 0).
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        match &self.listener {
            Listener::Tcp(l) => l.local_addr().ok(),
            Listener::Unix(_) => None,
        }
    }

    /// Serve until the process ends.
    pub async fn run(self) -> Result<(), GateError> {
        self.warm_up();
        let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        loop {
            let permit = match permits.clone().acquire_owned().await {
                Ok(p) => p,
                Err(_) => return Ok(()),
            };
            let shared = self.shared.clone();
            match &self.listener {
                Listener::Tcp(l) => match l.accept().await {
                    Ok((s, _)) => {
                        tokio::spawn(async move {
                            serve(shared, s).await;
                            drop(permit);
                        });
                    }
                    Err(e) => accept_failed(e).await,
                },
                Listener::Unix(l) => match l.accept().await {
                    Ok((s, _)) => {
                        tokio::spawn(async move {
                            serve(shared, s).await;
                            drop(permit);
                        });
                    }
                    Err(e) => accept_failed(e).await,
                },
            }
        }
    }
}

impl GateServer {
    /// Sync every mirror once in the background, so a first push does not wait for it. Only
    /// a success counts: a failed warm-up leaves the repo unsynced and the first request syncs
    /// again and fails closed, exactly as without it.
    fn warm_up(&self) {
        for repo in self.shared.repos.values() {
            let shared = self.shared.clone();
            let repo = repo.clone();
            tokio::spawn(async move {
                if let Err(reason) = sync(&shared, &repo, true).await {
                    tracing::info!(repo = %repo.name, "first sync at start failed ({reason}); the next request retries");
                }
            });
        }
    }
}

fn absolute(p: &std::path::Path) -> Result<PathBuf, GateError> {
    std::path::absolute(p).map_err(|source| GateError::State {
        path: p.to_path_buf(),
        source,
    })
}

async fn accept_failed(e: std::io::Error) {
    tracing::warn!("accept failed: {e}");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

async fn serve<S>(shared: Arc<Shared>, stream: S)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(handle(shared, req).await) }
    });
    let mut b = http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .max_buf_size(64 << 10);
    if let Err(e) = b.serve_connection(TokioIo::new(stream), svc).await {
        tracing::debug!("client connection ended: {e}");
    }
}

type RespBody = GateBody;

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<RespBody> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let r = match route(req.method(), &path, query.as_deref()) {
        Ok(r) => r,
        Err(reason) => {
            deny(
                &shared,
                "",
                req.method().as_str(),
                &path,
                "bad-request",
                404,
            );
            return text(StatusCode::NOT_FOUND, &format!("git-gate: {reason}\n"));
        }
    };
    let (name, svc) = match r {
        Route::Advertise(n, s) | Route::Rpc(n, s) => (n, s),
    };
    let Some(repo) = shared.repos.get(name) else {
        deny(
            &shared,
            "",
            svc.audit_method(),
            &path,
            "repo-not-declared",
            404,
        );
        let msg = format!(
            "repository `{name}` is not declared in this bottle's git-gate.repos; only declared upstreams are served"
        );
        return match r {
            Route::Advertise(..) => err_pkt(svc, &msg),
            Route::Rpc(..) => text(StatusCode::NOT_FOUND, &format!("git-gate: {msg}\n")),
        };
    };
    let host = host_of(repo);
    match r {
        // A fetch is always served fresh. A push needs the mirror synced once (so its scan
        // covers only what the upstream lacks), not before every push: the upstream judges
        // the update itself and the hook forces only under a lease (decision 0026).
        Route::Advertise(..) => match sync(&shared, repo, svc == Service::Receive).await {
            Ok(()) => {
                if svc == Service::Upload {
                    shared.audit.record(&Decision {
                        host: host.as_str().into(),
                        method: "FETCH".into(),
                        path: path.as_str().into(),
                        allowed: true,
                        layer: "upstream".into(),
                        rule: "synced".into(),
                        status: 200,
                        ..Decision::default()
                    });
                }
                advertise(&shared, repo, svc).await
            }
            Err(reason) => {
                deny(
                    &shared,
                    &host,
                    svc.audit_method(),
                    &path,
                    "upstream-unreachable",
                    502,
                );
                err_pkt(
                    svc,
                    &format!(
                        "cannot sync `{}` from its upstream {host} ({reason}); refusing to serve a stale copy, retry when the upstream is reachable",
                        repo.name
                    ),
                )
            }
        },
        Route::Rpc(..) => rpc(&shared, repo, svc, req).await,
    }
}

fn host_of(repo: &RepoConfig) -> String {
    crate::plan::parse_ssh_url(&repo.url)
        .map(|(_, h, p, _)| if p == 22 { h } else { format!("{h}:{p}") })
        .unwrap_or_default()
}

fn deny(shared: &Shared, host: &str, method: &str, path: &str, rule: &str, status: u16) {
    shared.audit.record(&Decision {
        host: host.into(),
        method: method.into(),
        path: crate::sidecar::egress::audit::log_path(path).into(),
        allowed: false,
        layer: super::refusal::LAYER.into(),
        rule: rule.into(),
        status,
        ..Decision::default()
    });
}

/// Fetch every branch and tag of the upstream into the mirror (pruning what it deleted).
/// With `once`, a mirror already synced since the gate started is left as it is.
async fn sync(shared: &Shared, repo: &RepoConfig, once: bool) -> Result<(), String> {
    let Some(lock) = shared.locks.get(&repo.name) else {
        return Err("repo has no lock".into());
    };
    let mut synced = lock.lock().await;
    if once && *synced {
        return Ok(());
    }
    // The mirror's HEAD matters to clones only; a push does not wait for it.
    sync_now(shared, repo, !once).await?;
    *synced = true;
    Ok(())
}

async fn sync_now(shared: &Shared, repo: &RepoConfig, fix_head: bool) -> Result<(), String> {
    let mirror = shared.env.mirror(&repo.name);
    let mut cmd = git(shared, repo);
    cmd.arg("-C").arg(&mirror).args([
        "fetch",
        "--prune",
        "--quiet",
        "--no-write-fetch-head",
        &repo.url,
        "+refs/heads/*:refs/heads/*",
        "+refs/tags/*:refs/tags/*",
    ]);
    let out = run(cmd).await?;
    if !out.status.success() {
        return Err(tail_lines(&out.stderr, 3));
    }
    if !fix_head {
        return Ok(());
    }
    // A mirror's HEAD must name a branch the upstream has, or a clone checks nothing out.
    let mut head = git(shared, repo);
    head.arg("-C")
        .arg(&mirror)
        .args(["rev-parse", "--verify", "--quiet", "HEAD"]);
    if run(head).await.is_ok_and(|o| o.status.success()) {
        return Ok(());
    }
    let mut ls = git(shared, repo);
    ls.args(["ls-remote", "--symref", &repo.url, "HEAD"]);
    let out = run(ls).await?;
    let text = String::from_utf8_lossy(&out.stdout);
    if let Some(target) = text
        .lines()
        .find_map(|l| l.strip_prefix("ref: ")?.split('\t').next())
        .filter(|t| t.starts_with("refs/heads/"))
    {
        let mut set = git(shared, repo);
        set.arg("-C")
            .arg(&mirror)
            .args(["symbolic-ref", "HEAD", target]);
        let _ = run(set).await;
    }
    Ok(())
}

fn git(shared: &Shared, repo: &RepoConfig) -> Command {
    let mut c = Command::new(&shared.env.git);
    c.env_clear()
        .envs(&shared.child_env)
        .envs(shared.env.vars(repo))
        .env(hook::ENV_REPO, &repo.name)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    c
}

async fn run(mut cmd: Command) -> Result<std::process::Output, String> {
    match tokio::time::timeout(SYNC_TIMEOUT, cmd.output()).await {
        Ok(Ok(o)) => Ok(o),
        Ok(Err(e)) => Err(format!("cannot run git: {e}")),
        Err(_) => Err(format!("no answer within {}s", SYNC_TIMEOUT.as_secs())),
    }
}

/// `git <svc>` for the mirror, with the gate's hook and the policies git itself enforces.
fn service_cmd(shared: &Shared, repo: &RepoConfig, svc: Service) -> Command {
    let mut c = git(shared, repo);
    c.arg("-c")
        .arg(format!(
            "core.hooksPath={}",
            shared.env.hooks_dir().display()
        ))
        .args([
            "-c",
            "receive.denyDeletes=true",
            "-c",
            "receive.advertisePushOptions=false",
            "-c",
            "uploadpack.allowFilter=true",
            "-c",
            "uploadpack.allowAnySHA1InWant=false",
            svc.name().trim_start_matches("git-"),
            "--stateless-rpc",
        ]);
    c
}

async fn advertise(shared: &Shared, repo: &RepoConfig, svc: Service) -> Response<RespBody> {
    let mut cmd = service_cmd(shared, repo, svc);
    cmd.arg("--advertise-refs")
        .arg(shared.env.mirror(&repo.name));
    let out = match run(cmd).await {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            tracing::warn!("advertise failed: {}", tail_lines(&o.stderr, 3));
            return err_pkt(svc, "the gate's mirror cannot be read; restart the bottle");
        }
        Err(e) => return err_pkt(svc, &format!("the gate's mirror cannot be read ({e})")),
    };
    let mut body = pkt(format!("# service={}\n", svc.name()).as_bytes());
    body.extend_from_slice(b"0000");
    body.extend_from_slice(&out.stdout);
    Response::builder()
        .status(StatusCode::OK)
        .header(
            "content-type",
            format!("application/x-{}-advertisement", svc.name()),
        )
        .header("cache-control", "no-cache")
        .body(GateBody::full(body))
        .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "git-gate: response\n"))
}

async fn rpc(
    shared: &Shared,
    repo: &RepoConfig,
    svc: Service,
    req: Request<Incoming>,
) -> Response<RespBody> {
    let gzip = req
        .headers()
        .get("content-encoding")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let limit = usize::try_from(shared.max_body).unwrap_or(usize::MAX);
    let body = match Limited::new(req.into_body(), limit).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!(
                    "git-gate: request body over {} bytes; push fewer commits at a time\n",
                    shared.max_body
                ),
            );
        }
    };
    let body = if gzip {
        let mut out = Vec::new();
        let dec = flate2::read::MultiGzDecoder::new(&body[..]);
        if dec.take(shared.max_body + 1).read_to_end(&mut out).is_err() {
            return text(
                StatusCode::BAD_REQUEST,
                "git-gate: gzip request body is corrupt\n",
            );
        }
        if out.len() as u64 > shared.max_body {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                "git-gate: request body too large after decompression\n",
            );
        }
        Bytes::from(out)
    } else {
        body
    };
    let mut cmd = service_cmd(shared, repo, svc);
    cmd.arg(shared.env.mirror(&repo.name))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("git-gate: cannot run git: {e}\n"),
            );
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        tokio::spawn(async move {
            let _ = stdin.write_all(&body).await;
        });
    }
    if let Some(mut stderr) = child.stderr.take() {
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut stderr, &mut buf).await;
            if !buf.is_empty() {
                tracing::info!("{}: {}", "git", tail_lines(&buf, 5));
            }
        });
    }
    let Some(stdout) = child.stdout.take() else {
        return text(StatusCode::INTERNAL_SERVER_ERROR, "git-gate: no output\n");
    };
    Response::builder()
        .status(StatusCode::OK)
        .header(
            "content-type",
            format!("application/x-{}-result", svc.name()),
        )
        .header("cache-control", "no-cache")
        .body(GateBody::Child(Box::new(ChildOut {
            stdout,
            _child: child,
            buf: vec![0; 64 << 10].into_boxed_slice(),
        })))
        .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "git-gate: response\n"))
}

/// One pkt-line.
fn pkt(data: &[u8]) -> Vec<u8> {
    let mut v = format!("{:04x}", data.len() + 4).into_bytes();
    v.extend_from_slice(data);
    v
}

/// An advertisement that is only an `ERR` line: git prints `remote error: <msg>` and stops.
fn err_pkt(svc: Service, msg: &str) -> Response<RespBody> {
    let line: String = format!("ERR bot-bottle git-gate: {msg}")
        .chars()
        .filter(|c| !c.is_control())
        .take(900)
        .collect();
    Response::builder()
        .status(StatusCode::OK)
        .header(
            "content-type",
            format!("application/x-{}-advertisement", svc.name()),
        )
        .header("cache-control", "no-cache")
        .body(GateBody::full(pkt(line.as_bytes())))
        .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "git-gate: response\n"))
}

fn text(status: StatusCode, msg: &str) -> Response<RespBody> {
    let mut r = Response::new(GateBody::full(msg.as_bytes().to_vec()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", http::HeaderValue::from_static("text/plain"));
    r
}

/// A response body: bytes in memory, or a git child's stdout streamed as it comes.
pub(crate) enum GateBody {
    Full(Option<Bytes>),
    Child(Box<ChildOut>),
}

/// A git child streaming its stdout into a response.
pub(crate) struct ChildOut {
    stdout: ChildStdout,
    /// Held so the child lives (and is reaped) with the response.
    _child: Child,
    buf: Box<[u8]>,
}

impl GateBody {
    fn full(data: Vec<u8>) -> GateBody {
        GateBody::Full(Some(Bytes::from(data)))
    }
}

impl Body for GateBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match self.get_mut() {
            GateBody::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            GateBody::Child(c) => {
                let ChildOut { stdout, buf, .. } = &mut **c;
                let mut rb = ReadBuf::new(buf);
                match Pin::new(stdout).poll_read(cx, &mut rb) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
                    Poll::Ready(Ok(())) if rb.filled().is_empty() => Poll::Ready(None),
                    Poll::Ready(Ok(())) => {
                        Poll::Ready(Some(Ok(Frame::data(Bytes::copy_from_slice(rb.filled())))))
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, GateBody::Full(None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_accept_only_the_smart_protocol_of_plain_names() {
        let get = Method::GET;
        let post = Method::POST;
        assert_eq!(
            route(&get, "/p.git/info/refs", Some("service=git-upload-pack")),
            Ok(Route::Advertise("p", Service::Upload))
        );
        assert_eq!(
            route(&post, "/p.git/git-receive-pack", None),
            Ok(Route::Rpc("p", Service::Receive))
        );
        for (m, p, q) in [
            (&get, "/p.git/info/refs", None),
            (&get, "/p.git/info/refs", Some("service=git-upload-archive")),
            (&get, "/p.git/HEAD", None),
            (&get, "/p.git/objects/info/packs", None),
            (&get, "/../p.git/info/refs", Some("service=git-upload-pack")),
            (&get, "/a/b.git/info/refs", Some("service=git-upload-pack")),
            (
                &get,
                "/%2e%2e.git/info/refs",
                Some("service=git-upload-pack"),
            ),
            (&get, "/...git/info/refs", Some("service=git-upload-pack")),
            (&post, "/p.git/git-upload-archive", None),
            (&Method::PUT, "/p.git/git-receive-pack", None),
        ] {
            assert!(route(m, p, q).is_err(), "{m} {p} {q:?}");
        }
    }

    #[test]
    fn pkt_lines_carry_their_length() {
        assert_eq!(pkt(b"a\n"), b"0006a\n");
        assert_eq!(pkt(b""), b"0004");
    }
}

//! The operator's side of supervise: the request queue under `<root>/queue/`, its
//! append-only audit log, and the link to each running bottle's spool through the engine.
//!
//! The host shares no directory with a sidecar bundle, so requests are pulled out with
//! `docker exec <bundle> bot-bottle-supervise pending` and decisions handed in with
//! `… decide` (stdin), through the one runner. Each request is copied to
//! `<root>/queue/<id>/request.json` (written whole, then renamed) with the bottle it came
//! from; the decision lands beside it. `<root>/queue/audit.jsonl` only ever grows, and
//! `cleanup` never touches `<root>/queue/`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::backend::docker::compose::{LABEL_IDENTITY, LABEL_SERVICE};
use crate::backend::docker::{DockerError, check, discover, docker};
use crate::runner::Runner;
use crate::sidecar::supervise::grants::GrantEvent;
use crate::sidecar::supervise::refusals::{self, RefusalEvent};
use crate::sidecar::supervise::spool::{Decision, Request, is_request_id, now_rfc3339};

/// Where the daemon binary sits in the bundle.
pub(crate) const SUPERVISE_BIN: &str = "/usr/local/bin/bot-bottle-supervise";
/// The spool inside the bundle (not in the socket volume the agent shares).
pub(crate) const BUNDLE_SPOOL: &str = "/var/lib/bot-bottle/supervise";
/// Egress's live routes file inside the bundle.
pub(crate) const BUNDLE_ROUTES: &str = "/etc/bot-bottle/routes.json";

/// What can go wrong on the operator's side.
#[derive(Debug, thiserror::Error)]
pub enum RequestsError {
    #[error("cannot use `{path}`: {source}; check the path and its permissions")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "`{path}` is not a valid queue file ({message}); move it away and run the command again"
    )]
    Corrupt { path: PathBuf, message: String },
    #[error("no request `{0}` in the queue; see `bot-bottle requests`")]
    Unknown(String),
    #[error("request `{0}` was already decided")]
    AlreadyDecided(String),
    #[error("bottle `{bottle}` answered with something that is not a request: {message}")]
    BadAnswer { bottle: String, message: String },
    #[error("{0}")]
    State(String),
    #[error(transparent)]
    Docker(#[from] DockerError),
}

/// One queued request and the bottle it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Entry {
    pub bottle: String,
    pub request: Request,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AuditLine {
    pub time: String,
    pub bottle: String,
    /// `requested`, `approved`, `rejected`, `granted`, `expired`.
    pub event: String,
    pub id: String,
    pub(crate) summary: String,
}

/// A request in one line: what is asked for.
pub(crate) fn summary(r: &Request) -> String {
    use crate::sidecar::supervise::spool::Change;
    match &r.change {
        Change::Route(p) => {
            let mut s = format!("route {}", p.host);
            if !p.path_prefixes.is_empty() {
                s.push_str(&format!(" paths {}", p.path_prefixes.join(",")));
            }
            if !p.methods.is_empty() {
                s.push_str(&format!(" methods {}", p.methods.join(",")));
            }
            s
        }
        Change::Image { dockerfile } => {
            format!("image change ({} lines)", dockerfile.lines().count())
        }
    }
}

/// The host queue.
#[derive(Debug, Clone)]
pub struct Queue {
    dir: PathBuf,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> RequestsError + '_ {
    move |source| RequestsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn write_atomic(path: &Path, body: &[u8], exclusive: bool) -> Result<(), RequestsError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io(path))?;
    tmp.write_all(body).map_err(io(path))?;
    tmp.as_file().sync_all().map_err(io(path))?;
    let r = if exclusive {
        tmp.persist_noclobber(path).map(|_| ())
    } else {
        tmp.persist(path).map(|_| ())
    };
    r.map_err(|e| io(path)(e.error))
}

impl Queue {
    /// `<root>/queue`, created when missing.
    pub fn open(root: &Path) -> Result<Queue, RequestsError> {
        let dir = root.join("queue");
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        Ok(Queue { dir })
    }

    pub(crate) fn audit_path(&self) -> PathBuf {
        self.dir.join("audit.jsonl")
    }

    /// Append one line to the audit log.
    pub fn audit(
        &self,
        bottle: &str,
        event: &str,
        id: &str,
        summary: &str,
    ) -> Result<(), RequestsError> {
        let p = self.audit_path();
        let line = serde_json::to_string(&AuditLine {
            time: now_rfc3339(),
            bottle: bottle.into(),
            event: event.into(),
            id: id.into(),
            summary: summary.into(),
        })
        .unwrap_or_default();
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .map_err(io(&p))?;
        f.write_all(format!("{line}\n").as_bytes()).map_err(io(&p))
    }

    /// Copy a request into the queue; `false` when it was already there.
    pub fn record(&self, bottle: &str, r: &Request) -> Result<bool, RequestsError> {
        if !is_request_id(&r.id) {
            return Err(RequestsError::BadAnswer {
                bottle: bottle.into(),
                message: "bad request id".into(),
            });
        }
        let dir = self.dir.join(&r.id);
        let file = dir.join("request.json");
        if file.exists() {
            return Ok(false);
        }
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let body = serde_json::to_vec_pretty(&Entry {
            bottle: bottle.into(),
            request: r.clone(),
            decision: None,
        })
        .unwrap_or_default();
        write_atomic(&file, &body, false)?;
        self.audit(bottle, "requested", &r.id, &summary(r))?;
        Ok(true)
    }

    /// One entry with its decision, if any.
    pub(crate) fn get(&self, id: &str) -> Result<Entry, RequestsError> {
        if !is_request_id(id) {
            return Err(RequestsError::Unknown(id.chars().take(40).collect()));
        }
        let file = self.dir.join(id).join("request.json");
        let text = match fs::read(&file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(RequestsError::Unknown(id.into()));
            }
            Err(e) => return Err(io(&file)(e)),
        };
        let mut entry: Entry =
            serde_json::from_slice(&text).map_err(|e| RequestsError::Corrupt {
                path: file.clone(),
                message: e.to_string(),
            })?;
        let dfile = self.dir.join(id).join("decision.json");
        if let Ok(d) = fs::read(&dfile) {
            entry.decision =
                Some(
                    serde_json::from_slice(&d).map_err(|e| RequestsError::Corrupt {
                        path: dfile.clone(),
                        message: e.to_string(),
                    })?,
                );
        }
        Ok(entry)
    }

    /// Every entry, oldest first.
    pub(crate) fn entries(&self) -> Result<Vec<Entry>, RequestsError> {
        let rd = fs::read_dir(&self.dir).map_err(io(&self.dir))?;
        let mut ids: Vec<String> = rd
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| is_request_id(n))
            .collect();
        ids.sort();
        ids.iter().map(|id| self.get(id)).collect()
    }

    /// Undecided entries, oldest first.
    pub(crate) fn pending(&self) -> Result<Vec<Entry>, RequestsError> {
        Ok(self
            .entries()?
            .into_iter()
            .filter(|e| e.decision.is_none())
            .collect())
    }

    /// Record the decision (once) and audit it.
    pub(crate) fn record_decision(&self, bottle: &str, d: &Decision) -> Result<(), RequestsError> {
        let entry = self.get(&d.id)?;
        let file = self.dir.join(&d.id).join("decision.json");
        let body = serde_json::to_vec_pretty(d).unwrap_or_default();
        write_atomic(&file, &body, true).map_err(|e| match e {
            RequestsError::Io { source, .. }
                if source.kind() == std::io::ErrorKind::AlreadyExists =>
            {
                RequestsError::AlreadyDecided(d.id.clone())
            }
            other => other,
        })?;
        let event = match d.verdict {
            crate::sidecar::supervise::spool::Verdict::Approved => "approved",
            crate::sidecar::supervise::spool::Verdict::Rejected => "rejected",
        };
        let mut s = summary(&entry.request);
        if let Some(l) = d.lifetime {
            s.push_str(&format!(" for {l:?}").to_lowercase());
        }
        if let Some(n) = &d.note {
            s.push_str(&format!(" ({n})"));
        }
        self.audit(bottle, event, &d.id, &s)
    }

    /// How many of `bottle`'s grant events are already in the audit log.
    fn events_seen(&self, bottle: &str) -> usize {
        fs::read_to_string(self.dir.join(".events").join(bottle))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    fn set_events_seen(&self, bottle: &str, n: usize) -> Result<(), RequestsError> {
        let dir = self.dir.join(".events");
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        write_atomic(&dir.join(bottle), n.to_string().as_bytes(), false)
    }
}

/// The way to each running bottle's spool.
pub(crate) trait BundleLink {
    /// Identities of running bottles.
    fn bottles(&self) -> Result<Vec<String>, RequestsError>;
    /// Undecided requests in one bottle.
    fn pending(&self, bottle: &str) -> Result<Vec<Request>, RequestsError>;
    /// Hand a decision in (an approved route goes live there).
    fn decide(&self, bottle: &str, d: &Decision) -> Result<(), RequestsError>;
    /// Grant events after the first `skip`.
    fn events(&self, bottle: &str, skip: usize) -> Result<Vec<GrantEvent>, RequestsError>;
}

/// [`BundleLink`] through `docker exec` on each bundle.
pub(crate) struct DockerLink<'a> {
    pub runner: &'a dyn Runner,
}

fn bundle(bottle: &str) -> String {
    format!("bot-bottle-sidecars-{bottle}")
}

impl BundleLink for DockerLink<'_> {
    fn bottles(&self) -> Result<Vec<String>, RequestsError> {
        Ok(discover::active(self.runner)?
            .into_iter()
            .filter(|b| b.services.iter().any(|s| s != "agent"))
            .map(|b| b.identity)
            .collect())
    }

    fn pending(&self, bottle: &str) -> Result<Vec<Request>, RequestsError> {
        let out = check(
            self.runner,
            &docker([
                "exec",
                &bundle(bottle),
                SUPERVISE_BIN,
                "pending",
                "--spool",
                BUNDLE_SPOOL,
            ]),
        )?;
        out.stdout_str()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l).map_err(|e| RequestsError::BadAnswer {
                    bottle: bottle.into(),
                    message: e.to_string(),
                })
            })
            .collect()
    }

    fn decide(&self, bottle: &str, d: &Decision) -> Result<(), RequestsError> {
        let spec = docker([
            "exec",
            "-i",
            &bundle(bottle),
            SUPERVISE_BIN,
            "decide",
            "--spool",
            BUNDLE_SPOOL,
            "--routes",
            BUNDLE_ROUTES,
        ])
        .stdin(serde_json::to_vec(d).unwrap_or_default());
        check(self.runner, &spec)?;
        Ok(())
    }

    fn events(&self, bottle: &str, skip: usize) -> Result<Vec<GrantEvent>, RequestsError> {
        let out = check(
            self.runner,
            &docker([
                "exec",
                &bundle(bottle),
                SUPERVISE_BIN,
                "events",
                "--spool",
                BUNDLE_SPOOL,
                "--skip",
                &skip.to_string(),
            ]),
        )?;
        out.stdout_str()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l).map_err(|e| RequestsError::BadAnswer {
                    bottle: bottle.into(),
                    message: e.to_string(),
                })
            })
            .collect()
    }
}

/// Where each provider keeps its transcript in the agent (copied out before an image change
/// ends the session; the first that exists is taken).
const TRANSCRIPT_DIRS: [&str; 2] = ["/home/node/.claude/projects", "/home/node/.codex/sessions"];

/// What an approved image change left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImageApplied {
    /// The per-bottle Dockerfile `resume` builds from.
    pub dockerfile: PathBuf,
    /// Whether a transcript was copied out.
    pub transcript: bool,
    /// The command that resumes the bottle on the new image.
    pub resume: String,
}

/// Apply an approved image change to running bottle `bottle` (Docker backend): write the
/// per-bottle Dockerfile into its state dir, copy the transcript out of the agent, mark the
/// state preserved, then tear the bottle down. `resume` then builds and runs that image
/// (`plan::image`: a state-dir Dockerfile wins over the bottle's own).
pub(crate) fn apply_image_change(
    runner: &dyn Runner,
    root: &Path,
    bottle: &str,
    dockerfile: &str,
) -> Result<ImageApplied, RequestsError> {
    use crate::backend::docker::ComposeCmd;
    use crate::state::{StateDir, TRANSCRIPT_DIR};
    let state_err = |e: crate::state::StateError| RequestsError::State(e.to_string());
    let state = StateDir::open(root, bottle).map_err(state_err)?;
    let meta = state.metadata().map_err(state_err)?;
    if meta.backend != "docker" {
        return Err(RequestsError::State(format!(
            "bottle `{bottle}` runs on {}; image changes apply to Docker bottles",
            meta.backend
        )));
    }
    let path = state
        .write_file(crate::plan::REBUILT_DOCKERFILE, dockerfile, Some(0o644))
        .map_err(state_err)?;
    state.preserve().map_err(state_err)?;
    // The agent container by its labels (its name may be pinned).
    let ps = check(
        runner,
        &docker([
            "ps",
            "--filter",
            &format!("label={LABEL_IDENTITY}={bottle}"),
            "--filter",
            &format!("label={LABEL_SERVICE}=agent"),
            "--format",
            "{{.Names}}",
        ]),
    )?;
    let mut transcript = false;
    if let Some(agent) = ps
        .stdout_str()
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
    {
        for dir in TRANSCRIPT_DIRS {
            let spec = docker(["cp".to_string(), format!("{agent}:{dir}"), "-".into()]);
            let Ok(out) = runner.run(&spec) else { continue };
            if out.success()
                && !out.stdout.is_empty()
                && state.replace_from_tar(TRANSCRIPT_DIR, &out.stdout).is_ok()
            {
                transcript = true;
                break;
            }
        }
    }
    let file = state
        .path()
        .join(crate::backend::docker::launch::COMPOSE_FILE);
    let args = ["down", "--volumes", "--remove-orphans", "--timeout", "2"];
    match check(
        runner,
        &ComposeCmd::assume_v2().spec(&meta.compose_project, &file, &args),
    ) {
        Err(e) if ComposeCmd::is_missing_v2(&e) => {
            check(
                runner,
                &ComposeCmd { v1: true }.spec(&meta.compose_project, &file, &args),
            )?;
        }
        other => {
            other?;
        }
    }
    Ok(ImageApplied {
        dockerfile: path,
        transcript,
        resume: format!("bot-bottle resume {bottle}"),
    })
}

/// Egress's audit log inside the bundle.
const BUNDLE_AUDIT_LOG: &str = "/var/log/bot-bottle/egress-audit.jsonl";
/// Most bytes of the audit log one read brings back.
const REFUSAL_READ_BYTES: u64 = crate::sidecar::supervise::refusals::TAIL_BYTES;

/// A running bottle's recent refusals (grouped, most recent last, at most `limit`), read
/// through the engine from the tail of egress's audit log: bottle, host, method, path,
/// layer, rule, count, and the reason the agent got.
pub fn recent_refusals(
    runner: &dyn Runner,
    bottle: &str,
    limit: usize,
) -> Result<Vec<RefusalEvent>, RequestsError> {
    let script = format!("tail -c {REFUSAL_READ_BYTES} {BUNDLE_AUDIT_LOG} 2>/dev/null || true");
    let out = check(
        runner,
        &docker(["exec", &bundle(bottle), "sh", "-c", &script]),
    )?;
    let mut text = out.stdout_str().to_string();
    if out.stdout.len() as u64 >= REFUSAL_READ_BYTES {
        // The first line was cut by `tail -c`.
        text = text
            .split_once('\n')
            .map(|x| x.1.to_string())
            .unwrap_or_default();
    }
    Ok(refusals::from_audit_text(bottle, &text, limit))
}

/// Follow a running bottle's refusals: the ones logged after byte `offset` of egress's audit
/// log (start with 0), each on its own (`count` 1), and the offset to pass next time. A log
/// that shrank (a new bundle under the same name) is read from its start again. Reads at most
/// 256 KiB per call; the rest comes with the next call.
pub fn follow_refusals(
    runner: &dyn Runner,
    bottle: &str,
    offset: u64,
) -> Result<(Vec<RefusalEvent>, u64), RequestsError> {
    // First line: the log's size; then the bytes from `offset` on.
    let script = format!(
        "f={BUNDLE_AUDIT_LOG}; s=$(stat -c %s \"$f\" 2>/dev/null || echo 0); echo \"$s\"; \
         if [ \"$s\" -lt {offset} ]; then o=0; else o={offset}; fi; echo \"$o\"; \
         [ \"$s\" -gt 0 ] && tail -c +$((o + 1)) \"$f\" | head -c {REFUSAL_READ_BYTES}; true"
    );
    let out = check(
        runner,
        &docker(["exec", &bundle(bottle), "sh", "-c", &script]),
    )?;
    let bad = |m: &str| RequestsError::BadAnswer {
        bottle: bottle.into(),
        message: m.into(),
    };
    let text = out.stdout_str();
    let mut parts = text.splitn(3, '\n');
    let _size: u64 = parts
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| bad("no audit log size"))?;
    let start: u64 = parts
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| bad("no audit log offset"))?;
    let body = parts.next().unwrap_or("");
    // Only whole lines; a partly written last line comes next time.
    let whole = body.rfind('\n').map_or(0, |i| i + 1);
    let mut events = Vec::new();
    for line in body[..whole].lines() {
        events.extend(refusals::from_audit_text(bottle, line, 1));
    }
    Ok((events, start + whole as u64))
}

/// Pull every running bottle's new requests and grant events into the queue and the audit
/// log. A bottle that cannot be read (no supervise in it, stopping) is skipped and named in
/// the returned warnings.
pub(crate) fn sync(queue: &Queue, link: &dyn BundleLink) -> Result<Vec<String>, RequestsError> {
    let mut warnings = Vec::new();
    for bottle in link.bottles()? {
        match link.pending(&bottle) {
            Ok(reqs) => {
                for r in reqs {
                    queue.record(&bottle, &r)?;
                }
            }
            Err(e) => {
                warnings.push(format!("{bottle}: {e}"));
                continue;
            }
        }
        let seen = queue.events_seen(&bottle);
        if let Ok(events) = link.events(&bottle, seen) {
            for ev in &events {
                queue.audit(&bottle, &ev.event, &ev.id, &format!("route {}", ev.host))?;
            }
            if !events.is_empty() {
                queue.set_events_seen(&bottle, seen + events.len())?;
            }
        }
    }
    Ok(warnings)
}

/// Decide a queued request: hand the decision to its bottle, then record and audit it. The
/// bottle is asked first, so a decision that could not be delivered is not recorded.
pub(crate) fn decide(
    queue: &Queue,
    link: &dyn BundleLink,
    d: &Decision,
) -> Result<(), RequestsError> {
    let entry = queue.get(&d.id)?;
    if entry.decision.is_some() {
        return Err(RequestsError::AlreadyDecided(d.id.clone()));
    }
    link.decide(&entry.bottle, d)?;
    queue.record_decision(&entry.bottle, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::{Output, RecordingRunner};
    use crate::sidecar::supervise::spool::{Change, Lifetime, Verdict};
    use crate::sidecar::supervise::validate::RouteProposal;

    fn req(id: &str, host: &str) -> Request {
        Request {
            id: id.into(),
            created_at: "t".into(),
            change: Change::Route(RouteProposal {
                host: host.into(),
                path_prefixes: vec![],
                methods: vec![],
            }),
            reason: "needed".into(),
        }
    }

    const ID1: &str = "0000000000001-00000a";
    const ID2: &str = "0000000000002-00000b";

    fn approve(id: &str) -> Decision {
        Decision {
            id: id.into(),
            verdict: Verdict::Approved,
            decided_at: "t".into(),
            lifetime: Some(Lifetime::Seconds(600)),
            route: None,
            note: None,
        }
    }

    #[test]
    fn sync_decide_and_audit_through_docker_exec() {
        let root = tempfile::tempdir().unwrap();
        let q = Queue::open(root.path()).unwrap();
        let runner = RecordingRunner::new(|spec| {
            let argv = spec.argv().join(" ");
            if argv.starts_with("docker ps") {
                Output::ok(
                    r#"{"Names":"bot-bottle-sidecars-dev-1","State":"running","Labels":"dev.bot-bottle.identity=dev-1,dev.bot-bottle.service=sidecars"}"#,
                )
            } else if argv.contains(" pending ") {
                Output::ok(format!(
                    "{}\n{}\n",
                    serde_json::to_string(&req(ID2, "b.test")).unwrap(),
                    serde_json::to_string(&req(ID1, "a.test")).unwrap()
                ))
            } else if argv.contains(" events ") && argv.ends_with("--skip 0") {
                Output::ok(
                    r#"{"time":"t","event":"expired","id":"0000000000001-00000a","host":"a.test"}"#,
                )
            } else {
                Output::ok("")
            }
        });
        let link = DockerLink { runner: &runner };
        assert!(sync(&q, &link).unwrap().is_empty());
        // Synced twice: nothing is queued or audited twice, events are not repeated.
        assert!(sync(&q, &link).unwrap().is_empty());
        let pending: Vec<String> = q
            .pending()
            .unwrap()
            .into_iter()
            .map(|e| e.request.id)
            .collect();
        assert_eq!(pending, [ID1, ID2], "oldest first");
        assert_eq!(q.get(ID1).unwrap().bottle, "dev-1");

        decide(&q, &link, &approve(ID1)).unwrap();
        assert!(matches!(
            decide(&q, &link, &approve(ID1)),
            Err(RequestsError::AlreadyDecided(_))
        ));
        let calls = runner.calls();
        let dec = calls
            .iter()
            .find(|c| c.argv().contains(&"decide"))
            .expect("a decide call");
        assert_eq!(
            dec.argv()[..4],
            ["docker", "exec", "-i", "bot-bottle-sidecars-dev-1"]
        );
        let sent: Decision = serde_json::from_slice(dec.stdin.as_deref().unwrap()).unwrap();
        assert_eq!(sent, approve(ID1));
        assert_eq!(q.pending().unwrap().len(), 1);

        let audit = fs::read_to_string(q.audit_path()).unwrap();
        let events: Vec<String> = audit
            .lines()
            .map(|l| serde_json::from_str::<AuditLine>(l).unwrap().event)
            .collect();
        assert_eq!(events, ["requested", "requested", "expired", "approved"]);
    }

    #[test]
    fn refusals_are_read_and_followed_through_the_engine() {
        use crate::sidecar::egress::audit::{Audit, Decision as Line};
        let line = |host: &str, allowed: bool| {
            Audit::line(&Line {
                host,
                method: "GET",
                path: "/p",
                allowed,
                layer: if allowed { "egress" } else { "allowlist" },
                rule: if allowed {
                    "route"
                } else {
                    "host-not-in-routes"
                },
                status: if allowed { 200 } else { 403 },
                injected: None,
            })
        };
        let log = [
            line("a.test", false),
            line("ok.test", true),
            line("a.test", false),
        ]
        .concat();
        let first = log.len();
        let partial = format!("{log}{}", &line("b.test", false)[..10]);
        let runner = RecordingRunner::new(move |spec| {
            let script = spec.argv().last().unwrap().to_string();
            if script.starts_with("tail") {
                Output::ok(log.clone())
            } else if script.contains("; echo \"$o\"") && script.contains("o=0; else o=0") {
                Output::ok(format!("{}\n0\n{partial}", partial.len()))
            } else {
                Output::ok(format!("{}\n{first}\n", partial.len()))
            }
        });
        let recent = recent_refusals(&runner, "dev-1", 10).unwrap();
        assert_eq!(recent.len(), 1);
        assert_eq!((recent[0].host.as_str(), recent[0].count), ("a.test", 2));
        assert_eq!(recent[0].bottle, "dev-1");
        assert_eq!(recent[0].layer, "allowlist");
        let (events, next) = follow_refusals(&runner, "dev-1", 0).unwrap();
        let hosts: Vec<&str> = events.iter().map(|e| e.host.as_str()).collect();
        assert_eq!(hosts, ["a.test", "a.test"], "the cut last line waits");
        assert_eq!(next as usize, first);
        let (events, again) = follow_refusals(&runner, "dev-1", next).unwrap();
        assert!(events.is_empty());
        assert_eq!(again, next);
        let calls = runner.calls();
        assert!(
            calls
                .iter()
                .all(|c| c.argv()[..3] == ["docker", "exec", "bot-bottle-sidecars-dev-1"])
        );
    }

    #[test]
    fn a_decision_the_bottle_refused_is_not_recorded() {
        let root = tempfile::tempdir().unwrap();
        let q = Queue::open(root.path()).unwrap();
        q.record("dev-1", &req(ID1, "a.test")).unwrap();
        let runner = RecordingRunner::new(|_| Output::failed(1, "No such container"));
        let link = DockerLink { runner: &runner };
        assert!(decide(&q, &link, &approve(ID1)).is_err());
        assert!(q.get(ID1).unwrap().decision.is_none());
    }
}

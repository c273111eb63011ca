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

/// The audit logs in the bundle whose refusals are the bottle's refusal events: egress's and
/// the git-gate's (one line format, `egress::audit::Decision`; a bottle without repos has no
/// git-gate log, which reads as empty).
fn refusal_logs() -> [String; 2] {
    use crate::backend::docker::compose::SIDECAR_LOG_DIR;
    [
        format!(
            "{SIDECAR_LOG_DIR}/{}",
            crate::backend::docker::sidecar_config::EGRESS_AUDIT_LOG
        ),
        format!(
            "{SIDECAR_LOG_DIR}/{}",
            crate::backend::docker::sidecar_config::GIT_GATE_AUDIT_LOG
        ),
    ]
}
/// Most bytes of one audit log one read brings back.
const REFUSAL_READ_BYTES: u64 = crate::sidecar::supervise::refusals::TAIL_BYTES;

/// Where [`follow_refusals`] goes on: a byte offset into each of the bundle's audit logs.
/// Start from `RefusalCursor::default()`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusalCursor {
    pub egress: u64,
    pub git_gate: u64,
}

/// One log's part of a read: its size, where the bytes start, and the bytes.
struct LogPart<'a> {
    start: u64,
    body: &'a [u8],
}

/// Read the audit logs through one `docker exec`: for each, from `from(log index)` (a shell
/// expression over the log's size `$s`), at most [`REFUSAL_READ_BYTES`]. Each part comes as
/// a `size start length` line and exactly that many bytes, so a line still being written is
/// never mistaken for a whole one.
fn read_logs<'o>(
    runner: &dyn Runner,
    bottle: &str,
    out: &'o mut Vec<u8>,
    from: impl Fn(usize) -> String,
) -> Result<Vec<LogPart<'o>>, RequestsError> {
    let n = REFUSAL_READ_BYTES;
    let script: String = refusal_logs()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            format!(
                "f={f}; s=$(stat -c %s \"$f\" 2>/dev/null || echo 0); o={}; \
                 if [ \"$o\" -lt 0 ] || [ \"$s\" -lt \"$o\" ]; then o=0; fi; n=$((s - o)); \
                 if [ \"$n\" -gt {n} ]; then n={n}; fi; echo \"$s $o $n\"; \
                 if [ \"$n\" -gt 0 ]; then tail -c +$((o + 1)) \"$f\" | head -c \"$n\"; fi; ",
                from(i)
            )
        })
        .collect::<String>()
        + "true";
    *out = check(
        runner,
        &docker(["exec", &bundle(bottle), "sh", "-c", &script]),
    )?
    .stdout;
    let bad = |m: &str| RequestsError::BadAnswer {
        bottle: bottle.into(),
        message: m.into(),
    };
    let mut rest: &[u8] = out;
    let mut parts = Vec::new();
    for _ in 0..refusal_logs().len() {
        let nl = rest
            .iter()
            .position(|b| *b == b'\n')
            .ok_or_else(|| bad("no audit log header"))?;
        let head = std::str::from_utf8(&rest[..nl]).map_err(|_| bad("bad audit log header"))?;
        let nums: Vec<u64> = head
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map_err(|_| bad("bad audit log header"))?;
        let [_size, start, len] = nums[..] else {
            return Err(bad("bad audit log header"));
        };
        rest = &rest[nl + 1..];
        let len = (len as usize).min(rest.len());
        parts.push(LogPart {
            start,
            body: &rest[..len],
        });
        rest = &rest[len..];
    }
    Ok(parts)
}

/// A running bottle's recent refusals (grouped, most recent last, at most `limit`), read
/// through the engine from the tails of egress's and the git-gate's audit logs: bottle, host,
/// method, path, layer, rule, count, and the reason the agent got.
pub fn recent_refusals(
    runner: &dyn Runner,
    bottle: &str,
    limit: usize,
) -> Result<Vec<RefusalEvent>, RequestsError> {
    let mut out = Vec::new();
    let parts = read_logs(runner, bottle, &mut out, |_| {
        format!("$((s - {REFUSAL_READ_BYTES}))")
    })?;
    let mut events = Vec::new();
    for part in parts {
        let mut text = String::from_utf8_lossy(part.body).into_owned();
        if part.start > 0 {
            // The first line was cut by the read.
            text = text
                .split_once('\n')
                .map(|x| x.1.to_string())
                .unwrap_or_default();
        }
        events.extend(refusals::from_audit_text(bottle, &text, limit));
    }
    // Times are RFC 3339 in UTC with milliseconds: their text order is their time order.
    events.sort_by(|a, b| a.time.cmp(&b.time));
    let skip = events.len().saturating_sub(limit);
    Ok(events.split_off(skip))
}

/// Follow a running bottle's refusals: the ones logged after `from` (start with the default
/// cursor) in egress's and the git-gate's audit logs, each on its own (`count` 1), in time
/// order, and the cursor to pass next time. A log that shrank (a new bundle under the same
/// name) is read from its start again. Reads at most 256 KiB of each log per call; the rest
/// comes with the next call.
pub fn follow_refusals(
    runner: &dyn Runner,
    bottle: &str,
    from: RefusalCursor,
) -> Result<(Vec<RefusalEvent>, RefusalCursor), RequestsError> {
    let offsets = [from.egress, from.git_gate];
    let mut out = Vec::new();
    let parts = read_logs(runner, bottle, &mut out, |i| offsets[i].to_string())?;
    let mut events = Vec::new();
    let mut next = [0u64; 2];
    for (i, part) in parts.iter().enumerate() {
        // Only whole lines; a partly written last line comes next time.
        let whole = part
            .body
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        for line in String::from_utf8_lossy(&part.body[..whole]).lines() {
            events.extend(refusals::from_audit_text(bottle, line, 1));
        }
        next[i] = part.start + whole as u64;
    }
    events.sort_by(|a, b| a.time.cmp(&b.time));
    Ok((
        events,
        RefusalCursor {
            egress: next[0],
            git_gate: next[1],
        },
    ))
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

    /// Runs the read script in a real `sh`, with the bundle's log paths moved into `dir`:
    /// the framing is exercised byte for byte, not imitated.
    fn logs_runner(dir: &Path) -> RecordingRunner {
        let dir = dir.to_path_buf();
        RecordingRunner::new(move |spec| {
            let mut script = spec.argv().last().unwrap().to_string();
            for f in refusal_logs() {
                let name = Path::new(&f).file_name().unwrap().to_str().unwrap();
                script = script.replace(&f, &dir.join(name).display().to_string());
            }
            let out = std::process::Command::new("sh")
                .args(["-c", &script])
                .output()
                .unwrap();
            Output {
                code: out.status.code().unwrap_or(1),
                stdout: out.stdout,
                stderr: out.stderr,
            }
        })
    }

    fn audit_line(host: &str, allowed: bool, layer: &str, rule: &str, time: &str) -> String {
        use crate::sidecar::egress::audit::{Audit, Decision as Line};
        Audit::line(&Line {
            time: Some(time.into()),
            host: host.into(),
            method: if layer == "git-gate" { "PUSH" } else { "GET" }.into(),
            path: "/p".into(),
            allowed,
            layer: layer.into(),
            rule: rule.into(),
            status: if allowed { 200 } else { 403 },
            ..Line::default()
        })
    }

    #[test]
    fn refusals_of_both_gates_are_read_and_followed_through_the_engine() {
        let dir = tempfile::tempdir().unwrap();
        let egress = dir.path().join("egress-audit.jsonl");
        let git = dir.path().join("git-gate-audit.jsonl");
        let deny = |host, t| audit_line(host, false, "allowlist", "host-not-in-routes", t);
        let log = [
            deny("a.test", "2026-01-01T00:00:01.000Z"),
            audit_line(
                "ok.test",
                true,
                "egress",
                "route",
                "2026-01-01T00:00:02.000Z",
            ),
            deny("a.test", "2026-01-01T00:00:04.000Z"),
        ]
        .concat();
        let first = log.len() as u64;
        let partial = format!("{log}{}", &deny("b.test", "2026-01-01T00:00:09.000Z")[..10]);
        std::fs::write(&egress, &partial).unwrap();
        let runner = logs_runner(dir.path());

        // No git-gate log (a bottle without repos): egress's refusals alone.
        let recent = recent_refusals(&runner, "dev-1", 10).unwrap();
        assert_eq!(recent.len(), 1);
        assert_eq!((recent[0].host.as_str(), recent[0].count), ("a.test", 2));
        assert_eq!(recent[0].bottle, "dev-1");
        assert_eq!(recent[0].layer, "allowlist");
        let (events, next) = follow_refusals(&runner, "dev-1", RefusalCursor::default()).unwrap();
        let hosts: Vec<&str> = events.iter().map(|e| e.host.as_str()).collect();
        assert_eq!(hosts, ["a.test", "a.test"], "the cut last line waits");
        assert_eq!(
            next,
            RefusalCursor {
                egress: first,
                git_gate: 0
            }
        );
        let (events, again) = follow_refusals(&runner, "dev-1", next).unwrap();
        assert!(events.is_empty());
        assert_eq!(again, next);

        // The git-gate refuses a push: the same event type, in time order with egress's.
        let push = audit_line(
            "git.test",
            false,
            "git-gate",
            "ref-force",
            "2026-01-01T00:00:03.000Z",
        );
        std::fs::write(&git, &push).unwrap();
        let recent = recent_refusals(&runner, "dev-1", 10).unwrap();
        let seen: Vec<(&str, &str)> = recent
            .iter()
            .map(|e| (e.host.as_str(), e.layer.as_str()))
            .collect();
        assert_eq!(seen, [("git.test", "git-gate"), ("a.test", "allowlist")]);
        let git_event = &recent[0];
        assert!(git_event.is_git());
        assert_eq!(
            (git_event.method.as_str(), git_event.rule.as_str()),
            ("PUSH", "ref-force")
        );
        assert!(
            git_event.reason.contains("ref policy"),
            "{}",
            git_event.reason
        );
        assert_eq!(
            recent_refusals(&runner, "dev-1", 1).unwrap()[0].host,
            "a.test"
        );
        let (events, after) = follow_refusals(&runner, "dev-1", next).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].layer, "git-gate");
        assert_eq!(
            after,
            RefusalCursor {
                egress: first,
                git_gate: push.len() as u64
            }
        );

        // A log that shrank (a new bundle) is read from its start again.
        std::fs::write(&egress, deny("c.test", "2026-01-01T00:00:10.000Z")).unwrap();
        let (events, _) = follow_refusals(&runner, "dev-1", after).unwrap();
        assert_eq!(
            events.iter().map(|e| e.host.as_str()).collect::<Vec<_>>(),
            ["c.test"]
        );

        let calls = runner.calls();
        assert!(
            calls
                .iter()
                .all(|c| c.argv()[..3] == ["docker", "exec", "bot-bottle-sidecars-dev-1"])
        );
    }

    #[test]
    fn a_long_log_is_read_from_its_tail_without_the_cut_line() {
        let dir = tempfile::tempdir().unwrap();
        let one = audit_line(
            "a.test",
            false,
            "allowlist",
            "host-not-in-routes",
            "2026-01-01T00:00:01.000Z",
        );
        let n = (REFUSAL_READ_BYTES as usize / one.len()) + 10;
        std::fs::write(dir.path().join("egress-audit.jsonl"), one.repeat(n)).unwrap();
        let runner = logs_runner(dir.path());
        let recent = recent_refusals(&runner, "dev-1", 10).unwrap();
        assert_eq!(recent.len(), 1);
        assert_eq!(
            recent[0].count as usize,
            REFUSAL_READ_BYTES as usize / one.len()
        );
        let (events, next) = follow_refusals(&runner, "dev-1", RefusalCursor::default()).unwrap();
        assert_eq!(events.len(), REFUSAL_READ_BYTES as usize / one.len());
        assert_eq!(
            next.egress as usize,
            events.len() * one.len(),
            "the rest comes next time"
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

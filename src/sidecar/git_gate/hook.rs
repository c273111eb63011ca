//! The pre-receive hook: ref policy, then the secret scan of every new commit, then the push
//! to the upstream. Only when the upstream accepted does the hook succeed, so the mirror's refs
//! (what later fetches serve) never run ahead of the upstream.
//!
//! The hook is the gate's own binary (`bot-bottle-git-gate pre-receive`), installed through
//! `core.hooksPath` on the gate's command line; its context comes from environment variables
//! the daemon sets. Nothing in the pushed objects, and no repo file the agent could write,
//! is read as configuration.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::scan::Scanner;
use crate::sidecar::egress::audit::{Audit, Decision};

use super::GateError;
use super::config::{RepoConfig, ReposFile};
use super::policy::RefUpdate;
use super::refusal::{GITLEAKS_RULE, LAYER, scan_rule};
use super::scan::RangeScan;
use super::upstream::GitEnv;

pub(crate) const ENV_REPOS: &str = "BB_GATE_REPOS";
pub(crate) const ENV_REPO: &str = "BB_GATE_REPO";
pub(crate) const ENV_STATE: &str = "BB_GATE_STATE";
pub(crate) const ENV_AUDIT: &str = "BB_GATE_AUDIT";
pub(crate) const ENV_GIT: &str = "BB_GATE_GIT";
pub(crate) const ENV_SSH: &str = "BB_GATE_SSH";
/// The gitleaks program, set only when the gate found one at start.
pub(crate) const ENV_GITLEAKS: &str = "BB_GATE_GITLEAKS";

/// Prefix of every line the agent sees from the gate (git shows it after `remote:`).
pub(crate) const PREFIX: &str = "bot-bottle git-gate:";

struct Ctx {
    repo: RepoConfig,
    env: GitEnv,
    audit: Audit,
    host: String,
    gitleaks: Option<PathBuf>,
}

fn var(name: &str) -> Result<String, GateError> {
    std::env::var(name).map_err(|_| GateError::HookContext(name.to_string()))
}

fn context() -> Result<Ctx, GateError> {
    let repos = ReposFile::load(&PathBuf::from(var(ENV_REPOS)?))?;
    let name = var(ENV_REPO)?;
    let repo = repos
        .get(&name)
        .cloned()
        .ok_or_else(|| GateError::HookContext(format!("{ENV_REPO}={name}")))?;
    let audit_path = std::env::var(ENV_AUDIT).ok().filter(|s| !s.is_empty());
    let audit = Audit::open(audit_path.as_deref().map(std::path::Path::new))
        .map_err(|e| GateError::HookContext(format!("audit log: {e}")))?;
    let env = GitEnv {
        git: var(ENV_GIT)?,
        ssh: var(ENV_SSH)?,
        state: PathBuf::from(var(ENV_STATE)?),
    };
    let host = crate::plan::parse_ssh_url(&repo.url)
        .map(|(_, h, _, _)| h)
        .unwrap_or_default();
    let gitleaks = std::env::var_os(ENV_GITLEAKS)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    Ok(Ctx {
        repo,
        env,
        audit,
        host,
        gitleaks,
    })
}

/// Run the hook: `updates` is the hook's stdin, `out` where the agent-visible lines go.
/// Returns the exit code (0 accepts the push).
pub fn pre_receive(updates: impl BufRead, out: &mut dyn Write) -> i32 {
    let ctx = match context() {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(
                out,
                "{PREFIX} push refused: the gate is misconfigured ({e})"
            );
            return 1;
        }
    };
    match judge_and_forward(&ctx, updates, out) {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(out, "{PREFIX} push refused: {e}");
            record(&ctx, "", false, LAYER, "gate-error", 500);
            1
        }
    }
}

fn record(ctx: &Ctx, refname: &str, allowed: bool, layer: &str, rule: &str, status: u16) {
    let path = format!("/{}.git/{refname}", ctx.repo.name);
    ctx.audit.record(&Decision {
        host: ctx.host.as_str().into(),
        method: "PUSH".into(),
        path: crate::sidecar::egress::audit::log_path(&path).into(),
        allowed,
        layer: layer.into(),
        rule: rule.into(),
        status,
        ..Decision::default()
    });
}

fn judge_and_forward(
    ctx: &Ctx,
    updates: impl BufRead,
    out: &mut dyn Write,
) -> Result<i32, GateError> {
    let mut list = Vec::new();
    for line in updates.lines() {
        let line = line.map_err(|e| GateError::HookContext(format!("stdin: {e}")))?;
        let u = RefUpdate::parse(line.trim_end())
            .ok_or_else(|| GateError::HookContext("malformed ref update".into()))?;
        list.push(u);
    }
    // 1. Ref policy, before anything is read from the pushed objects.
    let mut forced = Vec::with_capacity(list.len());
    for u in &list {
        let ff = !u.is_create() && !u.is_delete() && is_ancestor(&ctx.env.git, &u.old, &u.new)?;
        forced.push(!u.is_create() && !ff);
        if let Err(refusal) = ctx.repo.refs.judge(u, ff) {
            let _ = writeln!(out, "{PREFIX} push refused: {}", refusal.message);
            record(ctx, &u.name, false, LAYER, refusal.rule, 403);
            return Ok(1);
        }
    }
    // 2. The scan of every new commit (and annotated tag) of the range.
    let news: Vec<String> = list.iter().map(|u| u.new.clone()).collect();
    let scan = RangeScan {
        git: &ctx.env.git,
        scanner: Scanner::new(),
    };
    if let Some(hit) = scan.scan(&news)? {
        let _ = writeln!(
            out,
            "{PREFIX} push refused: secret scan found {hit}. Remove it from every commit of the \
             push (rewrite the history, e.g. `git rebase -i`), then push again; nothing reached the upstream."
        );
        let refname = list.first().map(|u| u.name.as_str()).unwrap_or("");
        record(
            ctx,
            refname,
            false,
            LAYER,
            &scan_rule(hit.finding.rule),
            403,
        );
        return Ok(1);
    }
    // 2b. gitleaks, when the bundle has it: it can add a refusal, never lift one.
    if let Some(program) = &ctx.gitleaks {
        let mirror = ctx.env.mirror(&ctx.repo.name);
        let report = ctx
            .env
            .state
            .join(format!("gitleaks-{}.json", std::process::id()));
        if let Some(leak) = super::gitleaks::check(program, &mirror, &news, &report)? {
            let _ = writeln!(
                out,
                "{PREFIX} push refused: second-opinion scan found {leak}. Remove it from every \
                 commit of the push, then push again; nothing reached the upstream."
            );
            let refname = list.first().map(|u| u.name.as_str()).unwrap_or("");
            record(ctx, refname, false, LAYER, GITLEAKS_RULE, 403);
            return Ok(1);
        }
    }
    // 3. Forward to the upstream; its verdict is the push's verdict.
    // `pack.window=0`: the received objects keep the deltas the agent's git already chose
    // (reused as they are); searching for new ones again would only repeat that work.
    let mut cmd = Command::new(&ctx.env.git);
    cmd.envs(ctx.env.vars(&ctx.repo))
        .args(["-c", "pack.window=0", "push", "--quiet", &ctx.repo.url])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // A non-fast-forward update (allowed by the policy, or it would have stopped above) is
    // forced only while the upstream still has what the agent replaced: never over commits
    // the agent did not see.
    for (u, forced) in list.iter().zip(&forced) {
        if *forced {
            cmd.arg(format!("--force-with-lease={}:{}", u.name, u.old));
        }
    }
    for u in &list {
        cmd.arg(format!("{}:{}", u.new, u.name));
    }
    let result = cmd.output().map_err(|source| GateError::Spawn {
        program: ctx.env.git.clone(),
        source,
    })?;
    let _ = out.write_all(&result.stdout);
    let _ = out.write_all(&result.stderr);
    let refs: Vec<&str> = list.iter().map(|u| u.name.as_str()).collect();
    if result.status.success() {
        for r in &refs {
            record(ctx, r, true, "upstream", "pushed", 200);
        }
        Ok(0)
    } else {
        let _ = writeln!(
            out,
            "{PREFIX} the upstream {} refused or could not be reached (see above); nothing was pushed",
            ctx.host
        );
        for r in &refs {
            record(ctx, r, false, LAYER, "upstream-refused", 502);
        }
        Ok(1)
    }
}

fn is_ancestor(git: &str, old: &str, new: &str) -> Result<bool, GateError> {
    let status = Command::new(git)
        .args(["merge-base", "--is-ancestor", old, new])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|source| GateError::Spawn {
            program: git.to_string(),
            source,
        })?;
    Ok(status.success())
}

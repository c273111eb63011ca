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

use crate::runner::{ProcessSpec, RealRunner, Runner};
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
    match judge_and_forward(&ctx, &RealRunner, updates, out) {
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

/// Why a push is refused: the ref the audit line names, its rule, and what the agent reads.
#[derive(Debug)]
struct Refused {
    refname: String,
    rule: String,
    message: String,
}

fn judge_and_forward(
    ctx: &Ctx,
    runner: &dyn Runner,
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
    match judge(ctx, runner, &list)? {
        Err(refused) => {
            let _ = writeln!(out, "{PREFIX} push refused: {}", refused.message);
            record(ctx, &refused.refname, false, LAYER, &refused.rule, 403);
            Ok(1)
        }
        Ok(forced) => forward(ctx, runner, &list, &forced, out),
    }
}

/// The gate's policy over one push, in order: the ref rules (before anything is read from the
/// pushed objects), the scan of every new commit and annotated tag of the range, then
/// gitleaks when the bundle has it (it can add a refusal, never lift one). On acceptance,
/// which updates are non-fast-forward.
fn judge(
    ctx: &Ctx,
    runner: &dyn Runner,
    list: &[RefUpdate],
) -> Result<Result<Vec<bool>, Refused>, GateError> {
    let mut forced = Vec::with_capacity(list.len());
    for u in list {
        let ff = !u.is_create() && !u.is_delete() && is_ancestor(runner, &ctx.env.git, u)?;
        forced.push(!u.is_create() && !ff);
        if let Err(refusal) = ctx.repo.refs.judge(u, ff) {
            return Ok(Err(Refused {
                refname: u.name.clone(),
                rule: refusal.rule.to_string(),
                message: refusal.message,
            }));
        }
    }
    let first = list.first().map(|u| u.name.clone()).unwrap_or_default();
    let news: Vec<String> = list.iter().map(|u| u.new.clone()).collect();
    let scan = RangeScan {
        git: &ctx.env.git,
        scanner: Scanner::new(),
    };
    if let Some(hit) = scan.scan(&news)? {
        return Ok(Err(Refused {
            refname: first,
            rule: scan_rule(hit.finding.rule),
            message: format!(
                "secret scan found {hit}. Remove it from every commit of the push (rewrite the \
                 history, e.g. `git rebase -i`), then push again; nothing reached the upstream."
            ),
        }));
    }
    if let Some(program) = &ctx.gitleaks {
        let mirror = ctx.env.mirror(&ctx.repo.name);
        let report = ctx
            .env
            .state
            .join(format!("gitleaks-{}.json", std::process::id()));
        if let Some(leak) = super::gitleaks::check(program, &mirror, &news, &report)? {
            return Ok(Err(Refused {
                refname: first,
                rule: GITLEAKS_RULE.into(),
                message: format!(
                    "second-opinion scan found {leak}. Remove it from every commit of the \
                     push, then push again; nothing reached the upstream."
                ),
            }));
        }
    }
    Ok(Ok(forced))
}

/// The push of an accepted update list to the upstream, as a value.
///
/// `pack.window=0`: the received objects keep the deltas the agent's git already chose
/// (reused as they are); searching for new ones again would only repeat that work. A
/// non-fast-forward update (the policy allowed it) is forced only while the upstream still has
/// what the agent replaced: never over commits the agent did not see.
fn push_spec(env: &GitEnv, repo: &RepoConfig, list: &[RefUpdate], forced: &[bool]) -> ProcessSpec {
    let mut spec = ProcessSpec::new(env.git.as_str()).args([
        "-c",
        "pack.window=0",
        "push",
        "--quiet",
        repo.url.as_str(),
    ]);
    for (k, v) in env.vars(repo) {
        spec = spec.env(k, v);
    }
    for (u, forced) in list.iter().zip(forced) {
        if *forced {
            spec = spec.arg(format!("--force-with-lease={}:{}", u.name, u.old));
        }
    }
    for u in list {
        spec = spec.arg(format!("{}:{}", u.new, u.name));
    }
    spec
}

/// Forwards the push; the upstream's verdict is the push's verdict, and what it said is passed
/// on to the agent.
fn forward(
    ctx: &Ctx,
    runner: &dyn Runner,
    list: &[RefUpdate],
    forced: &[bool],
    out: &mut dyn Write,
) -> Result<i32, GateError> {
    let spec = push_spec(&ctx.env, &ctx.repo, list, forced);
    let result = runner
        .run(&spec)
        .map_err(|e| GateError::spawn(&ctx.env.git, e))?;
    let _ = out.write_all(&result.stdout);
    let _ = out.write_all(&result.stderr);
    if result.success() {
        for u in list {
            record(ctx, &u.name, true, "upstream", "pushed", 200);
        }
        Ok(0)
    } else {
        let _ = writeln!(
            out,
            "{PREFIX} the upstream {} refused or could not be reached (see above); nothing was pushed",
            ctx.host
        );
        for u in list {
            record(ctx, &u.name, false, LAYER, "upstream-refused", 502);
        }
        Ok(1)
    }
}

/// Is the update a fast-forward (`old` an ancestor of `new`)? An unknown object is not.
fn is_ancestor(runner: &dyn Runner, git: &str, u: &RefUpdate) -> Result<bool, GateError> {
    let spec = ProcessSpec::new(git).args(["merge-base", "--is-ancestor", &u.old, &u.new]);
    let out = runner.run(&spec).map_err(|e| GateError::spawn(git, e))?;
    Ok(out.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(old: char, new: char, name: &str) -> RefUpdate {
        RefUpdate {
            old: old.to_string().repeat(40),
            new: new.to_string().repeat(40),
            name: name.into(),
        }
    }

    #[test]
    fn the_push_forces_only_what_the_policy_marked_and_only_under_a_lease() {
        let env = GitEnv {
            git: "/usr/bin/git".into(),
            ssh: "/usr/bin/ssh".into(),
            state: PathBuf::from("/state"),
        };
        let repo = RepoConfig {
            name: "app".into(),
            url: "ssh://git@example.com/org/app.git".into(),
            identity: PathBuf::from("/run/keys/app"),
            host_key: None,
            refs: Default::default(),
        };
        let list = [
            update('a', 'b', "refs/heads/main"),
            update('c', 'd', "refs/heads/wip"),
        ];
        let spec = push_spec(&env, &repo, &list, &[false, true]);
        let argv = spec.argv();
        assert_eq!(
            argv[..6],
            [
                "/usr/bin/git",
                "-c",
                "pack.window=0",
                "push",
                "--quiet",
                repo.url.as_str()
            ]
        );
        let leases: Vec<&&str> = argv.iter().filter(|a| a.starts_with("--force")).collect();
        assert_eq!(
            leases,
            [&format!("--force-with-lease=refs/heads/wip:{}", "c".repeat(40)).as_str()]
        );
        assert_eq!(
            argv[argv.len() - 2..],
            [
                format!("{}:refs/heads/main", "b".repeat(40)).as_str(),
                format!("{}:refs/heads/wip", "d".repeat(40)).as_str()
            ]
        );
        // the upstream is reached only with the gate's own ssh settings and no prompt
        assert_eq!(
            spec.env.get("GIT_TERMINAL_PROMPT").map(String::as_str),
            Some("0")
        );
        assert!(spec.env["GIT_SSH_COMMAND"].contains("IdentitiesOnly=yes"));
        // the identity file is named only in the ssh command, in the env
        assert!(!argv.iter().any(|a| a.contains("/run/keys/app")));
    }

    #[test]
    fn an_update_that_git_cannot_relate_is_not_a_fast_forward() {
        let rec = crate::runner::RecordingRunner::new(|_| {
            crate::runner::Output::failed(128, "bad object")
        });
        let u = update('a', 'b', "refs/heads/main");
        assert!(!is_ancestor(&rec, "git", &u).unwrap());
        assert_eq!(
            rec.calls()[0].argv(),
            ["git", "merge-base", "--is-ancestor", &u.old, &u.new]
        );
    }
}

//! `requests`, `approve`, `reject`: the operator answers what agents asked for through
//! supervise. Each command first pulls new requests out of the running bottles (see
//! `crate::requests`), so the queue is current.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::manifest::Manifest;
use crate::manifest::edit::{Edit, add_route};
use crate::requests::{DockerLink, Queue, RefusalCursor, decide, summary, sync};
use crate::runner::RealRunner;
use crate::sidecar::supervise::refusals::RefusalEvent;
use crate::sidecar::supervise::spool::{Decision, Lifetime, Verdict, now_rfc3339};
use crate::sidecar::supervise::validate::RouteProposal;

fn queue() -> anyhow::Result<Queue> {
    Ok(Queue::open(&super::context::home_root()?)?)
}

fn pull(q: &Queue, link: &DockerLink<'_>) -> anyhow::Result<()> {
    for w in sync(q, link)? {
        super::warn(&format!("cannot read requests from {w}"));
    }
    Ok(())
}

/// `bot-bottle requests [--json]`: undecided requests, oldest first. With `--refusals`, the
/// running bottles' refusals instead.
pub(crate) fn list(args: &super::RequestsArgs) -> anyhow::Result<ExitCode> {
    if args.refusals {
        return refusals(args);
    }
    let q = queue()?;
    let runner = RealRunner;
    pull(&q, &DockerLink { runner: &runner })?;
    let pending = q.pending()?;
    if args.json {
        let v: Vec<_> = pending
            .iter()
            .map(|e| serde_json::json!({"bottle": e.bottle, "request": e.request}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    if pending.is_empty() {
        super::say("no pending requests");
    }
    for e in &pending {
        println!(
            "{}\t{}\t{}\t{}",
            e.request.id,
            e.bottle,
            summary(&e.request),
            e.request.reason
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `bot-bottle approve <id> [--for D | --once | --session | --save]`.
pub(crate) fn approve(args: &super::ApproveArgs) -> anyhow::Result<ExitCode> {
    let lifetime = match &args.for_ {
        _ if args.once => Lifetime::Once,
        _ if args.save => Lifetime::Saved,
        Some(d) => {
            let d: Duration = humantime::parse_duration(d).map_err(|e| {
                anyhow::anyhow!("`--for {d}`: {e}; give a duration such as 10m or 1h")
            })?;
            anyhow::ensure!(d.as_secs() > 0, "`--for` must be at least one second");
            Lifetime::Seconds(d.as_secs())
        }
        None => Lifetime::Session,
    };
    let q = queue()?;
    let runner = RealRunner;
    let link = DockerLink { runner: &runner };
    // The operator usually has the id from `requests` or the dashboard, which queued it: then
    // the pull (a `docker ps` and two `docker exec` per bottle) is skipped and the approval
    // costs one `docker exec`.
    if q.get(&args.id).is_err() {
        pull(&q, &link)?;
    }
    // `--save`: the change to the bottle file is shown and agreed to before anything is
    // decided, so a declined save decides nothing.
    let save = if args.save {
        match plan_save(&q, &args.id, args.yes)? {
            Some(s) => Some(s),
            None => {
                super::say("not approved");
                return Ok(ExitCode::from(1));
            }
        }
    } else {
        None
    };
    let entry = q.get(&args.id)?;
    let image = match &entry.request.change {
        crate::sidecar::supervise::spool::Change::Image { dockerfile } => Some(dockerfile.clone()),
        _ => None,
    };
    let d = Decision {
        id: args.id.clone(),
        verdict: Verdict::Approved,
        decided_at: now_rfc3339(),
        lifetime: image.is_none().then_some(lifetime),
        route: None,
        note: image
            .as_ref()
            .map(|_| "the session ends now; the operator resumes it on the new image".to_string()),
    };
    decide(&q, &link, &d)?;
    super::say(&format!("approved {}", args.id));
    if let Some(dockerfile) = image {
        let root = super::context::home_root()?;
        let applied =
            crate::requests::apply_image_change(&runner, &root, &entry.bottle, &dockerfile)?;
        q.audit(
            &entry.bottle,
            "applied",
            &args.id,
            &format!("image change; {}", applied.dockerfile.display()),
        )?;
        if !applied.transcript {
            super::warn("no transcript was copied out of the agent");
        }
        super::say(&format!(
            "bottle `{}` was stopped and its state kept; resume it on the new image with `{}`",
            entry.bottle, applied.resume
        ));
    }
    if let Some((path, text)) = save {
        write_bottle_file(&path, &text).with_context(|| {
            format!(
                "the route is live for this session, but `{}` could not be written",
                path.display()
            )
        })?;
        let entry = q.get(&args.id)?;
        q.audit(
            &entry.bottle,
            "saved",
            &args.id,
            &format!("{} to {}", summary(&entry.request), path.display()),
        )?;
        super::say(&format!("saved the route to {}", path.display()));
    }
    Ok(ExitCode::SUCCESS)
}

/// The bottle file of the request's bottle and its new text, after showing the diff and
/// (on a terminal, without `--yes`) asking. `None` when the operator declined.
fn plan_save(
    q: &Queue,
    id: &str,
    yes: bool,
) -> anyhow::Result<Option<(std::path::PathBuf, String)>> {
    use crate::sidecar::supervise::spool::Change;
    let entry = q.get(id)?;
    let Change::Route(route) = &entry.request.change else {
        anyhow::bail!("`--save` applies to route requests; request `{id}` is an image change");
    };
    let root = super::context::home_root()?;
    let manifest = super::context::load_manifest()?;
    let RouteSave {
        path,
        before: text,
        edit,
    } = route_save(&root, &manifest, &entry.bottle, route)?;
    if !edit.changed {
        super::say(&format!(
            "{} already allows this route; approving for the session",
            path.display()
        ));
        return Ok(Some((path, text)));
    }
    eprintln!("--- {}", path.display());
    eprint!("{}", crate::manifest::edit::diff(&text, &edit.text));
    if edit.rewritten {
        super::warn(
            "this layout is rewritten whole: the frontmatter's comments and formatting are not kept",
        );
    }
    if !yes {
        if !std::io::stdin().is_terminal() {
            anyhow::bail!(
                "cannot ask for confirmation without a terminal; pass `--yes` to write the bottle file"
            );
        }
        eprint!(
            "bot-bottle: write this change to {}? [y/N] ",
            path.display()
        );
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("cannot read the answer")?;
        if !matches!(line.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
            return Ok(None);
        }
    }
    Ok(Some((path, edit.text)))
}

/// A route saved into the bottle file a running bottle was started from: the file, its text
/// now, and the edit.
#[derive(Debug)]
pub(super) struct RouteSave {
    pub(super) path: PathBuf,
    pub(super) before: String,
    pub(super) edit: Edit,
}

/// Works out the save of `route` for `bottle` (a running bottle's identity) without writing
/// anything: the one place that decides whether a route can be saved to a bottle file, for
/// `approve --save` and the dashboard.
pub(super) fn route_save(
    root: &Path,
    manifest: &Manifest,
    bottle: &str,
    route: &RouteProposal,
) -> anyhow::Result<RouteSave> {
    anyhow::ensure!(
        route.methods.is_empty(),
        "a bottle file's routes cannot limit methods ({}); approve it for the session or for some minutes instead",
        route.methods.join(", ")
    );
    let meta = crate::state::load_metadata(root, bottle)
        .with_context(|| format!("cannot tell which bottle file `{bottle}` came from"))?;
    let file = manifest.bottles.get(&meta.bottle).ok_or_else(|| {
        anyhow::anyhow!(
            "bottle `{}` is not in this home (run from the directory the bottle started in)",
            meta.bottle
        )
    })?;
    let path = file.path.clone();
    let before = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let edit = add_route(
        &path.display().to_string(),
        &before,
        &route.host,
        &route.path_prefixes,
    )?;
    Ok(RouteSave { path, before, edit })
}

/// Replace the bottle file whole (written beside it, then renamed), keeping its mode.
pub(super) fn write_bottle_file(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    if std::fs::read_to_string(path).is_ok_and(|t| t == text) {
        return Ok(());
    }
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(text.as_bytes())?;
    if let Ok(meta) = std::fs::metadata(path) {
        tmp.as_file().set_permissions(meta.permissions())?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// `bot-bottle reject <id> [--reason …]`.
pub(crate) fn reject(args: &super::RejectArgs) -> anyhow::Result<ExitCode> {
    let note = args
        .reason
        .as_deref()
        .map(crate::sidecar::supervise::validate::reason)
        .transpose()
        .map_err(|m| anyhow::anyhow!("--reason: {m}"))?;
    let q = queue()?;
    let runner = RealRunner;
    let link = DockerLink { runner: &runner };
    pull(&q, &link)?;
    let d = Decision {
        id: args.id.clone(),
        verdict: Verdict::Rejected,
        decided_at: now_rfc3339(),
        lifetime: None,
        route: None,
        note,
    };
    decide(&q, &link, &d)?;
    super::say(&format!("rejected {}", args.id));
    Ok(ExitCode::SUCCESS)
}

/// How often `requests --refusals --follow` reads the bottles.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);
/// Most refusals `requests --refusals` shows per bottle.
const REFUSALS_SHOWN: usize = 50;

/// The running bottles with sidecars (all, or the one asked for).
fn refusal_bottles(link: &DockerLink<'_>, only: Option<&str>) -> anyhow::Result<Vec<String>> {
    let all = crate::requests::BundleLink::bottles(link)?;
    Ok(match only {
        Some(b) if all.iter().any(|x| x == b) => vec![b.to_string()],
        Some(b) => anyhow::bail!("bottle `{b}` is not running; see `bot-bottle list active`"),
        None => all,
    })
}

/// One refusal in a line: `time  bottle  method host+path  xcount  layer/rule`.
fn refusal_line(e: &RefusalEvent) -> String {
    format!(
        "{}\t{}\t{} {}{}\tx{}\t{}/{}",
        e.time, e.bottle, e.method, e.host, e.path, e.count, e.layer, e.rule
    )
}

/// `bot-bottle requests --refusals [--bottle ID] [--follow] [--json]`. `--json` prints one
/// array of refusal events, or with `--follow` one event object per line.
fn refusals(args: &super::RequestsArgs) -> anyhow::Result<ExitCode> {
    let runner = RealRunner;
    let link = DockerLink { runner: &runner };
    if !args.follow {
        let mut all = Vec::new();
        for b in refusal_bottles(&link, args.bottle.as_deref())? {
            match crate::requests::recent_refusals(&runner, &b, REFUSALS_SHOWN) {
                Ok(ev) => all.extend(ev),
                Err(e) => super::warn(&format!("cannot read refusals from {b}: {e}")),
            }
        }
        all.sort_by(|a, b| a.time.cmp(&b.time));
        if args.json {
            println!("{}", serde_json::to_string_pretty(&all)?);
        } else if all.is_empty() {
            super::say("no refusals");
        } else {
            for e in &all {
                println!("{}", refusal_line(e));
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut cursors: std::collections::BTreeMap<String, RefusalCursor> = Default::default();
    loop {
        for b in refusal_bottles(&link, args.bottle.as_deref())? {
            let from = cursors.get(&b).copied().unwrap_or_default();
            // A bottle that cannot be read now (stopping) is tried again next round.
            let Ok((events, next)) = crate::requests::follow_refusals(&runner, &b, from) else {
                continue;
            };
            for e in &events {
                if args.json {
                    println!("{}", serde_json::to_string(e)?);
                } else {
                    println!("{}", refusal_line(e));
                }
            }
            cursors.insert(b, next);
        }
        std::io::Write::flush(&mut std::io::stdout())?;
        std::thread::sleep(FOLLOW_EVERY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::LoadOptions;
    use crate::state::{Metadata, StateDir};

    const BEFORE: &str = "---\negress:\n  routes:\n    - host: a.test\n---\nbody\n";

    /// A home with bottle `dev` and a running bottle `dev-1` started from it.
    fn home() -> (tempfile::TempDir, Manifest) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        for d in ["bottles", "agents"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("bottles/dev.md"), BEFORE).unwrap();
        StateDir::create(&root, "dev-1")
            .unwrap()
            .write_metadata(&Metadata {
                identity: "dev-1".into(),
                agent: "worker".into(),
                bottle: "dev".into(),
                cwd: root.clone(),
                copy_cwd: false,
                started_at: "2026-01-01T00:00:00Z".into(),
                compose_project: "bot-bottle-dev-1".into(),
                backend: "docker".into(),
            })
            .unwrap();
        let manifest = crate::manifest::load(&LoadOptions {
            root: root.clone(),
            cwd: root,
        })
        .unwrap();
        (tmp, manifest)
    }

    fn route(methods: &[&str]) -> RouteProposal {
        RouteProposal {
            host: "example.com".into(),
            path_prefixes: vec!["/api/".into()],
            methods: methods.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn the_save_is_worked_out_and_nothing_is_written() {
        let (tmp, manifest) = home();
        let save = route_save(tmp.path(), &manifest, "dev-1", &route(&[])).unwrap();
        assert_eq!(save.path, tmp.path().join("bottles/dev.md"));
        assert_eq!(save.before, BEFORE);
        assert!(save.edit.changed);
        assert!(
            save.edit.text.contains("- host: example.com"),
            "{}",
            save.edit.text
        );
        assert_eq!(std::fs::read_to_string(&save.path).unwrap(), BEFORE);
    }

    #[test]
    fn a_route_a_bottle_file_cannot_hold_is_refused() {
        let (tmp, manifest) = home();
        let err = route_save(tmp.path(), &manifest, "dev-1", &route(&["GET"])).unwrap_err();
        assert!(
            err.to_string().contains("cannot limit methods (GET)"),
            "{err}"
        );
        let err = route_save(tmp.path(), &manifest, "other-1", &route(&[])).unwrap_err();
        assert!(
            err.to_string().contains("cannot tell which bottle file"),
            "{err}"
        );
    }
}

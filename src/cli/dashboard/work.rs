//! The dashboard's I/O, off the UI thread: a poller that reads the queue, the running
//! bottles, their refusals and the agents every second (or when woken), and a worker that
//! carries out the state machine's effects. Both answer with [`Event`]s over a channel, so a
//! slow engine never freezes the screen.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

use anyhow::Context as _;

use super::app::{DiffSource, Draft, Effect, Event, Session, lifetime_text};
use super::tmux;
use crate::backend::docker::docker;
use crate::backend::{self, ActiveBottle, backend_for};
use crate::manifest::{self, LoadOptions};
use crate::plan::BackendKind;
use crate::requests::{BUNDLE_SPOOL, DockerLink, Queue, SUPERVISE_BIN, decide, summary, sync};
use crate::runner::{ProcessSpec, Runner};
use crate::sidecar::supervise::refusals::RefusalEvent;
use crate::sidecar::supervise::spool::{Change, Lifetime, now_rfc3339};
use crate::sidecar::supervise::validate::RouteProposal;

/// How often the poller reads everything when nothing wakes it.
pub(crate) const POLL_EVERY: Duration = Duration::from_secs(1);
/// Refusals kept per bottle.
const REFUSALS_PER_BOTTLE: usize = 50;

/// What both threads need to know about the place the dashboard runs in.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    pub root: PathBuf,
    pub cwd: PathBuf,
    /// This `bot-bottle` binary: sessions and preflights run it.
    pub exe: PathBuf,
    /// `BOT_BOTTLE_*` settings handed to sessions opened in a tmux pane.
    pub env: Vec<(String, String)>,
}

impl Ctx {
    fn session_argv(&self, s: &Session) -> Vec<String> {
        std::iter::once(self.exe.display().to_string())
            .chain(s.args.iter().cloned())
            .collect()
    }

    /// A session run in this terminal.
    pub(crate) fn session_spec(&self, s: &Session) -> ProcessSpec {
        ProcessSpec::new(self.exe.display().to_string())
            .args(s.args.iter().cloned())
            .cwd(&self.cwd)
    }
}

/// Read everything until the receiving side is gone; `wake` cuts a wait short.
pub(crate) fn poll_loop(ctx: &Ctx, runner: &dyn Runner, tx: &Sender<Event>, wake: &Receiver<()>) {
    let mut last_error: Option<String> = None;
    loop {
        let (events, error) = poll_once(ctx, runner);
        for ev in events {
            if tx.send(ev).is_err() {
                return;
            }
        }
        // The same failure every second is said once.
        if error != last_error {
            if let Some(e) = &error {
                if tx.send(Event::Done(Err(e.clone()))).is_err() {
                    return;
                }
            }
            last_error = error;
        }
        match wake.recv_timeout(POLL_EVERY) {
            Ok(()) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// One round of reads: the events to send and the first thing that failed.
pub(crate) fn poll_once(ctx: &Ctx, runner: &dyn Runner) -> (Vec<Event>, Option<String>) {
    let mut events = Vec::new();
    let mut errors = Vec::new();
    // A missing home is no error here (the dashboard is a passive surface): no agents, no
    // queue, and nothing is created.
    if ctx.root.is_dir() {
        if let Ok(m) = manifest::load(&LoadOptions {
            root: ctx.root.clone(),
            cwd: ctx.cwd.clone(),
        }) {
            events.push(Event::Agents(m.agents.keys().cloned().collect()));
        }
        match requests(&ctx.root, runner) {
            Ok(r) => events.push(Event::Requests(r)),
            Err(e) => errors.push(e),
        }
    }
    match backend::list_active(runner) {
        Ok(bottles) => {
            events.push(Event::Refusals(all_refusals(runner, &bottles)));
            events.push(Event::Bottles(bottles));
        }
        Err(e) => errors.push(e.to_string()),
    }
    (events, errors.into_iter().next())
}

fn requests(root: &Path, runner: &dyn Runner) -> Result<Vec<crate::requests::Entry>, String> {
    let q = Queue::open(root).map_err(|e| e.to_string())?;
    // A bottle that cannot be read is skipped; the others still show.
    sync(&q, &DockerLink { runner }).map_err(|e| e.to_string())?;
    q.pending().map_err(|e| e.to_string())
}

/// The newest refusals of every bottle with sidecars, newest first.
fn all_refusals(runner: &dyn Runner, bottles: &[ActiveBottle]) -> Vec<RefusalEvent> {
    let mut all: Vec<RefusalEvent> = bottles
        .iter()
        .filter(|b| b.services.iter().any(|s| s != "agent"))
        .flat_map(|b| bottle_refusals(runner, &b.identity))
        .collect();
    all.sort_by(|a, b| b.time.cmp(&a.time));
    all
}

/// One bottle's recent refusals; a bundle that cannot be read has none to show.
fn bottle_refusals(runner: &dyn Runner, bottle: &str) -> Vec<RefusalEvent> {
    crate::requests::recent_refusals(runner, bottle, REFUSALS_PER_BOTTLE).unwrap_or_default()
}

/// Carry out effects until the sending side is gone; each answer goes to `tx`, then the
/// poller is woken so the panes show the result at once.
pub(crate) fn work_loop(
    ctx: &Ctx,
    runner: &dyn Runner,
    rx: &Receiver<Effect>,
    tx: &Sender<Event>,
    wake: &Sender<()>,
) {
    for effect in rx {
        for ev in run_effect(ctx, runner, effect) {
            if tx.send(ev).is_err() {
                return;
            }
        }
        let _ = wake.send(());
    }
}

fn done(r: anyhow::Result<String>) -> Event {
    Event::Done(r.map_err(|e| {
        e.chain()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(": ")
    }))
}

/// One effect that does not need the terminal.
pub(crate) fn run_effect(ctx: &Ctx, runner: &dyn Runner, effect: Effect) -> Vec<Event> {
    match effect {
        Effect::Decide(d) => vec![done(decide_draft(ctx, runner, d))],
        Effect::LoadDiff { id, source } => {
            let result = match source {
                DiffSource::Save { bottle, route } => save_target(ctx, &bottle, &route)
                    .map(|(_, old, new)| (old, new))
                    .map_err(|e| format!("{e:#}")),
                // Against the Dockerfile of an earlier approved change, if any; a bottle
                // on its provider's image has none, so the requested one is all new.
                DiffSource::Image { bottle, dockerfile } => {
                    let current = crate::state::state_root(&ctx.root)
                        .join(&bottle)
                        .join(crate::plan::REBUILT_DOCKERFILE);
                    Ok((
                        std::fs::read_to_string(current).unwrap_or_default(),
                        dockerfile,
                    ))
                }
            };
            vec![Event::Diff { id, result }]
        }
        Effect::Propose {
            bottle,
            route,
            reason,
        } => vec![done(propose(runner, &bottle, &route, &reason))],
        Effect::Preflight { agent, backend } => {
            let result = preflight(ctx, runner, &agent, backend);
            vec![Event::Preflight {
                agent,
                backend,
                result,
            }]
        }
        Effect::OpenPane { session, pane } => open_pane(ctx, runner, &session, pane.as_deref()),
        Effect::Stop { identity, backend } => {
            vec![done(stop(ctx, runner, &identity, &backend))]
        }
        // The terminal's own effects are the UI thread's.
        Effect::Bell | Effect::Quit | Effect::RunHere(_) => Vec::new(),
    }
}

fn decide_draft(ctx: &Ctx, runner: &dyn Runner, d: Draft) -> anyhow::Result<String> {
    let q = Queue::open(&ctx.root)?;
    let entry = q.get(&d.id)?;
    let lifetime = d.lifetime;
    // Saving: the file's new text is worked out before the decision, so a file that cannot
    // take the route decides nothing.
    let save = match (lifetime, &entry.request.change) {
        (Some(Lifetime::Saved), Change::Route(asked)) => {
            let route = d.route.clone().unwrap_or_else(|| asked.clone());
            Some(save_target(ctx, &entry.bottle, &route)?)
        }
        _ => None,
    };
    let id = d.id.clone();
    let verdict = d.verdict;
    let image = match (verdict, &entry.request.change) {
        (crate::sidecar::supervise::spool::Verdict::Approved, Change::Image { dockerfile }) => {
            Some(dockerfile.clone())
        }
        _ => None,
    };
    let mut decision = d.decision(now_rfc3339());
    if image.is_some() {
        decision.lifetime = None;
        decision.note =
            Some("the session ends now; the operator resumes it on the new image".into());
    }
    decide(&q, &DockerLink { runner }, &decision)?;
    if let Some(dockerfile) = image {
        let applied =
            crate::requests::apply_image_change(runner, &ctx.root, &entry.bottle, &dockerfile)?;
        q.audit(
            &entry.bottle,
            "applied",
            &id,
            &format!("image change; {}", applied.dockerfile.display()),
        )?;
        return Ok(format!(
            "approved {id}: bottle {} stopped with its state kept; resume it on the new image with `{}`",
            entry.bottle, applied.resume
        ));
    }
    if let Some((path, _, text)) = save {
        super::super::requests::write_bottle_file(&path, &text).with_context(|| {
            format!(
                "the route is live for this session, but `{}` could not be written",
                path.display()
            )
        })?;
        q.audit(
            &entry.bottle,
            "saved",
            &id,
            &format!("{} to {}", summary(&entry.request), path.display()),
        )?;
    }
    Ok(match (verdict, lifetime) {
        (crate::sidecar::supervise::spool::Verdict::Rejected, _) => format!("rejected {id}"),
        (_, Some(l)) => format!("approved {id} {}", lifetime_text(l)),
        (_, None) => format!("approved {id}"),
    })
}

/// The bottle file of `bottle` (an identity), its text now, and its text with `route`.
fn save_target(
    ctx: &Ctx,
    bottle: &str,
    route: &RouteProposal,
) -> anyhow::Result<(PathBuf, String, String)> {
    let manifest = manifest::load(&LoadOptions {
        root: ctx.root.clone(),
        cwd: ctx.cwd.clone(),
    })?;
    let save = crate::cli::requests::route_save(&ctx.root, &manifest, bottle, route)?;
    Ok((save.path, save.before, save.edit.text))
}

/// Queue a request in the bottle as if its agent had asked (`bot-bottle-supervise submit`).
fn propose(
    runner: &dyn Runner,
    bottle: &str,
    route: &RouteProposal,
    reason: &str,
) -> anyhow::Result<String> {
    let mut spec = docker([
        "exec",
        &format!("bot-bottle-sidecars-{bottle}"),
        SUPERVISE_BIN,
        "submit",
        "--spool",
        BUNDLE_SPOOL,
        "--host",
        &route.host,
        "--reason",
        reason,
    ]);
    for p in &route.path_prefixes {
        spec = spec.arg("--path").arg(p);
    }
    for m in &route.methods {
        spec = spec.arg("--method").arg(m);
    }
    let out = runner.run_checked(&spec)?;
    let id = out.stdout_str().trim().to_string();
    Ok(format!(
        "requested route {} in {bottle} as {id}",
        route.host
    ))
}

/// The dry run of `start`: its preflight summary, or why it failed.
fn preflight(
    ctx: &Ctx,
    runner: &dyn Runner,
    agent: &str,
    backend: BackendKind,
) -> Result<String, String> {
    let spec = ProcessSpec::new(ctx.exe.display().to_string())
        .args(["start", agent, "--backend", backend.as_str(), "--dry-run"])
        .cwd(&ctx.cwd);
    let out = runner.run(&spec).map_err(|e| e.to_string())?;
    let text = out.stderr_str();
    if out.success() {
        Ok(text)
    } else {
        let last = text.lines().last().unwrap_or("the preflight failed");
        Err(last.trim_start_matches("bot-bottle: error: ").to_string())
    }
}

/// Run a session in the reused right-hand pane, or in a new one when there is none yet (or
/// it was closed).
fn open_pane(ctx: &Ctx, runner: &dyn Runner, s: &Session, pane: Option<&str>) -> Vec<Event> {
    let argv = ctx.session_argv(s);
    if let Some(p) = pane {
        if runner
            .run(&tmux::respawn(p, &argv, &ctx.env, &ctx.cwd))
            .is_ok_and(|o| o.success())
        {
            let _ = runner.run(&tmux::select(p));
            return vec![Event::Done(Ok(format!("{} in pane {p}", s.title)))];
        }
    }
    match runner.run_checked(&tmux::split(&argv, &ctx.env, &ctx.cwd)) {
        Ok(out) => {
            let id = out.stdout_str().trim().to_string();
            vec![
                Event::SessionPane(id.clone()),
                Event::Done(Ok(format!("{} in pane {id}", s.title))),
            ]
        }
        Err(e) => vec![Event::Done(Err(e.to_string()))],
    }
}

/// Whether a resource named `name` belongs to the bottle `id` (names from `plan::names`).
fn belongs(name: &str, id: &str) -> bool {
    let p = crate::plan::PREFIX;
    name == format!("{p}{id}")
        || name.starts_with(&format!("{p}{id}_"))
        || ["sidecars-", "net-", "egress-"]
            .iter()
            .any(|k| name == format!("{p}{k}{id}"))
}

/// Progress of a stop, kept quiet (the screen is the dashboard's).
struct Quiet;

impl backend::Ui for Quiet {
    fn say(&self, _: &str) {}
    fn warn(&self, msg: &str) {
        tracing::warn!("{msg}");
    }
}

/// Stop one bottle. When a `start` owns it (holds its session lock), the stop is that
/// process's to finish: the stop is recorded in the state dir and the agent container is
/// stopped, which ends the session; `start` then snapshots the transcript and logs, keeps the
/// state as after any non-zero exit, tears the bottle down and exits saying why. A bottle
/// nobody owns (its `start` died) is removed here through its backend's cleanup.
fn stop(ctx: &Ctx, runner: &dyn Runner, identity: &str, backend: &str) -> anyhow::Result<String> {
    let kind = BackendKind::parse(backend).unwrap_or(BackendKind::Docker);
    let owned = crate::state::StateDir::open(&ctx.root, identity)
        .ok()
        .filter(crate::state::StateDir::session_running);
    if let (BackendKind::Docker, Some(state)) = (kind, owned) {
        let agent = crate::backend::docker::discover::agent_container(runner, identity)
            .map_err(|_| {
                anyhow::anyhow!(
                    "the agent of bottle `{identity}` is not running; its `start` is ending it already"
                )
            })?;
        state.request_stop()?;
        runner.run_checked(&docker(["stop", "--time", "2", &agent]))?;
        return Ok(format!(
            "stopped {identity}; its `start` saves the transcript, keeps the state and removes the bottle"
        ));
    }
    let b = backend_for(kind, runner);
    let mut plan = b.cleanup_plan()?;
    plan.items.retain(|i| belongs(&i.name, identity));
    anyhow::ensure!(
        !plan.items.is_empty(),
        "nothing of bottle `{identity}` is running any more; see `bot-bottle list active`"
    );
    b.cleanup(&plan, &Quiet)?;
    Ok(format!("stopped {identity}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::{Output, RecordingRunner};

    fn ctx(root: &Path) -> Ctx {
        Ctx {
            root: root.to_path_buf(),
            cwd: root.to_path_buf(),
            exe: PathBuf::from("/bin/bot-bottle"),
            env: vec![("BOT_BOTTLE_HOME".into(), root.display().to_string())],
        }
    }

    #[test]
    fn names_of_one_bottle() {
        assert!(belongs("bot-bottle-dev-1", "dev-1"));
        assert!(belongs("bot-bottle-sidecars-dev-1", "dev-1"));
        assert!(belongs("bot-bottle-net-dev-1", "dev-1"));
        assert!(belongs("bot-bottle-dev-1_sockets", "dev-1"));
        assert!(!belongs("bot-bottle-dev-12", "dev-1"));
        assert!(!belongs("bot-bottle-sidecars-x-dev-1", "dev-1"));
    }

    #[test]
    fn a_pane_is_reused_and_replaced_when_gone() {
        let root = tempfile::tempdir().unwrap();
        let c = ctx(root.path());
        let s = Session {
            title: "attach dev-1".into(),
            args: vec!["exec".into(), "dev-1".into()],
        };
        // No pane yet: split, and the new pane's id comes back.
        let runner = RecordingRunner::new(|_| Output::ok("%5\n"));
        let evs = open_pane(&c, &runner, &s, None);
        assert_eq!(evs[0], Event::SessionPane("%5".into()));
        assert_eq!(runner.calls()[0].argv()[1], "split-window");
        // The pane is there: respawned in place, then focused.
        let runner = RecordingRunner::new(|_| Output::ok(""));
        open_pane(&c, &runner, &s, Some("%5"));
        let calls: Vec<String> = runner
            .calls()
            .iter()
            .map(|c| c.argv()[1].to_string())
            .collect();
        assert_eq!(calls, ["respawn-pane", "select-pane"]);
        // The pane was closed: a new one is split off.
        let runner = RecordingRunner::new(|spec| {
            if spec.argv()[1] == "respawn-pane" {
                Output::failed(1, "can't find pane: %5")
            } else {
                Output::ok("%9\n")
            }
        });
        let evs = open_pane(&c, &runner, &s, Some("%5"));
        assert_eq!(evs[0], Event::SessionPane("%9".into()));
    }

    #[test]
    fn stop_removes_only_that_bottle() {
        let runner = RecordingRunner::new(|spec| {
            let argv = spec.argv().join(" ");
            if argv.starts_with("docker ps") {
                let c = |n: &str, id: &str| {
                    format!(
                        r#"{{"Names":"{n}","State":"running","Labels":"dev.bot-bottle.identity={id}"}}"#
                    )
                };
                Output::ok(format!(
                    "{}\n{}\n{}\n",
                    c("bot-bottle-dev-1", "dev-1"),
                    c("bot-bottle-sidecars-dev-1", "dev-1"),
                    c("bot-bottle-dev-2", "dev-2")
                ))
            } else {
                Output::ok("")
            }
        });
        let root = tempfile::tempdir().unwrap();
        let r = stop(&ctx(root.path()), &runner, "dev-1", "docker");
        let removed: Vec<String> = runner
            .calls()
            .iter()
            .filter(|c| c.argv().contains(&"rm"))
            .map(|c| c.argv().join(" "))
            .collect();
        assert_eq!(r.unwrap(), "stopped dev-1");
        assert!(
            removed
                .iter()
                .any(|c| c.contains("bot-bottle-sidecars-dev-1")),
            "{removed:?}"
        );
        assert!(removed.iter().all(|c| !c.contains("dev-2")), "{removed:?}");
    }

    #[test]
    fn a_bottle_its_start_owns_is_stopped_for_that_start_to_finish() {
        let root = tempfile::tempdir().unwrap();
        let state = crate::state::StateDir::create(root.path(), "dev-1").unwrap();
        let lock = state.hold_session().unwrap();
        let runner = RecordingRunner::new(|spec| {
            if spec.argv().join(" ").starts_with("docker ps") {
                Output::ok(r#"{"Names":"bot-bottle-dev-1","State":"running"}"#)
            } else {
                Output::ok("")
            }
        });
        let m = stop(&ctx(root.path()), &runner, "dev-1", "docker").unwrap();
        assert!(m.starts_with("stopped dev-1; its `start`"), "{m}");
        let calls: Vec<String> = runner.calls().iter().map(|c| c.argv().join(" ")).collect();
        assert_eq!(
            calls,
            [
                "docker ps --filter label=dev.bot-bottle.identity=dev-1 --filter label=dev.bot-bottle.service=agent --format {{json .}}",
                "docker stop --time 2 bot-bottle-dev-1"
            ],
            "nothing removed here: the owner tears down"
        );
        assert!(state.stop_requested());
        // Once the owner is gone, a stop removes the bottle itself.
        drop(lock);
        let runner = RecordingRunner::new(|spec| {
            if spec.argv().join(" ").starts_with("docker ps") {
                Output::ok(
                    r#"{"Names":"bot-bottle-dev-1","State":"running","Labels":"dev.bot-bottle.identity=dev-1"}"#,
                )
            } else {
                Output::ok("")
            }
        });
        stop(&ctx(root.path()), &runner, "dev-1", "docker").unwrap();
        assert!(
            runner
                .calls()
                .iter()
                .any(|c| c.argv().contains(&"rm") && c.argv().contains(&"bot-bottle-dev-1")),
            "{:?}",
            runner.calls()
        );
    }

    #[test]
    fn the_preflight_is_a_dry_run_of_start() {
        let root = tempfile::tempdir().unwrap();
        let c = ctx(root.path());
        let runner = RecordingRunner::new(|_| Output {
            code: 0,
            stdout: Vec::new(),
            stderr: b"bottle dev\n  egress: 2 routes\nbot-bottle: dry run: nothing was created\n"
                .to_vec(),
        });
        let text = preflight(&c, &runner, "dev", BackendKind::Docker).unwrap();
        assert!(text.contains("egress: 2 routes"), "{text}");
        assert_eq!(
            runner.calls()[0].argv(),
            [
                "/bin/bot-bottle",
                "start",
                "dev",
                "--backend",
                "docker",
                "--dry-run"
            ]
        );
        let runner = RecordingRunner::new(|_| {
            Output::failed(
                1,
                "plan line\nbot-bottle: error: no agent named `x`; see `bot-bottle list available`\n",
            )
        });
        assert_eq!(
            preflight(&c, &runner, "x", BackendKind::Docker).unwrap_err(),
            "no agent named `x`; see `bot-bottle list available`"
        );
    }

    #[test]
    fn a_proposal_is_submitted_in_the_bundle() {
        let runner = RecordingRunner::new(|_| Output::ok("0000000000009-00000f\n"));
        let route = RouteProposal {
            host: "pypi.org".into(),
            path_prefixes: vec!["/simple/".into()],
            methods: vec!["GET".into()],
        };
        let m = propose(&runner, "dev-1", &route, "refused GET pypi.org/simple/").unwrap();
        assert_eq!(
            m,
            "requested route pypi.org in dev-1 as 0000000000009-00000f"
        );
        let argv = runner.calls()[0].argv().join(" ");
        assert_eq!(
            argv,
            "docker exec bot-bottle-sidecars-dev-1 /usr/local/bin/bot-bottle-supervise submit \
             --spool /var/lib/bot-bottle/supervise --host pypi.org --reason refused GET pypi.org/simple/ \
             --path /simple/ --method GET"
        );
    }

    #[test]
    fn refusals_come_from_the_bundles_audit_log() {
        let line = r#"{"time":"2026-12-02T10:00:00Z","host":"pypi.org","method":"GET","path":"/simple/","verdict":"deny","layer":"egress","rule":"no-route","status":403}"#;
        // Each log comes as `size start length` and its bytes: egress's two lines, then the
        // git-gate's (none here).
        let log = format!("{line}\n{line}\n");
        let runner = RecordingRunner::new(move |_| {
            Output::ok(format!("{n} 0 {n}\n{log}0 0 0\n", n = log.len()))
        });
        let r = bottle_refusals(&runner, "dev-1");
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].count, 2);
        assert_eq!(r[0].bottle, "dev-1");
        assert_eq!(
            runner.calls()[0].argv()[..3],
            ["docker", "exec", "bot-bottle-sidecars-dev-1"]
        );
        let failing = RecordingRunner::new(|_| Output::failed(1, "No such container"));
        assert!(bottle_refusals(&failing, "dev-1").is_empty());
    }
}

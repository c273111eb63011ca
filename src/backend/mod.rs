//! Backends: where a bottle runs. Each turns a resolved plan into resources through the
//! runner (the only place a process is spawned) and can find and remove what it created.
//!
//! [`Backend`] is the one seam between the CLI and a backend: the CLI resolves the plan,
//! asks [`Backend::check_host`] for the preflight, prints it, and then calls
//! [`Backend::prepare`] and [`Backend::launch`]. A backend reads nothing from the process
//! environment or the clock: every decision (names, images, CAs, start time) is in the plan.
//!
//! Every backend runs its sidecar bundle as a Docker container labelled with the bottle's
//! identity and backend ([`docker::compose::LABEL_BACKEND`]), so one engine listing finds the
//! bottles of every backend ([`list_active`]).

pub mod docker;
pub mod interrupt;
pub(crate) mod lifecycle;
pub(crate) mod smolmachines;

use std::path::Path;

use serde::Serialize;

use crate::plan::{BackendKind, BottlePlan, BuildPlan, HostEnv};
use crate::runner::Runner;

/// Where a backend reports progress: the CLI prints it, tests record it. `Sync` because
/// image checks report from two threads.
pub trait Ui: Sync {
    fn say(&self, msg: &str);
    fn warn(&self, msg: &str);
}

/// What a backend could not do, with what to do next.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BackendError {
    #[error(transparent)]
    Docker(docker::DockerError),
    #[error(transparent)]
    Smolmachines(smolmachines::SmolError),
    /// The host lacks what the backend needs; the message names what to install.
    #[error("{0}")]
    HostNotReady(String),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// The operator pressed Ctrl-C; everything created was undone.
    #[error("interrupted")]
    Interrupted,
}

impl From<docker::DockerError> for BackendError {
    fn from(e: docker::DockerError) -> Self {
        match e {
            docker::DockerError::Interrupted => BackendError::Interrupted,
            other => BackendError::Docker(other),
        }
    }
}

/// The host preflight, answered before the plan is resolved (the runtime is part of it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct HostCheck {
    /// Whether bottles run under gVisor; `None` when the engine did not answer.
    pub gvisor: Option<bool>,
    /// Lines the preflight shows the operator (never fatal).
    pub(crate) warnings: Vec<String>,
}

/// What [`Backend::prepare`] made ready: the image references the launch runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    pub(crate) agent_image: String,
    pub(crate) sidecar_image: String,
}

/// How a launch ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub identity: String,
    pub(crate) exit_code: i32,
    /// The state dir was kept for `resume`.
    pub preserved: bool,
    /// The session ended because the bottle was stopped (the dashboard's stop, the engine),
    /// not because the agent exited.
    pub(crate) stopped: bool,
}

/// A running bottle as the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct ActiveBottle {
    /// `docker` or `smolmachines`, from the bundle's backend label.
    pub backend: String,
    /// The bottle identity (what `exec`, `resume` and the labels use).
    #[serde(rename = "id")]
    pub identity: String,
    pub agent: String,
    pub(crate) services: Vec<String>,
    pub containers: Vec<String>,
}

/// One thing `cleanup` removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CleanupItem {
    /// `container`, `network`, `volume`, `vm`, …: shown in the listing.
    pub kind: &'static str,
    pub name: String,
}

/// Everything `cleanup` would remove, listed before asking.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanupPlan {
    pub(crate) items: Vec<CleanupItem>,
    /// Unpreserved state dirs (cleanup removes every bottle, so they are all orphans).
    pub state_dirs: Vec<crate::state::StateDir>,
}

impl CleanupPlan {
    pub fn is_empty(&self) -> bool {
        self.items.is_empty() && self.state_dirs.is_empty()
    }

    pub fn count(&self, kind: &str) -> usize {
        self.items.iter().filter(|i| i.kind == kind).count()
    }
}

/// A place bottles run. Implementations: [`docker::DockerBackend`] and
/// [`smolmachines::SmolmachinesBackend`].
pub(crate) trait Backend {
    /// Can this host run bottles here? Warnings are shown; an error says what to install.
    /// Runs before plan resolution, so it sees the [`HostEnv`] and nothing else.
    fn check_host(&self, host: &HostEnv) -> Result<HostCheck, BackendError>;

    /// Make sure the plan's images exist (found cached or built).
    fn prepare(&self, plan: &BottlePlan, ui: &dyn Ui) -> Result<Prepared, BackendError>;

    /// Build, or find cached, every image this backend can run (`bot-bottle build-images`).
    fn prepare_all(&self, build: &BuildPlan, ui: &dyn Ui) -> Result<(), BackendError>;

    /// Create → session → snapshot → teardown. A resumed plan (`plan.resume`) pins its
    /// identity; the same call resumes it.
    fn launch(
        &self,
        plan: &BottlePlan,
        prepared: &Prepared,
        ui: &dyn Ui,
        tty: bool,
    ) -> Result<Outcome, BackendError>;

    /// Run `command` in the running bottle `identity` as the agent user; its exit code.
    fn exec(&self, identity: &str, command: &[String], tty: bool) -> Result<i32, BackendError>;

    /// What `cleanup` would remove of this backend (state dirs are listed by
    /// [`cleanup_plan`], once for all backends).
    fn cleanup_plan(&self) -> Result<CleanupPlan, BackendError>;

    /// Remove what [`Backend::cleanup_plan`] listed.
    fn cleanup(&self, plan: &CleanupPlan, ui: &dyn Ui) -> Result<(), BackendError>;
}

/// Every backend kind, in listing order.
pub(crate) const ALL_KINDS: [BackendKind; 2] = [BackendKind::Docker, BackendKind::Smolmachines];

/// The backend of `kind`, running its commands through `runner`.
pub(crate) fn backend_for<'r>(kind: BackendKind, runner: &'r dyn Runner) -> Box<dyn Backend + 'r> {
    match kind {
        BackendKind::Docker => Box::new(docker::DockerBackend::new(runner)),
        BackendKind::Smolmachines => Box::new(smolmachines::SmolmachinesBackend::new(runner)),
    }
}

/// Running bottles of every backend: one engine listing, since every backend's sidecar
/// bundle is a labelled Docker container.
pub(crate) fn list_active(runner: &dyn Runner) -> Result<Vec<ActiveBottle>, BackendError> {
    let mut bottles = docker::discover::active(runner)?;
    // smolmachines VMs join their bundles (a missing smolvm lists none).
    if let Err(e) = smolmachines::discover::annotate(runner, &mut bottles) {
        tracing::warn!("smolmachines VMs not listed: {e}");
    }
    Ok(bottles)
}

/// The cleanup plan of every backend plus the unpreserved state dirs under `root`.
pub(crate) fn cleanup_plan(
    runner: &dyn Runner,
    root: Option<&Path>,
) -> Result<CleanupPlan, BackendError> {
    let mut plan = CleanupPlan::default();
    for kind in ALL_KINDS {
        let part = backend_for(kind, runner).cleanup_plan()?;
        for item in part.items {
            if !plan.items.contains(&item) {
                plan.items.push(item);
            }
        }
    }
    if let Some(root) = root {
        plan.state_dirs = crate::state::list(root)?
            .into_iter()
            .filter(|e| !e.preserved)
            .map(|e| e.dir())
            .collect();
    }
    Ok(plan)
}

/// Run every backend's cleanup, then remove the listed state dirs through [`crate::state`].
pub(crate) fn cleanup(
    runner: &dyn Runner,
    plan: &CleanupPlan,
    ui: &dyn Ui,
) -> Result<(), BackendError> {
    // In reverse listing order: micro-VMs stop before the Docker bundles they reach.
    for kind in ALL_KINDS.iter().rev() {
        backend_for(*kind, runner).cleanup(plan, ui)?;
    }
    // Checked again at removal: a session that ended meanwhile may have kept its state.
    for dir in &plan.state_dirs {
        if let Err(e) = dir.remove_unless_preserved() {
            ui.warn(&e.to_string());
        }
    }
    Ok(())
}

#[cfg(test)]
mod settle_tests {
    use super::*;

    struct Quiet;
    impl Ui for Quiet {
        fn say(&self, _: &str) {}
        fn warn(&self, _: &str) {}
    }

    #[test]
    fn a_state_dir_removed_during_the_session_is_not_reported_as_kept() {
        let root = tempfile::tempdir().unwrap();
        let kept = crate::state::StateDir::create(root.path(), "a-1").unwrap();
        use super::lifecycle::settle_state;
        assert!(settle_state(3, &kept, &Quiet));
        assert!(kept.is_preserved());
        let gone = crate::state::StateDir::create(root.path(), "b-1").unwrap();
        std::fs::remove_dir_all(gone.path()).unwrap();
        assert!(!settle_state(137, &gone, &Quiet));
        assert!(!settle_state(0, &kept, &Quiet));
    }
}

//! What every backend's launch does the same way, written once: the state dir and its
//! metadata, the refusal after a failed provider check, and the run tail (create → session →
//! snapshot → keep or drop the state → teardown). A backend supplies its steps through
//! [`Steps`]; [`run`] sequences them.

use crate::backend::{Outcome, Ui};
use crate::plan::BottlePlan;
use crate::runner::Output;
use crate::state::{Metadata, StateDir, StateError};

/// A created bottle, as far as the shared run tail needs it.
pub(crate) trait LiveBottle {
    fn identity(&self) -> &str;
    fn state(&self) -> &StateDir;
    /// A resumed bottle's state dir is the preserved one: its removal moves to the end of
    /// the undo stack, so it happens only after a clean exit.
    fn keep_state_until_the_end(&mut self);
    /// Whether the session ended because the bottle was stopped under it (the engine
    /// stopped the agent), not because the agent exited.
    fn stopped(&self) -> bool {
        false
    }
}

/// The backend-specific steps of a launch.
pub(crate) trait Steps {
    type Bottle: LiveBottle;
    type Error;

    fn ui(&self) -> &dyn Ui;
    /// Create the bottle; on failure, whatever was created is already removed.
    fn create(&self, plan: &BottlePlan) -> Result<Self::Bottle, Self::Error>;
    /// The interactive session; its exit code.
    fn session(
        &self,
        plan: &BottlePlan,
        b: &mut Self::Bottle,
        tty: bool,
    ) -> Result<i32, Self::Error>;
    /// Copy the transcript and the bundle's logs into the state dir (warns, never fails).
    fn snapshot(&self, plan: &BottlePlan, b: &Self::Bottle);
    /// Undo everything created, newest first; every step is attempted.
    fn teardown(&self, b: &mut Self::Bottle);
}

/// The whole launch on any backend: create, session, snapshot, keep the state after a
/// non-zero exit, teardown.
pub(crate) fn run<S: Steps>(steps: &S, plan: &BottlePlan, tty: bool) -> Result<Outcome, S::Error> {
    let mut b = steps.create(plan)?;
    if plan.resume {
        b.keep_state_until_the_end();
    }
    // While this lock is held, a stop from the dashboard is this process's to finish: the
    // dashboard stops the agent and this run snapshots, settles the state and tears down.
    let session_lock = match b.state().hold_session() {
        Ok(l) => Some(l),
        Err(e) => {
            steps.ui().warn(&format!(
                "{e}; a stop from the dashboard will remove this bottle without its snapshot"
            ));
            None
        }
    };
    b.state().clear_stop();
    steps.ui().say(&format!(
        "session: {} (exit the agent to tear the bottle down)",
        plan.provider
            .command
            .first()
            .map(String::as_str)
            .unwrap_or("")
    ));
    let code = match steps.session(plan, &mut b, tty) {
        Ok(c) => c,
        Err(e) => {
            steps.teardown(&mut b);
            return Err(e);
        }
    };
    let stopped = b.stopped() || b.state().stop_requested();
    if stopped {
        steps.ui().say(&format!(
            "bottle `{}` was stopped; saving its transcript and logs, then removing it",
            b.identity()
        ));
    }
    steps.snapshot(plan, &b);
    // A stopped session ends with the code the engine gave it, so the usual rule applies:
    // anything but 0 keeps the state for `resume`.
    let preserved = settle_state(code, b.state(), steps.ui());
    b.state().clear_stop();
    steps.teardown(&mut b);
    drop(session_lock);
    Ok(Outcome {
        identity: b.identity().to_string(),
        exit_code: code,
        preserved,
        stopped,
    })
}

/// After a session, on every backend: a non-zero exit keeps the state for `resume`, a clean
/// exit drops the marker so teardown removes it. Returns whether the state is kept: not when
/// the marker could not be written (e.g. `cleanup` removed the bottle during the session),
/// so the CLI never points at a `resume` that cannot work.
pub(crate) fn settle_state(exit_code: i32, state: &StateDir, ui: &dyn Ui) -> bool {
    let preserved = exit_code != 0;
    let marked = if preserved {
        state.preserve()
    } else {
        state.unpreserve()
    };
    match marked {
        Ok(()) => preserved,
        Err(e) => {
            ui.warn(&e.to_string());
            false
        }
    }
}

/// The bottle's state dir with its metadata written: created for a new bottle, opened for a
/// resumed one. The flag says whether the launch created it (and so must undo it).
pub(crate) fn open_state(
    plan: &BottlePlan,
    identity: &str,
    compose_project: &str,
) -> Result<(StateDir, bool), StateError> {
    let state = if plan.resume {
        StateDir::open(&plan.root, identity)
    } else {
        StateDir::create(&plan.root, identity)
    }?;
    let created = !plan.resume;
    let written = state.write_metadata(&Metadata {
        identity: identity.to_string(),
        agent: plan.agent.clone(),
        bottle: plan.bottle.clone(),
        cwd: plan.cwd.clone(),
        copy_cwd: plan.copy_cwd,
        started_at: Metadata::rfc3339(plan.started_at),
        compose_project: compose_project.to_string(),
        backend: plan.backend.as_str().to_string(),
    });
    if let Err(e) = written {
        if created {
            let _ = state.remove();
        }
        return Err(e);
    }
    Ok((state, created))
}

/// Why a provider check (`plan.provider.verify`) refused the bottle, from its output.
pub(crate) fn verify_refusal(command: &[String], out: &Output) -> String {
    format!(
        "`{}` failed in the bottle ({}); check the provider login on the host",
        command.join(" "),
        out.stderr_str()
            .trim()
            .lines()
            .last()
            .unwrap_or("no output")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Records the steps and the `say` lines.
    struct Fake {
        log: Mutex<Vec<String>>,
        session: Result<i32, &'static str>,
        state: StateDir,
    }

    struct B {
        state: StateDir,
        undo: Vec<&'static str>,
    }

    impl LiveBottle for B {
        fn identity(&self) -> &str {
            "id-1"
        }
        fn state(&self) -> &StateDir {
            &self.state
        }
        fn keep_state_until_the_end(&mut self) {
            self.undo.insert(0, "state");
        }
    }

    impl Ui for Fake {
        fn say(&self, msg: &str) {
            self.log.lock().unwrap().push(format!("say {msg}"));
        }
        fn warn(&self, msg: &str) {
            self.log.lock().unwrap().push(format!("warn {msg}"));
        }
    }

    impl Steps for Fake {
        type Bottle = B;
        type Error = &'static str;
        fn ui(&self) -> &dyn Ui {
            self
        }
        fn create(&self, _: &BottlePlan) -> Result<B, &'static str> {
            self.log.lock().unwrap().push("create".into());
            Ok(B {
                state: self.state.clone(),
                undo: vec!["up"],
            })
        }
        fn session(&self, _: &BottlePlan, _: &mut B, _: bool) -> Result<i32, &'static str> {
            self.log.lock().unwrap().push("session".into());
            self.session
        }
        fn snapshot(&self, _: &BottlePlan, _: &B) {
            self.log.lock().unwrap().push("snapshot".into());
        }
        fn teardown(&self, b: &mut B) {
            while let Some(step) = b.undo.pop() {
                self.log.lock().unwrap().push(format!("undo {step}"));
            }
        }
    }

    fn plan(root: &std::path::Path, resume: bool) -> BottlePlan {
        let mut m = crate::plan::testutil::manifest(
            vec![crate::plan::testutil::bottle("dev")],
            vec![crate::plan::testutil::agent("reviewer", "dev")],
        );
        m.root = root.to_path_buf();
        let opts = crate::plan::StartOptions {
            gvisor: Some(false),
            resume,
            ..crate::plan::StartOptions::fresh(crate::plan::BackendKind::Docker)
        };
        crate::plan::resolve(&m, "reviewer", &opts, &crate::plan::testutil::host()).unwrap()
    }

    fn fake(root: &std::path::Path, session: Result<i32, &'static str>) -> Fake {
        Fake {
            log: Mutex::new(Vec::new()),
            session,
            state: StateDir::create(root, "id-1").unwrap(),
        }
    }

    #[test]
    fn a_clean_exit_snapshots_then_tears_down_and_drops_the_state() {
        let root = tempfile::tempdir().unwrap();
        let f = fake(root.path(), Ok(0));
        let out = run(&f, &plan(root.path(), false), false).unwrap();
        assert_eq!((out.exit_code, out.preserved), (0, false));
        assert_eq!(out.identity, "id-1");
        let log = f.log.lock().unwrap();
        let steps: Vec<&str> = log
            .iter()
            .map(String::as_str)
            .filter(|l| !l.starts_with("say"))
            .collect();
        assert_eq!(steps, ["create", "session", "snapshot", "undo up"]);
        assert!(log[1].starts_with("say session: claude"), "{log:?}");
        assert!(!f.state.is_preserved());
    }

    #[test]
    fn a_non_zero_exit_keeps_the_state() {
        let root = tempfile::tempdir().unwrap();
        let f = fake(root.path(), Ok(3));
        let out = run(&f, &plan(root.path(), false), false).unwrap();
        assert_eq!((out.exit_code, out.preserved), (3, true));
        assert!(f.state.is_preserved());
    }

    #[test]
    fn a_failed_session_tears_down_without_a_snapshot() {
        let root = tempfile::tempdir().unwrap();
        let f = fake(root.path(), Err("boom"));
        assert_eq!(
            run(&f, &plan(root.path(), false), false).unwrap_err(),
            "boom"
        );
        let log = f.log.lock().unwrap();
        assert!(!log.iter().any(|l| l == "snapshot"), "{log:?}");
        assert_eq!(log.last().unwrap(), "undo up");
    }

    #[test]
    fn a_stop_requested_during_the_session_is_reported_and_keeps_the_state() {
        struct Stopping(Fake);
        impl Steps for Stopping {
            type Bottle = B;
            type Error = &'static str;
            fn ui(&self) -> &dyn Ui {
                &self.0
            }
            fn create(&self, p: &BottlePlan) -> Result<B, &'static str> {
                self.0.create(p)
            }
            fn session(&self, p: &BottlePlan, b: &mut B, t: bool) -> Result<i32, &'static str> {
                // The lock is held while the session runs; the dashboard finds it so.
                assert!(b.state.session_running());
                b.state.request_stop().unwrap();
                self.0.session(p, b, t)
            }
            fn snapshot(&self, p: &BottlePlan, b: &B) {
                self.0.snapshot(p, b);
            }
            fn teardown(&self, b: &mut B) {
                self.0.teardown(b);
            }
        }
        let root = tempfile::tempdir().unwrap();
        let f = Stopping(fake(root.path(), Ok(crate::runner::CUT_EXIT)));
        let out = run(&f, &plan(root.path(), false), false).unwrap();
        assert!(out.stopped);
        assert!(
            out.preserved,
            "a stopped session keeps its state, as any non-zero exit"
        );
        assert!(f.0.state.is_preserved());
        assert!(
            !f.0.state.stop_requested(),
            "the marker does not outlive the run"
        );
        assert!(!f.0.state.session_running(), "the lock went with the run");
        let log = f.0.log.lock().unwrap();
        let said = log.iter().position(|l| l.contains("was stopped")).unwrap();
        let snap = log.iter().position(|l| l == "snapshot").unwrap();
        assert!(said < snap, "{log:?}");
        // A clean exit is not a stop.
        let root = tempfile::tempdir().unwrap();
        let out = run(&fake(root.path(), Ok(0)), &plan(root.path(), false), false).unwrap();
        assert!(!out.stopped);
    }

    #[test]
    fn a_resumed_bottle_removes_its_state_last() {
        let root = tempfile::tempdir().unwrap();
        let f = fake(root.path(), Ok(0));
        run(&f, &plan(root.path(), true), false).unwrap();
        let log = f.log.lock().unwrap();
        let undos: Vec<&String> = log.iter().filter(|l| l.starts_with("undo")).collect();
        assert_eq!(undos, ["undo up", "undo state"]);
    }

    #[test]
    fn open_state_creates_or_opens_and_writes_the_metadata() {
        let root = tempfile::tempdir().unwrap();
        let p = plan(root.path(), false);
        let (state, created) = open_state(&p, "fresh-1", "bot-bottle-fresh-1").unwrap();
        assert!(created);
        assert_eq!(
            state.metadata().unwrap().compose_project,
            "bot-bottle-fresh-1"
        );
        let resumed = plan(root.path(), true);
        let (again, created) = open_state(&resumed, "fresh-1", "bot-bottle-fresh-1").unwrap();
        assert!(!created);
        assert_eq!(again.path(), state.path());
        assert!(open_state(&resumed, "missing-1", "p").is_err());
    }
}

//! `doctor`: host checks, then a throwaway bottle probed from inside; one table (or
//! `--json`) and a non-zero exit when anything is open or the host cannot run bottles.

use std::process::ExitCode;

use crate::backend::{Ui, interrupt};
use crate::doctor::bottle::{self, DoctorError, Progress};
use crate::doctor::probes::Probe;
use crate::doctor::{self, Row, Status};
use crate::plan::HostEnv;
use crate::runner::RealRunner;

use super::DoctorArgs;
use super::output::{CliUi, say, stdout_write, warn};

struct Steps {
    quiet: bool,
}

impl Progress for Steps {
    fn ui(&self) -> &dyn Ui {
        &CliUi
    }

    fn probe(&self, index: usize, total: usize, probe: &Probe) {
        if !self.quiet {
            say(&format!(
                "probe {index}/{total}: {} ({})",
                probe.id, probe.case
            ));
        }
    }
}

pub(crate) fn doctor(args: &DoctorArgs) -> anyhow::Result<ExitCode> {
    let runner = RealRunner;
    let host = HostEnv::from_process();
    interrupt::install();
    let steps = Steps { quiet: args.json };
    say("checking this host");
    let prepared = bottle::plan(&runner, &host)?;
    if let Some(w) = prepared.plan.weakened {
        warn(&format!(
            "WEAKENED throwaway bottle ({}: test knob BOT_BOTTLE_TEST_WEAKEN); its results say nothing about real bottles",
            w.as_str()
        ));
    }
    let images = [
        prepared.plan.image.tag.clone(),
        prepared.plan.sidecar_image.tag().to_string(),
    ];
    let mut rows = doctor::host_checks(
        &runner,
        host.var_nonempty("DOCKER_HOST"),
        &prepared.plan.root,
        &images,
    );
    let can_launch = !rows
        .iter()
        .any(|r| r.status == Status::Fail && (r.probe == "engine" || r.probe == "compose"));
    let mut error = None;
    if can_launch {
        say(&format!(
            "starting a throwaway bottle (runtime {}) and probing it from inside",
            prepared.plan.runtime.label()
        ));
        match bottle::probe_bottle(&runner, &prepared, &steps) {
            Ok(probed) => rows.extend(probed),
            Err(DoctorError::Interrupted) => {
                say("interrupted; the throwaway bottle was removed");
                return Ok(ExitCode::from(130));
            }
            Err(e) => error = Some(e),
        }
    }
    if interrupt::interrupted() {
        say("interrupted; the throwaway bottle was removed");
        return Ok(ExitCode::from(130));
    }
    if let Some(e) = &error {
        rows.push(Row {
            group: "bottle".into(),
            probe: "throwaway-bottle".into(),
            case: String::new(),
            expected: "a bottle starts so the probes can run".into(),
            seen: e.to_string(),
            status: Status::Fail,
        });
    }
    let failed = rows.iter().filter(|r| r.status == Status::Fail).count();
    let passed = rows.iter().filter(|r| r.status == Status::Pass).count();
    if args.json {
        let doc = serde_json::json!({
            "ok": failed == 0,
            "passed": passed,
            "failed": failed,
            "warned": rows.len() - passed - failed,
            "runtime": prepared.plan.runtime.label(),
            "rows": rows,
        });
        stdout_write(&format!("{}\n", serde_json::to_string_pretty(&doc)?))?;
    } else {
        stdout_write(&doctor::render_table(&rows))?;
    }
    if doctor::any_failed(&rows) {
        say(&format!(
            "{failed} check(s) failed: this host or its bottles are not closed; see the FAIL lines"
        ));
        Ok(ExitCode::from(1))
    } else {
        say(&format!(
            "all {passed} checks passed: bottles fail closed on this host"
        ));
        Ok(ExitCode::SUCCESS)
    }
}

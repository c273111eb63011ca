//! Finding smolmachines bottles: VMs from `smolvm machine ls --json`, merged into the one
//! `list active` listing next to their bundles (which the Docker listing already finds by
//! label), and every `bot-bottle-` VM for `cleanup`. Without smolvm installed there are no
//! VMs, and nothing here fails.

use serde::Deserialize;

use crate::backend::ActiveBottle;
use crate::plan::PREFIX;
use crate::runner::{RunError, Runner};

use super::{BACKEND_NAME, SmolError, check, vm};

/// One machine as `smolvm machine ls --json` reports it (other fields ignored).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct Machine {
    pub name: String,
    #[serde(default, alias = "status")]
    pub state: String,
}

/// Our machines (prefixed names) from the listing; a listing that is not JSON is empty.
pub(crate) fn parse_ls(stdout: &str) -> Vec<Machine> {
    let mut v: Vec<Machine> = serde_json::from_str::<Vec<Machine>>(stdout.trim())
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.name.starts_with(PREFIX))
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// Every prefixed machine, any state; empty when smolvm is not installed.
pub(crate) fn machines(runner: &dyn Runner) -> Result<Vec<Machine>, SmolError> {
    match check(runner, &vm::list_spec()) {
        Ok(out) => Ok(parse_ls(&out.stdout_str())),
        Err(SmolError::Run(RunError::NotFound { .. })) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

fn running(m: &Machine) -> bool {
    m.state.eq_ignore_ascii_case("running")
}

/// Adds the VMs to the listing: a smolmachines bottle found by its bundle gains the `vm`
/// service when its VM runs; a running VM without a bundle is listed on its own.
pub(crate) fn merge(bottles: &mut Vec<ActiveBottle>, machines: &[Machine]) {
    for m in machines.iter().filter(|m| running(m)) {
        let identity = m.name.trim_start_matches(PREFIX);
        match bottles
            .iter_mut()
            .find(|b| b.backend == BACKEND_NAME && b.identity == identity)
        {
            Some(b) => {
                b.services.push("vm".into());
                b.services.sort();
                b.containers.push(m.name.clone());
                b.containers.sort();
            }
            None => bottles.push(ActiveBottle {
                backend: BACKEND_NAME.to_string(),
                identity: identity.to_string(),
                agent: String::new(),
                services: vec!["vm".into()],
                containers: vec![m.name.clone()],
            }),
        }
    }
    bottles.sort_by(|a, b| a.identity.cmp(&b.identity));
}

/// `list active` for this backend: one `smolvm machine ls` (a missing smolvm is no VMs).
pub(crate) fn annotate(
    runner: &dyn Runner,
    bottles: &mut Vec<ActiveBottle>,
) -> Result<(), SmolError> {
    let ms = machines(runner)?;
    merge(bottles, &ms);
    Ok(())
}

/// Stop and delete each machine; every one is attempted, failures are returned together.
pub(crate) fn remove(runner: &dyn Runner, machines: &[Machine]) -> Result<(), SmolError> {
    let mut failed = Vec::new();
    for m in machines {
        // A stopped machine refuses `stop`; only the delete's result matters.
        let _ = runner.run(&vm::stop_spec(&m.name));
        if let Err(e) = check(runner, &vm::delete_spec(&m.name)) {
            failed.push(e.to_string());
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(SmolError::Refused(failed.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::{Output, RecordingRunner};

    const LS: &str = r#"[{"name":"bot-bottle-rev-ab12cd","state":"running","cpus":2},
        {"name":"bot-bottle-old-zz9","state":"stopped"},
        {"name":"mine","state":"running"}]"#;

    fn docker_bottle(backend: &str, id: &str) -> ActiveBottle {
        ActiveBottle {
            backend: backend.to_string(),
            identity: id.into(),
            agent: "rev".into(),
            services: vec!["sidecars".into()],
            containers: vec![format!("bot-bottle-sidecars-{id}")],
        }
    }

    #[test]
    fn only_prefixed_machines_are_ours() {
        let ms = parse_ls(LS);
        assert_eq!(
            ms.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
            vec!["bot-bottle-old-zz9", "bot-bottle-rev-ab12cd"]
        );
        assert!(parse_ls("not json").is_empty());
        assert_eq!(
            parse_ls(r#"[{"name":"bot-bottle-x","status":"Running"}]"#)[0].state,
            "Running"
        );
    }

    #[test]
    fn both_backends_share_one_listing() {
        let mut bottles = vec![
            docker_bottle("docker", "dock-111111"),
            docker_bottle(BACKEND_NAME, "rev-ab12cd"),
        ];
        merge(&mut bottles, &parse_ls(LS));
        assert_eq!(bottles.len(), 2, "{bottles:#?}");
        let smol = bottles.iter().find(|b| b.identity == "rev-ab12cd").unwrap();
        assert_eq!(smol.backend, BACKEND_NAME);
        assert_eq!(smol.services, vec!["sidecars", "vm"]);
        let dock = bottles
            .iter()
            .find(|b| b.identity == "dock-111111")
            .unwrap();
        assert_eq!(dock.services, vec!["sidecars"]);
        // The stopped machine is not active.
        assert!(!bottles.iter().any(|b| b.identity == "old-zz9"));
    }

    #[test]
    fn a_running_vm_without_a_bundle_is_still_listed() {
        let mut bottles = Vec::new();
        merge(&mut bottles, &parse_ls(LS));
        assert_eq!(bottles.len(), 1);
        assert_eq!(bottles[0].identity, "rev-ab12cd");
        assert_eq!(bottles[0].services, vec!["vm"]);
    }

    #[test]
    fn without_smolvm_there_are_no_machines() {
        let rec = RecordingRunner::fallible(|s| {
            Err(RunError::NotFound {
                program: s.program.clone(),
            })
        });
        assert!(machines(&rec).unwrap().is_empty());
    }

    #[test]
    fn removal_tries_every_machine() {
        let rec = RecordingRunner::new(|s| {
            if s.args.iter().any(|a| a == "bot-bottle-a") && s.args.iter().any(|a| a == "delete") {
                Output::failed(1, "busy")
            } else {
                Output::default()
            }
        });
        let ms = parse_ls(r#"[{"name":"bot-bottle-a"},{"name":"bot-bottle-b"}]"#);
        let err = remove(&rec, &ms).unwrap_err().to_string();
        assert!(
            err.contains("bot-bottle-a") && err.contains("busy"),
            "{err}"
        );
        let calls: Vec<String> = rec.calls().iter().map(ToString::to_string).collect();
        assert_eq!(
            calls,
            vec![
                "smolvm machine stop --name bot-bottle-a",
                "smolvm machine delete -f bot-bottle-a",
                "smolvm machine stop --name bot-bottle-b",
                "smolvm machine delete -f bot-bottle-b",
            ]
        );
    }
}

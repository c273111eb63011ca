//! Finding what exists: running bottles for `list active` (one `docker ps`), and every
//! prefixed container, network and volume for `cleanup`, even ones a killed CLI left behind.

use std::collections::BTreeMap;

use serde::Serialize;

use super::compose::{LABEL_AGENT, LABEL_BACKEND, LABEL_IDENTITY, LABEL_SERVICE};
use super::{DockerError, check, command_error, docker};
use crate::backend::ActiveBottle;
use crate::plan::PREFIX as NAME_PREFIX;
use crate::runner::{ProcessSpec, Runner};

/// One container as `docker ps --format '{{json .}}'` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Container {
    pub name: String,
    pub state: String,
    pub(crate) labels: BTreeMap<String, String>,
}

/// `docker ps` prints labels as `k=v,k=v`; values of ours never contain commas.
fn parse_labels(s: &str) -> BTreeMap<String, String> {
    s.split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .collect()
}

/// Parse `{{json .}}` lines; a line that is not ours or not JSON is skipped.
pub(crate) fn parse_ps(stdout: &str) -> Vec<Container> {
    stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| {
            let name = v.get("Names")?.as_str()?.split(',').next()?.to_string();
            let state = v
                .get("State")
                .and_then(|s| s.as_str())
                .unwrap_or("")
                .to_string();
            let labels = parse_labels(v.get("Labels").and_then(|s| s.as_str()).unwrap_or(""));
            Some(Container {
                name,
                state,
                labels,
            })
        })
        .collect()
}

/// Group containers into bottles by identity label, sorted by identity. The backend comes
/// from the bundle's backend label (containers from before the label count as Docker).
pub(crate) fn group(containers: &[Container]) -> Vec<ActiveBottle> {
    let mut by_id: BTreeMap<String, ActiveBottle> = BTreeMap::new();
    for c in containers {
        let Some(id) = c.labels.get(LABEL_IDENTITY) else {
            continue;
        };
        let entry = by_id.entry(id.clone()).or_insert_with(|| ActiveBottle {
            backend: c
                .labels
                .get(LABEL_BACKEND)
                .cloned()
                .unwrap_or_else(|| "docker".to_string()),
            identity: id.clone(),
            agent: c.labels.get(LABEL_AGENT).cloned().unwrap_or_default(),
            services: Vec::new(),
            containers: Vec::new(),
        });
        if let Some(svc) = c.labels.get(LABEL_SERVICE) {
            entry.services.push(svc.clone());
        }
        entry.containers.push(c.name.clone());
    }
    for b in by_id.values_mut() {
        b.services.sort();
        b.containers.sort();
    }
    by_id.into_values().collect()
}

/// Running bottles of every backend: exactly one engine call.
pub(crate) fn active(runner: &dyn Runner) -> Result<Vec<ActiveBottle>, DockerError> {
    let out = check(
        runner,
        &docker([
            "ps",
            "--filter",
            &format!("label={LABEL_IDENTITY}"),
            "--format",
            "{{json .}}",
        ]),
    )?;
    Ok(group(&parse_ps(&out.stdout_str())))
}

/// The agent container of a running bottle.
pub(crate) fn agent_container(runner: &dyn Runner, identity: &str) -> Result<String, DockerError> {
    let out = check(
        runner,
        &docker([
            "ps",
            "--filter",
            &format!("label={LABEL_IDENTITY}={identity}"),
            "--filter",
            &format!("label={LABEL_SERVICE}=agent"),
            "--format",
            "{{json .}}",
        ]),
    )?;
    parse_ps(&out.stdout_str())
        .into_iter()
        .find(|c| c.state == "running" || c.state.is_empty())
        .map(|c| c.name)
        .ok_or_else(|| DockerError::NotRunning(identity.to_string()))
}

/// Everything `cleanup` would remove.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Leftovers {
    pub containers: Vec<String>,
    pub networks: Vec<String>,
    pub volumes: Vec<String>,
    /// Identities seen on containers (their state dirs are not orphans until removed).
    #[serde(skip)]
    pub(crate) identities: Vec<String>,
}

fn names_with_prefix(stdout: &str) -> Vec<String> {
    let mut v: Vec<String> = stdout
        .lines()
        .map(str::trim)
        .filter(|n| n.starts_with(NAME_PREFIX))
        .map(str::to_string)
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Prefixed containers (any state), networks and volumes: three listing calls.
pub(crate) fn leftovers(runner: &dyn Runner) -> Result<Leftovers, DockerError> {
    let ps = check(
        runner,
        &docker([
            "ps",
            "-a",
            "--filter",
            &format!("name={NAME_PREFIX}"),
            "--format",
            "{{json .}}",
        ]),
    )?;
    let containers: Vec<Container> = parse_ps(&ps.stdout_str())
        .into_iter()
        .filter(|c| c.name.starts_with(NAME_PREFIX))
        .collect();
    let mut identities: Vec<String> = containers
        .iter()
        .filter_map(|c| c.labels.get(LABEL_IDENTITY).cloned())
        .collect();
    identities.sort();
    identities.dedup();
    let nets = check(
        runner,
        &docker([
            "network",
            "ls",
            "--filter",
            &format!("name={NAME_PREFIX}"),
            "--format",
            "{{.Name}}",
        ]),
    )?;
    let vols = check(
        runner,
        &docker([
            "volume",
            "ls",
            "--filter",
            &format!("name={NAME_PREFIX}"),
            "--format",
            "{{.Name}}",
        ]),
    )?;
    let mut names: Vec<String> = containers.into_iter().map(|c| c.name).collect();
    names.sort();
    Ok(Leftovers {
        containers: names,
        networks: names_with_prefix(&nets.stdout_str()),
        volumes: names_with_prefix(&vols.stdout_str()),
        identities,
    })
}

/// Remove them: containers first (they hold the networks and volumes), one call per kind.
pub(crate) fn remove(runner: &dyn Runner, l: &Leftovers) -> Result<(), DockerError> {
    if !l.containers.is_empty() {
        remove_all(
            runner,
            &docker(["rm", "-f", "-v"]).args(l.containers.iter().cloned()),
        )?;
    }
    if !l.networks.is_empty() {
        remove_all(
            runner,
            &docker(["network", "rm"]).args(l.networks.iter().cloned()),
        )?;
    }
    if !l.volumes.is_empty() {
        remove_all(
            runner,
            &docker(["volume", "rm", "-f"]).args(l.volumes.iter().cloned()),
        )?;
    }
    Ok(())
}

/// One removal call; a name that is already gone is what was wanted, not an error. A running
/// bottle's own teardown can remove it between the listing and this call (`cleanup` while
/// sessions end), and `docker network rm` has no flag to say so on every engine.
fn remove_all(runner: &dyn Runner, spec: &ProcessSpec) -> Result<(), DockerError> {
    let out = runner.run(spec)?;
    if out.success() || only_already_gone(&out.stderr_str()) {
        Ok(())
    } else {
        Err(command_error(spec, &out))
    }
}

/// Whether every error line says the object does not exist.
fn only_already_gone(stderr: &str) -> bool {
    let errors: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("exit status"))
        .collect();
    !errors.is_empty()
        && errors
            .iter()
            .all(|l| l.contains(" not found") || l.contains("No such "))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PS: &str = r#"{"Names":"bot-bottle-rev-ab12cd","State":"running","Labels":"dev.bot-bottle.identity=rev-ab12cd,dev.bot-bottle.agent=reviewer,dev.bot-bottle.service=agent,com.docker.compose.project=bot-bottle-rev-ab12cd"}
{"Names":"bot-bottle-sidecars-rev-ab12cd","State":"running","Labels":"dev.bot-bottle.identity=rev-ab12cd,dev.bot-bottle.agent=reviewer,dev.bot-bottle.service=sidecars"}
{"Names":"unrelated","State":"running","Labels":""}
not json
"#;

    #[test]
    fn what_is_already_gone_is_not_a_cleanup_error() {
        use crate::runner::{Output, RecordingRunner};
        let left = Leftovers {
            containers: vec!["bot-bottle-a-1".into()],
            networks: vec!["bot-bottle-net-a-1".into(), "bot-bottle-egress-a-1".into()],
            volumes: vec!["bot-bottle-a-1_sockets".into()],
            identities: Vec::new(),
        };
        let gone = RecordingRunner::new(|spec| {
            if spec.argv().contains(&"network") {
                Output::failed(
                    1,
                    "Error response from daemon: network bot-bottle-net-a-1 not found\nexit status 1\n",
                )
            } else {
                Output::default()
            }
        });
        remove(&gone, &left).unwrap();
        // The volumes were still removed after the network call.
        assert!(gone.calls().iter().any(|c| c.argv().contains(&"volume")));
        let busy = RecordingRunner::new(|spec| {
            if spec.argv().contains(&"network") {
                Output::failed(
                    1,
                    "Error response from daemon: network bot-bottle-net-a-1 not found\nError response from daemon: error while removing network: network bot-bottle-egress-a-1 id 12 has active endpoints\n",
                )
            } else {
                Output::default()
            }
        });
        let e = remove(&busy, &left).unwrap_err().to_string();
        assert!(e.contains("active endpoints"), "{e}");
    }

    #[test]
    fn ps_lines_group_into_bottles() {
        let bottles = group(&parse_ps(PS));
        assert_eq!(bottles.len(), 1);
        let b = &bottles[0];
        assert_eq!(b.identity, "rev-ab12cd");
        assert_eq!(b.agent, "reviewer");
        assert_eq!(b.services, vec!["agent", "sidecars"]);
        assert_eq!(b.backend, "docker");
    }

    #[test]
    fn the_backend_comes_from_the_label() {
        let ps = r#"{"Names":"bot-bottle-sidecars-vm-1","State":"running","Labels":"dev.bot-bottle.identity=vm-1,dev.bot-bottle.agent=a,dev.bot-bottle.backend=smolmachines,dev.bot-bottle.service=sidecars"}
{"Names":"bot-bottle-d-1","State":"running","Labels":"dev.bot-bottle.identity=d-1,dev.bot-bottle.agent=a,dev.bot-bottle.backend=docker,dev.bot-bottle.service=agent"}
"#;
        let bottles = group(&parse_ps(ps));
        let kinds: Vec<(&str, &str)> = bottles
            .iter()
            .map(|b| (b.identity.as_str(), b.backend.as_str()))
            .collect();
        assert_eq!(kinds, [("d-1", "docker"), ("vm-1", "smolmachines")]);
    }

    #[test]
    fn names_are_filtered_by_prefix() {
        assert_eq!(
            names_with_prefix("bot-bottle-net-x\nbridge\nmy-bot-bottle-x\nbot-bottle-net-x\n"),
            vec!["bot-bottle-net-x"]
        );
    }
}

//! Builders for plan tests: a manifest, bottle, agent and host with fixed values.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::HostEnv;
use crate::manifest::{Agent, AgentSource, Bottle, Manifest};

pub(crate) fn host() -> HostEnv {
    HostEnv {
        vars: BTreeMap::new(),
        home: Some(PathBuf::from("/nonexistent-home")),
        cwd: PathBuf::from("/nonexistent-cwd"),
        now_unix: 1_800_000_000,
        random_suffix: "k3j9x2".into(),
        exe: None,
        system_ca_dir: None,
        cpus: 4,
    }
}

/// [`host`] with these variables set.
pub(crate) fn host_with(vars: &[(&str, &str)]) -> HostEnv {
    HostEnv {
        vars: vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..host()
    }
}

pub(crate) fn bottle(name: &str) -> Bottle {
    Bottle {
        name: name.into(),
        path: PathBuf::from(format!("/root/.bot-bottle/bottles/{name}.md")),
        env: BTreeMap::new(),
        agent_provider: Default::default(),
        git_gate: Default::default(),
        egress: Default::default(),
        supervise: false,
        limits: Default::default(),
    }
}

pub(crate) fn agent(name: &str, bottle: &str) -> Agent {
    Agent {
        name: name.into(),
        path: PathBuf::from(format!("/root/.bot-bottle/agents/{name}.md")),
        source: AgentSource::Home,
        bottle: bottle.into(),
        skills: Vec::new(),
        git_user: Default::default(),
        prompt: "You review code.".into(),
        description: None,
    }
}

/// A manifest rooted at `/root/.bot-bottle` holding the given bottles and agents.
pub(crate) fn manifest(bottles: Vec<Bottle>, agents: Vec<Agent>) -> Manifest {
    Manifest {
        root: PathBuf::from("/root/.bot-bottle"),
        bottles: bottles.into_iter().map(|b| (b.name.clone(), b)).collect(),
        agents: agents.into_iter().map(|a| (a.name.clone(), a)).collect(),
        broken: Default::default(),
        warnings: Vec::new(),
    }
}

//! `extends` resolution: turns declared bottles into effective bottles.
//!
//! Merge rules: `env` merges (child wins), `git-gate.user` overlays per field,
//! `git-gate.repos` is inherited when omitted, cleared by `{}`, else merged by repo name
//! (child wins); `agent_provider`, `egress` and `supervise` are replaced whole when the child
//! declares them; `limits` overlays per field (`limits.agent.memory` alone keeps the parent's
//! `cpus` and `pids`). Chains are walked iteratively, so a long chain cannot exhaust the stack.

use std::collections::BTreeMap;

use super::error::ManifestError;
use super::types::{Bottle, GitGate, GitUser, Limits};
use super::validate::RawBottle;

/// Resolves every bottle's `extends` chain.
pub(crate) fn resolve(
    raws: &BTreeMap<String, RawBottle>,
) -> Result<BTreeMap<String, Bottle>, ManifestError> {
    let mut done: BTreeMap<String, Bottle> = BTreeMap::new();
    for start in raws.keys() {
        if done.contains_key(start) {
            continue;
        }
        // Walk up to a root or an already resolved bottle, checking the chain on the way.
        let mut chain: Vec<&str> = vec![start];
        let mut cur = start.as_str();
        while let Some(raw) = raws.get(cur) {
            let Some(parent) = raw.extends.as_deref() else {
                break;
            };
            if parent == cur {
                return Err(ManifestError::invalid(
                    &raw.path,
                    "extends",
                    format!("bottle `{cur}` extends itself; remove the self-reference"),
                ));
            }
            if chain.contains(&parent) {
                let shown = format!("{} -> {parent}", chain.join(" -> "));
                return Err(ManifestError::invalid(
                    &raw.path,
                    "extends",
                    format!("extends cycle {shown}; break the cycle"),
                ));
            }
            if !raws.contains_key(parent) {
                let available: Vec<&str> = raws.keys().map(String::as_str).collect();
                return Err(ManifestError::invalid(
                    &raw.path,
                    "extends",
                    format!(
                        "unknown bottle `{parent}` (chain {} -> {parent}); available: {}",
                        chain.join(" -> "),
                        available.join(", ")
                    ),
                ));
            }
            if done.contains_key(parent) {
                break;
            }
            chain.push(parent);
            cur = parent;
        }
        for name in chain.iter().rev() {
            let Some(raw) = raws.get(*name) else { continue };
            let base = raw.extends.as_deref().and_then(|p| done.get(p));
            let merged = merge(base, raw);
            done.insert((*name).to_owned(), merged);
        }
    }
    Ok(done)
}

fn merge(base: Option<&Bottle>, child: &RawBottle) -> Bottle {
    let mut env = base.map(|b| b.env.clone()).unwrap_or_default();
    if let Some(e) = &child.env {
        env.extend(e.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    let base_gate = base.map(|b| b.git_gate.clone()).unwrap_or_default();
    let user = match &child.git_user {
        None => base_gate.user.clone(),
        Some(u) => GitUser {
            name: u.name.clone().or(base_gate.user.name.clone()),
            email: u.email.clone().or(base_gate.user.email.clone()),
        },
    };
    let repos = match &child.git_repos {
        None => base_gate.repos.clone(),
        Some(r) if r.is_empty() => BTreeMap::new(),
        Some(r) => {
            let mut m = base_gate.repos.clone();
            m.extend(r.iter().map(|(k, v)| (k.clone(), v.clone())));
            m
        }
    };
    Bottle {
        name: child.name.clone(),
        path: child.path.clone(),
        env,
        agent_provider: child
            .agent_provider
            .clone()
            .or_else(|| base.map(|b| b.agent_provider.clone()))
            .unwrap_or_default(),
        git_gate: GitGate { user, repos },
        egress: child
            .egress
            .clone()
            .or_else(|| base.map(|b| b.egress.clone()))
            .unwrap_or_default(),
        supervise: child
            .supervise
            .or(base.map(|b| b.supervise))
            .unwrap_or(false),
        limits: {
            let base = base.map(|b| b.limits).unwrap_or_default();
            let own = child.limits.unwrap_or_default();
            Limits {
                agent: own.agent.or(base.agent),
                bundle: own.bundle.or(base.bundle),
            }
        },
    }
}

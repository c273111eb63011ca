//! Loading the manifest the way every command does: home root from the environment, agents
//! from the cwd too, warnings printed once.

use std::path::PathBuf;

use anyhow::Context as _;

use crate::envvars;
use crate::manifest::{self, LoadOptions, Manifest};

use super::output::warn;

pub(crate) fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// The home root, always absolute: a relative `BOT_BOTTLE_HOME` is taken against the current
/// directory once, here, so every later message and path names the same place.
pub(crate) fn home_root() -> anyhow::Result<PathBuf> {
    let root = manifest::home_root(
        std::env::var_os(envvars::HOME).as_deref(),
        home_dir().as_deref(),
    )?;
    if root.is_absolute() {
        return Ok(root);
    }
    let cwd = std::env::current_dir()
        .context("cannot read the current directory; `cd` somewhere that exists")?;
    Ok(cwd.join(root))
}

/// Whether the home root came from `BOT_BOTTLE_HOME` (rather than `~/.bot-bottle`).
fn home_from_env() -> bool {
    std::env::var_os(envvars::HOME).is_some_and(|h| !h.is_empty())
}

pub(crate) fn load_manifest() -> anyhow::Result<Manifest> {
    load_manifest_for(None)
}

/// Loads the manifest for a command about `agent` (if any). Broken agent files are warnings
/// naming file, key and fix, except `agent`'s own, which is the command's error.
pub(crate) fn load_manifest_for(agent: Option<&str>) -> anyhow::Result<Manifest> {
    let root = home_root()?;
    let cwd = std::env::current_dir()
        .context("cannot read the current directory; `cd` somewhere that exists")?;
    let manifest = match manifest::load(&LoadOptions { root, cwd }) {
        Err(manifest::ManifestError::NoHomeRoot { path }) if home_from_env() => {
            anyhow::bail!(
                "BOT_BOTTLE_HOME points at {}, which does not exist; run `bot-bottle init` to create a home there, or point BOT_BOTTLE_HOME at an existing home",
                path.display()
            )
        }
        other => other?,
    };
    for w in &manifest.warnings {
        warn(w);
    }
    for b in manifest.broken.values() {
        if Some(b.name.as_str()) != agent {
            warn(&broken_warning(b));
        }
    }
    if let Some(b) = agent.and_then(|a| manifest.broken.get(a)) {
        anyhow::bail!("agent `{}` cannot be loaded: {}", b.name, b.error);
    }
    Ok(manifest)
}

/// The warning for an agent file that did not load (its error names file, key and fix).
pub(crate) fn broken_warning(b: &manifest::BrokenAgent) -> String {
    format!("agent `{}` is broken and was skipped: {}", b.name, b.error)
}

/// Unknown agent: name the available ones so the next command is obvious.
pub(crate) fn unknown_agent(manifest: &Manifest, name: &str) -> anyhow::Error {
    let names: Vec<&str> = manifest.agents.keys().map(String::as_str).collect();
    if names.is_empty() {
        anyhow::anyhow!(
            "no agent named `{name}`; there are no agents yet: create one with `bot-bottle init`"
        )
    } else {
        anyhow::anyhow!(
            "no agent named `{name}`; available: {}; see `bot-bottle list available`",
            names.join(", ")
        )
    }
}

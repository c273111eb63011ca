//! Loading the manifest the way every command does: home root from the environment, agents
//! from the cwd too, warnings printed once.

use std::path::PathBuf;

use anyhow::Context as _;

use crate::envvars;
use crate::manifest::{self, LoadOptions, Manifest};

use super::output::warn;

pub fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

pub fn home_root() -> anyhow::Result<PathBuf> {
    Ok(manifest::home_root(
        std::env::var_os(envvars::HOME).as_deref(),
        home_dir().as_deref(),
    )?)
}

pub fn load_manifest() -> anyhow::Result<Manifest> {
    let root = home_root()?;
    let cwd = std::env::current_dir()
        .context("cannot read the current directory; `cd` somewhere that exists")?;
    let manifest = manifest::load(&LoadOptions { root, cwd })?;
    for w in &manifest.warnings {
        warn(w);
    }
    Ok(manifest)
}

/// Unknown agent: name the available ones so the next command is obvious.
pub fn unknown_agent(manifest: &Manifest, name: &str) -> anyhow::Error {
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

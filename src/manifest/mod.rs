//! Manifests: Markdown files with YAML frontmatter that declare bottles and agents.
//!
//! Parsing and validation happen once here; everything downstream works on the typed
//! values in [`types`]. [`load`] is the entry point; [`ManifestError`] messages name the
//! file and key path.

pub mod edit;
pub mod error;
pub(crate) mod extends;
pub mod frontmatter;
pub(crate) mod loader;
pub mod template;
pub(crate) mod types;
pub mod validate;

pub use error::ManifestError;
pub(crate) use loader::home_root;
pub use loader::{LoadOptions, load, parse_agent_file, parse_bottle_file};
pub use types::*;
pub use validate::RawBottle;

/// `[a-z][a-z0-9-]*`: the shape of bottle and agent names (and their file names).
pub(crate) fn is_valid_entity_name(name: &str) -> bool {
    let mut b = name.bytes();
    b.next().is_some_and(|c| c.is_ascii_lowercase())
        && b.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
}

#[cfg(test)]
mod tests;

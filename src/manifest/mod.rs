//! Manifests: Markdown files with YAML frontmatter that declare bottles and agents.
//!
//! Parsing and validation happen once here; everything downstream works on the typed
//! values in [`types`].

pub mod types;

pub use types::*;

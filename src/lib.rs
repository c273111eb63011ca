//! bot-bottle: run AI coding agents inside sandboxes that hold only what the operator granted.
//!
//! Data flows one way: manifest files → [`manifest`] (typed, validated) → [`plan`] (pure,
//! printable) → backend → runner (the only place a process is spawned).

pub mod backend;
pub mod cli;
pub mod doctor;
pub(crate) mod envvars;
pub mod manifest;
pub mod plan;
pub mod requests;
pub mod runner;
pub mod scan;
pub mod secret;
pub mod sidecar;
pub mod state;
pub mod yaml;

//! Supervise: the agent asks the operator for a change instead of failing on a refusal.
//!
//! Runs in the sidecar bundle next to egress. [`server`] is the MCP server the agent calls;
//! [`spool`] keeps requests and decisions inside the bundle, where the host reads and answers
//! them through the engine; [`refusals`] reads egress's audit log back; [`validate`] holds the
//! rules every proposed value must pass. `src/bin/bot-bottle-supervise.rs` is a thin main.

pub mod grants;
pub mod refusals;
pub mod server;
pub mod spool;
pub mod validate;

use std::path::PathBuf;

use grants::{Grant, Grants, now_ms};
use spool::{Decision, Lifetime, Spool, Verdict};

/// Everything that can go wrong in the supervise daemon and its spool.
#[derive(Debug, thiserror::Error)]
pub enum SuperviseError {
    #[error("cannot use `{path}`: {source}; check the path and its permissions")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "`{path}` is not a valid spool file ({message}); remove it or decide the request again"
    )]
    Corrupt { path: PathBuf, message: String },
    #[error("cannot encode a spool file: {0}")]
    Encode(#[source] serde_json::Error),
    #[error("`{0}` is not a request id (13 digits, `-`, 6 hex digits)")]
    BadId(String),
    #[error("no request `{0}`; list requests with `bot-bottle requests`")]
    UnknownRequest(String),
    #[error("request `{0}` was already decided")]
    AlreadyDecided(String),
    #[error("request `{0}` asks for a route but the decision carries none")]
    MissingRoute(String),
    #[error(
        "{waiting} requests are already waiting for the operator; wait for decisions before asking again"
    )]
    TooManyPending { waiting: usize },
}

/// Record the operator's decision in the spool and, for an approved route, make the grant
/// live in egress's grants file (through `grants`).
pub fn apply_decision(spool: &Spool, grants: &Grants, d: &Decision) -> Result<(), SuperviseError> {
    let req = spool
        .request(&d.id)?
        .ok_or_else(|| SuperviseError::UnknownRequest(d.id.clone()))?;
    let route = match (&req.change, d.verdict) {
        (spool::Change::Route(asked), Verdict::Approved) => {
            Some(d.route.clone().unwrap_or_else(|| asked.clone()))
        }
        _ => None,
    };
    spool.decide(d)?;
    if let Some(route) = route {
        let now = now_ms();
        let lifetime = d.lifetime.unwrap_or(Lifetime::Session);
        let expires_at_ms = match lifetime {
            Lifetime::Seconds(s) => Some(now.saturating_add(s.saturating_mul(1000))),
            _ => None,
        };
        grants.add(
            Grant {
                id: d.id.clone(),
                route,
                lifetime,
                expires_at_ms,
            },
            now,
        )?;
    }
    Ok(())
}

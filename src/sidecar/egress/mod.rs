//! The egress proxy: the agent's only way out.
//!
//! Every agent request passes here: host allowlist (the route table), path allowlist, TLS
//! interception with the bottle CA, credential stripping and injection, SSRF guard, secret
//! scan, audit. `src/bin/bot-bottle-egress.rs` is a thin main over [`EgressServer`].

pub mod audit;
pub mod ca;
pub mod config;
pub(crate) mod decide;
pub(crate) mod inject;
pub mod inspect;
pub mod limits;
pub(crate) mod linger;
pub mod proxy;
pub mod redact;
pub(crate) mod refuse;
pub mod reload;
pub mod routes;
pub(crate) mod smuggle;
pub mod sni;
pub(crate) mod ssrf;
pub mod target;
pub mod upstream;
pub(crate) mod wake;

pub use ca::mint_bottle_ca;
pub use config::{EgressArgs, EgressConfig, ListenAddr};
pub use proxy::EgressServer;

use std::path::PathBuf;

/// Everything that can stop the egress daemon from starting or a policy from loading.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    #[error("cannot read `{path}`: {source}; check the path and its permissions")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("routes file `{path}`: {message}")]
    Routes { path: PathBuf, message: String },
    #[error("invalid route table: {0}")]
    RouteTable(String),
    #[error("certificate authority: {0}")]
    Ca(String),
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("cannot listen on `{addr}`: {source}; pick a free address or remove the stale socket")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open audit log `{path}`: {source}; check the directory exists and is writable")]
    Audit {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid argument: {0}")]
    Argument(String),
}

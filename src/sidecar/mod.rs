//! Daemons that run in the sidecar bundle; `src/bin/` holds their thin mains.

pub mod daemon;
pub mod egress;
pub mod git_gate;
pub mod init;
pub mod relay;
pub mod supervise;
pub(crate) mod wire;

//! Which credentials a bottle uses and whether the host has them. `start` refuses a missing
//! one (the error names the bottle file); `info` records it as "not set" instead, so the same
//! resolved plan can describe a bottle before its credentials are exported. Never a value.

use super::{HostEnv, PlanError};
use crate::secret::Secret;

/// One credential the bottle uses.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct CredentialUse {
    /// What needs it: `agent_provider.auth_token`, `egress <host>`, `env.NAME`,
    /// `agent_provider.forward_host_credentials`.
    pub(crate) used_by: String,
    /// Where the value comes from: a host variable name, or the host's Codex login.
    pub(crate) source: String,
    /// Whether the host has it (a set, non-empty variable; a usable login).
    pub set: bool,
}

/// Records every credential read during resolution.
#[derive(Debug, Default)]
pub(crate) struct Creds {
    /// Record a missing credential instead of refusing (for `info`).
    pub(crate) record_unset: bool,
    pub(crate) uses: Vec<CredentialUse>,
}

impl Creds {
    pub(crate) fn strict() -> Creds {
        Creds::default()
    }

    pub(crate) fn note(&mut self, used_by: &str, source: &str, set: bool) {
        let entry = CredentialUse {
            used_by: used_by.to_string(),
            source: source.to_string(),
            set,
        };
        if !self.uses.contains(&entry) {
            self.uses.push(entry);
        }
    }

    /// A host variable holding a credential: its value, or `missing()` (refusing), or an
    /// empty stand-in recorded as not set.
    pub(crate) fn var(
        &mut self,
        host: &HostEnv,
        var: &str,
        used_by: &str,
        missing: impl FnOnce() -> PlanError,
    ) -> Result<Secret, PlanError> {
        match host.var_nonempty(var) {
            Some(v) => {
                self.note(used_by, var, true);
                Ok(Secret::new(v))
            }
            None if self.record_unset => {
                self.note(used_by, var, false);
                Ok(Secret::new(""))
            }
            None => Err(missing()),
        }
    }
}

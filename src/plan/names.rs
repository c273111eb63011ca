//! Identity and resource names. Every resource a bottle creates is named `bot-bottle-…` from
//! its identity, so `cleanup` can always find it, and a fresh identity carries a random part
//! so parallel starts of one agent never collide.

use super::PlanError;

/// Prefix shared by every resource a bottle creates.
pub(crate) const PREFIX: &str = "bot-bottle-";
/// Highest `-N` suffix tried when the bottle's names are taken.
pub(crate) const MAX_NAME_ATTEMPTS: u32 = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// The identity these names derive from (the plan's, or `<id>-N` on a retry).
    pub identity: String,
    /// Compose project `bot-bottle-<id>`.
    pub(crate) project: String,
    /// Agent container `bot-bottle-<id>`, or the `BOT_BOTTLE_CONTAINER` pin.
    pub(crate) agent_container: String,
    /// Sidecar bundle `bot-bottle-sidecars-<id>`.
    pub(crate) sidecar_container: String,
    /// Internal network `bot-bottle-net-<id>` (no route out).
    pub(crate) internal_network: String,
    /// Egress network `bot-bottle-egress-<id>`.
    pub(crate) egress_network: String,
    /// The agent container name came from `BOT_BOTTLE_CONTAINER`: a taken name is an error
    /// instead of a retry.
    pub(crate) container_pinned: bool,
    /// The identity is pinned (a resume): it is never retried under another name.
    pub(crate) identity_pinned: bool,
}

impl Names {
    pub fn new(
        identity: &str,
        pinned_container: Option<&str>,
        identity_pinned: bool,
    ) -> Result<Names, PlanError> {
        let pinned = pinned_container.filter(|c| !c.is_empty());
        if let Some(c) = pinned {
            if !is_valid_pinned_container(c) {
                return Err(PlanError::BadPinnedContainer(c.to_string()));
            }
        }
        Ok(Names {
            identity: identity.to_string(),
            project: format!("{PREFIX}{identity}"),
            agent_container: pinned.map_or_else(|| format!("{PREFIX}{identity}"), str::to_string),
            sidecar_container: format!("{PREFIX}sidecars-{identity}"),
            internal_network: format!("{PREFIX}net-{identity}"),
            egress_network: format!("{PREFIX}egress-{identity}"),
            container_pinned: pinned.is_some(),
            identity_pinned,
        })
    }

    /// The names to try on `attempt` (1-based) when an earlier attempt's were taken: these
    /// names, then those of identity `<id>-2`, `<id>-3` … up to [`MAX_NAME_ATTEMPTS`]. Every
    /// name moves together (a taken identity is taken for all its resources). A pinned
    /// container name or a resumed identity has only the first attempt.
    pub(crate) fn attempt(&self, attempt: u32) -> Option<Names> {
        match attempt {
            0 => None,
            1 => Some(self.clone()),
            _ if self.container_pinned || self.identity_pinned || attempt > MAX_NAME_ATTEMPTS => {
                None
            }
            n => Names::new(&format!("{}-{n}", self.identity), None, false).ok(),
        }
    }
}

/// The agent name reduced to `[a-z0-9-]`, no leading/trailing/double `-`.
pub(crate) fn slug(agent: &str) -> String {
    let mut out = String::with_capacity(agent.len());
    for c in agent.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let trimmed = out.trim_end_matches('-');
    if trimmed.is_empty() {
        "agent".to_string()
    } else {
        trimmed.to_string()
    }
}

/// A fresh identity `<agent-slug>-<suffix>`.
pub(crate) fn mint_identity(agent: &str, random_suffix: &str) -> String {
    format!("{}-{}", slug(agent), random_suffix)
}

/// A pinned (resumed) identity must be a plain name: it becomes a path under `state/` and part
/// of every resource name.
pub(crate) fn check_identity(identity: &str) -> Result<(), PlanError> {
    let ok = !identity.is_empty()
        && identity.len() <= 128
        && identity
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !identity.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(PlanError::InvalidIdentity(identity.to_string()))
    }
}

fn is_valid_pinned_container(name: &str) -> bool {
    name.starts_with(PREFIX)
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slug_keeps_valid_names_and_cleans_others() {
        assert_eq!(slug("reviewer"), "reviewer");
        assert_eq!(slug("code-review2"), "code-review2");
        assert_eq!(slug("My Agent!!x"), "my-agent-x");
        assert_eq!(slug("--"), "agent");
    }

    #[test]
    fn minted_identity_is_slug_dash_suffix() {
        assert_eq!(mint_identity("reviewer", "k3j9x2"), "reviewer-k3j9x2");
        assert_ne!(
            mint_identity("reviewer", "aaaaaa"),
            mint_identity("reviewer", "bbbbbb")
        );
    }

    #[test]
    fn names_follow_the_prefix_scheme() {
        let n = Names::new("dev-abc123", None, false).unwrap();
        assert_eq!(n.project, "bot-bottle-dev-abc123");
        assert_eq!(n.agent_container, "bot-bottle-dev-abc123");
        assert_eq!(n.sidecar_container, "bot-bottle-sidecars-dev-abc123");
        assert_eq!(n.internal_network, "bot-bottle-net-dev-abc123");
        assert_eq!(n.egress_network, "bot-bottle-egress-dev-abc123");
        assert!(!n.container_pinned);
        for name in [
            &n.project,
            &n.agent_container,
            &n.sidecar_container,
            &n.internal_network,
            &n.egress_network,
        ] {
            assert!(name.starts_with(PREFIX));
        }
    }

    #[test]
    fn pinned_container_is_used_and_marked() {
        let n = Names::new("dev-abc123", Some("bot-bottle-mine"), false).unwrap();
        assert_eq!(n.agent_container, "bot-bottle-mine");
        assert!(n.container_pinned);
        assert_eq!(n.project, "bot-bottle-dev-abc123");
        // An empty pin is no pin.
        assert!(!Names::new("x-1", Some(""), false).unwrap().container_pinned);
    }

    #[test]
    fn pinned_container_must_carry_the_prefix_and_be_a_docker_name() {
        for bad in ["mine", "bot-bottle-a b", "bot-bottle-x;rm", "/bot-bottle-x"] {
            let err = Names::new("x-1", Some(bad), false).unwrap_err();
            assert!(matches!(err, PlanError::BadPinnedContainer(_)), "{bad}");
        }
    }

    #[test]
    fn attempts_retry_every_name_up_to_the_limit_unless_pinned() {
        let n = Names::new("d-1", None, false).unwrap();
        assert_eq!(n.attempt(1).as_ref(), Some(&n));
        let second = n.attempt(2).unwrap();
        assert_eq!(second.identity, "d-1-2");
        assert_eq!(second.agent_container, "bot-bottle-d-1-2");
        assert_eq!(second.sidecar_container, "bot-bottle-sidecars-d-1-2");
        assert_eq!(second.project, "bot-bottle-d-1-2");
        assert_eq!(
            n.attempt(100).map(|a| a.agent_container).as_deref(),
            Some("bot-bottle-d-1-100")
        );
        assert_eq!(n.attempt(101), None);
        assert_eq!(n.attempt(0), None);
        let p = Names::new("d-1", Some("bot-bottle-pin"), false).unwrap();
        assert_eq!(
            p.attempt(1).map(|a| a.agent_container).as_deref(),
            Some("bot-bottle-pin")
        );
        assert_eq!(p.attempt(2), None);
        let resumed = Names::new("d-1", None, true).unwrap();
        assert!(resumed.attempt(1).is_some());
        assert_eq!(resumed.attempt(2), None);
    }

    #[test]
    fn resumed_identity_must_be_a_plain_name() {
        assert!(check_identity("dev-abc123").is_ok());
        for bad in ["", "../etc", "a/b", "Dev", "-x", "a b"] {
            assert!(check_identity(bad).is_err(), "{bad}");
        }
    }
}

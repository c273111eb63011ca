//! How a git-gate refusal is named in its audit line, which is also the refusal event the
//! host reads (`crate::sidecar::supervise::refusals`): layer [`LAYER`] for every check, and a
//! rule that says which one refused. The agent reads the full sentence after `remote:`; the
//! operator reads [`hint`] beside the event.

/// The layer of every git-gate refusal.
pub(crate) const LAYER: &str = "git-gate";
/// The rule of a refusal by gitleaks (the second opinion).
pub(crate) const GITLEAKS_RULE: &str = "gitleaks";
/// Prefix of the rule of a refusal by the gate's own secret scan.
const SCAN_PREFIX: &str = "secret-scan:";

/// The rule of a refusal by the secret scan: `secret-scan:<scanner rule id>`.
pub(crate) fn scan_rule(scanner_rule: &str) -> String {
    format!("{SCAN_PREFIX}{scanner_rule}")
}

/// What the agent (or the operator) can do about a git-gate refusal with `rule`.
pub(crate) fn hint(rule: &str) -> &'static str {
    if rule.starts_with("ref-") {
        "the bottle's git-gate ref policy does not allow this update; push to a ref it allows, or ask the operator to change `git-gate.repos[].refs` in the bottle file"
    } else if rule.starts_with(SCAN_PREFIX) || rule == GITLEAKS_RULE {
        "a commit of the push carries a credential-shaped value; remove it from every commit (rewrite the history), then push again; nothing reached the upstream"
    } else if rule.starts_with("upstream-") {
        "the upstream refused or could not be reached; retry later or tell the operator"
    } else if rule == "repo-not-declared" {
        "only the repos in the bottle's `git-gate.repos` are served; ask the operator to declare it"
    } else {
        "use the gate's URLs for the declared repos (git's own requests); tell the operator if this persists"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_the_gate_writes_has_its_own_hint() {
        assert!(hint("ref-force").contains("ref policy"));
        assert!(hint(&scan_rule("aws-access-key-id")).contains("rewrite the history"));
        assert_eq!(hint(GITLEAKS_RULE), hint(&scan_rule("x")));
        assert!(hint("upstream-unreachable").contains("retry later"));
        assert!(hint("repo-not-declared").contains("git-gate.repos"));
        assert!(hint("gate-error").contains("tell the operator"));
    }
}

//! Secret scanner shared by the egress proxy and the git-gate.
//!
//! Contract (implementation pending): rules are compiled once; `scan` returns the first
//! credential-shaped match with the rule that found it, never the matched value.

/// A match: which rule fired. Deliberately holds no part of the matched value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Stable rule id, e.g. `aws-access-key-id`.
    pub rule: &'static str,
    /// Human description, e.g. `AWS access key id`.
    pub description: &'static str,
}

/// Compiled rule set. Cheap to share (`Arc`) across connections.
#[derive(Debug, Default)]
pub struct Scanner {}

impl Scanner {
    pub fn new() -> Self {
        Scanner {}
    }

    /// Scan raw bytes (URL, header value, body chunk) for a credential shape.
    pub fn scan(&self, _data: &[u8]) -> Option<Finding> {
        None
    }
}

//! Secret scanner shared by the egress proxy and the git-gate.

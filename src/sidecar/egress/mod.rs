//! The egress proxy: the agent's only way out.

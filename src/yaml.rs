//! The one place YAML is parsed or written.

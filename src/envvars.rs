//! Every `BOT_BOTTLE_*` environment variable the tools read, in one place.

/// Home root override (default `~/.bot-bottle`).
pub(crate) const HOME: &str = "BOT_BOTTLE_HOME";
/// `1` makes `start` behave as `start --dry-run`.
pub(crate) const DRY_RUN: &str = "BOT_BOTTLE_DRY_RUN";
/// Pins the agent container name (error if taken).
pub(crate) const CONTAINER: &str = "BOT_BOTTLE_CONTAINER";
/// Overrides the agent image.
pub(crate) const IMAGE: &str = "BOT_BOTTLE_IMAGE";
/// Extra CA certificates (PEM file or directory) for image builds and egress upstream trust.
pub(crate) const EXTRA_CA_CERTS: &str = "BOT_BOTTLE_EXTRA_CA_CERTS";
/// Daemons the sidecar init starts (comma separated).
pub(crate) const SIDECAR_DAEMONS: &str = "BOT_BOTTLE_SIDECAR_DAEMONS";
/// Directory holding each sidecar daemon's argv as `<name>.args.json` (a JSON array of strings).
pub(crate) const SIDECAR_CONFIG_DIR: &str = "BOT_BOTTLE_SIDECAR_CONFIG_DIR";
/// Grace period between SIGTERM and SIGKILL when the sidecar init stops (`5s`, `500ms`).
pub(crate) const SIDECAR_STOP_TIMEOUT: &str = "BOT_BOTTLE_SIDECAR_STOP_TIMEOUT";
/// A published sidecar image to use instead of building one.
pub(crate) const SIDECAR_IMAGE: &str = "BOT_BOTTLE_SIDECAR_IMAGE";
/// Test-only weakening of a bottle (`network`: the agent gets a normal network, under runc; `runc`: the
/// agent runs under runc even when gVisor is registered). Read only by debug builds (see
/// `plan::Weakening` and decision 0035); a release build ignores it.
pub(crate) const TEST_WEAKEN: &str = "BOT_BOTTLE_TEST_WEAKEN";

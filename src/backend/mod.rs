//! Backends: where a bottle runs. Each turns a resolved plan into resources through the
//! runner (the only place a process is spawned) and can find and remove what it created.

pub mod docker;
pub mod interrupt;
pub mod smolmachines;

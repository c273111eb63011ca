//! `bot-bottle dashboard` (SPEC F-DASH): pending requests, live refusals and running bottles
//! in one terminal screen. [`app`] is the state machine; the rest carries out its effects.

// Wired to the terminal in the next step.
#[allow(dead_code)]
mod app;
#[allow(dead_code)]
mod view;

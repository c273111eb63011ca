//! Command-line entry: clap definitions and dispatch. Each command is a thin function over
//! the library layers; errors become one `bot-bottle: error:` line and an exit code here.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "bot-bottle",
    version,
    about = "Run AI coding agents with full permissions inside sandboxes that hold only what you granted",
    propagate_version = true
)]
pub struct Cli {
    /// More log output (repeat for more); `RUST_LOG` works too.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start an agent in a new bottle.
    Start,
}

pub fn main() -> ExitCode {
    let _cli = Cli::parse();
    eprintln!("bot-bottle: error: not available yet");
    ExitCode::from(1)
}

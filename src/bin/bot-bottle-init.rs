//! `bot-bottle-init`: the sidecar bundle's entrypoint (see `bot_bottle::sidecar::init`).

use std::io::Write;
use std::process::ExitCode;

use bot_bottle::sidecar::init::{self, InitConfig};

fn main() -> ExitCode {
    // Before anything else: a stop signal sent while we start must wait in the queue.
    let claimed = init::claim_signals();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        // A broken log pipe must not panic the init and leave its daemons running.
        .log_internal_errors(false)
        .init();
    let code = match claimed.map(|()| InitConfig::from_env()) {
        Err(e) => report(e.into(), 1),
        Ok(Err(e)) => report(e.into(), init::EXIT_CONFIG),
        Ok(Ok(config)) => init::run(&config).unwrap_or_else(|e| report(e.into(), 1)),
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// Prints the one error line (ignoring a closed stderr) and returns `code`.
fn report(e: anyhow::Error, code: i32) -> i32 {
    let _ = writeln!(std::io::stderr(), "bot-bottle-init: error: {e}");
    code
}

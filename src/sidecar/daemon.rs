//! The edge every sidecar daemon's `main` shares, so they all answer alike: `--help` exits 0,
//! a bad argument or a failed run is one `<daemon>: error: …` line and exit 1, and logging
//! follows `BOT_BOTTLE_LOG` (default `warn`) on stderr.

use std::fmt::Display;
use std::process::ExitCode;

/// Parse argv into `A`, set up logging, run, and map the outcome to an exit code.
pub fn main<A, E>(daemon: &str, run: impl FnOnce(A) -> Result<(), E>) -> ExitCode
where
    A: clap::Parser,
    E: Display,
{
    let args = match A::try_parse() {
        Ok(a) => a,
        Err(e) => return usage_exit(daemon, &e),
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BOT_BOTTLE_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` shows an error's whole chain on one line.
            eprintln!("{daemon}: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// `--help` succeeds; a bad argument is a one-line error and exit 1, like every other error.
fn usage_exit(daemon: &str, e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    eprintln!(
        "{daemon}: error: {}; see --help",
        first_line(&e.render().to_string())
    );
    ExitCode::from(1)
}

/// clap's first line without its `error: ` prefix.
fn first_line(rendered: &str) -> &str {
    let first = rendered.lines().next().unwrap_or("invalid arguments");
    first.strip_prefix("error: ").unwrap_or(first)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_first_line_loses_clap_prefix() {
        assert_eq!(
            super::first_line("error: unexpected argument '--x' found\n\nUsage: …"),
            "unexpected argument '--x' found"
        );
        assert_eq!(super::first_line(""), "invalid arguments");
    }
}

//! Message helpers: everything human goes to stderr with a `bot-bottle:` prefix; data goes to
//! stdout. A closed stdout pipe is not an error.

use std::io::Write;

/// Print an error as the single `bot-bottle: error: …` line the CLI promises. The anyhow
/// chain is joined on one line; control characters are escaped so input cannot forge lines.
pub(crate) fn error_line(e: &anyhow::Error) {
    let mut text = String::new();
    for (i, cause) in e.chain().enumerate() {
        if i > 0 {
            text.push_str(": ");
        }
        text.push_str(&cause.to_string());
    }
    let _ = writeln!(
        std::io::stderr().lock(),
        "bot-bottle: error: {}",
        one_line(&text)
    );
}

pub(crate) fn warn(msg: &str) {
    let _ = writeln!(
        std::io::stderr().lock(),
        "bot-bottle: warning: {}",
        one_line(msg)
    );
}

pub(crate) fn say(msg: &str) {
    let _ = writeln!(std::io::stderr().lock(), "bot-bottle: {msg}");
}

/// The backends' progress and warnings, printed like every other CLI message.
pub(crate) struct CliUi;

impl crate::backend::Ui for CliUi {
    fn say(&self, msg: &str) {
        say(msg);
    }

    fn warn(&self, msg: &str) {
        warn(msg);
    }
}

/// Write data to stdout; a broken pipe (`| head`) ends quietly.
pub(crate) fn stdout_write(data: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(data.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\n' | '\r' => ' ',
            c if c.is_control() => '?',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn control_characters_cannot_break_the_line() {
        assert_eq!(one_line("a\nb\x1b[31mc"), "a b?[31mc");
    }
}

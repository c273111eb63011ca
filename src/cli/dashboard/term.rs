//! The terminal edge: raw mode and the alternate screen behind a guard, restored when the
//! guard drops, before a session runs in this terminal, and from the panic hook. A crash or
//! fatal error is shown after the terminal is back and written to `<root>/logs/`.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crossterm::cursor::Show;
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use crossterm::terminal::{EnterAlternateScreen, LeaveAlternateScreen};

use super::app::Key;

/// Holds the terminal in dashboard mode; dropping it gives the terminal back.
pub(crate) struct Guard;

impl Guard {
    pub(crate) fn enter() -> io::Result<Guard> {
        enter()?;
        Ok(Guard)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = restore(&mut io::stdout());
    }
}

/// Raw mode and the alternate screen.
pub(crate) fn enter() -> io::Result<()> {
    crossterm::terminal::enable_raw_mode()?;
    crossterm::execute!(io::stdout(), EnterAlternateScreen)
}

/// Leave the alternate screen, show the cursor and end raw mode. Safe to call twice, and
/// without a terminal (then only the escape sequences are written to `out`).
pub(crate) fn restore(out: &mut dyn Write) -> io::Result<()> {
    // Raw mode ends first so the messages that follow print with normal line endings.
    let raw = crossterm::terminal::disable_raw_mode();
    let mut out = out;
    crossterm::execute!(&mut out, LeaveAlternateScreen, Show)?;
    raw
}

/// `<root>/logs/dashboard-<unix ms>.log` with `message`; the path written.
pub(crate) fn write_crash_log(logs: &Path, now: SystemTime, message: &str) -> io::Result<PathBuf> {
    std::fs::create_dir_all(logs)?;
    let ms = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let path = logs.join(format!("dashboard-{ms}.log"));
    let time = humantime::format_rfc3339_millis(now);
    std::fs::write(&path, format!("{time} bot-bottle dashboard: {message}\n"))?;
    Ok(path)
}

/// What the operator reads after a fatal error: the terminal is restored through `out`
/// first, the message is logged, and the one line to print is returned.
pub(crate) fn fatal(out: &mut dyn Write, logs: &Path, now: SystemTime, message: &str) -> String {
    let _ = restore(out);
    let message: String = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match write_crash_log(logs, now, &message) {
        Ok(p) => format!(
            "the dashboard stopped: {message}; details in {}",
            p.display()
        ),
        Err(e) => format!(
            "the dashboard stopped: {message}; the log could not be written to {} ({e})",
            logs.display()
        ),
    }
}

/// A panic in the dashboard restores the terminal, logs the message and prints one line,
/// instead of leaving the shell in raw mode on the alternate screen.
pub(crate) fn install_panic_hook(logs: PathBuf) {
    std::panic::set_hook(Box::new(move |info| {
        let payload = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".into());
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let line = fatal(
            &mut io::stdout(),
            &logs,
            SystemTime::now(),
            &format!("internal error: {payload}{place}"),
        );
        let _ = writeln!(io::stderr(), "bot-bottle: error: {line}");
    }));
}

/// Put back the hook Rust prints panics with (after the dashboard ended).
pub(crate) fn remove_panic_hook() {
    let _ = std::panic::take_hook();
}

/// A terminal key press as the state machine's [`Key`]; releases and other keys are `None`.
pub(crate) fn key(ev: KeyEvent) -> Option<Key> {
    if ev.kind == KeyEventKind::Release {
        return None;
    }
    let ctrl = ev.modifiers.contains(KeyModifiers::CONTROL);
    Some(match ev.code {
        KeyCode::Char('c') if ctrl => Key::CtrlC,
        KeyCode::Char(_) if ctrl => return None,
        KeyCode::Char(c) => Key::Char(c),
        KeyCode::Enter => Key::Enter,
        KeyCode::Esc => Key::Esc,
        KeyCode::Up => Key::Up,
        KeyCode::Down => Key::Down,
        KeyCode::Left => Key::Left,
        KeyCode::Right => Key::Right,
        KeyCode::Tab => Key::Tab,
        KeyCode::BackTab => Key::BackTab,
        KeyCode::Backspace => Key::Backspace,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fatal_error_restores_the_terminal_and_is_logged() {
        let root = tempfile::tempdir().unwrap();
        let logs = root.path().join("logs");
        let mut out = Vec::new();
        let now = UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123);
        let line = fatal(&mut out, &logs, now, "cannot read\nthe queue");
        let shown = String::from_utf8_lossy(&out);
        assert!(
            shown.contains("\x1b[?1049l"),
            "alternate screen left: {shown:?}"
        );
        assert!(shown.contains("\x1b[?25h"), "cursor shown: {shown:?}");
        let path = logs.join("dashboard-1700000000123.log");
        let logged = std::fs::read_to_string(&path).unwrap();
        assert!(
            logged.starts_with("2023-11-14T22:13:20.123Z bot-bottle dashboard: "),
            "{logged}"
        );
        assert!(
            logged.contains("cannot read the queue"),
            "one line: {logged}"
        );
        assert_eq!(
            line,
            format!(
                "the dashboard stopped: cannot read the queue; details in {}",
                path.display()
            )
        );
    }

    #[test]
    fn a_log_that_cannot_be_written_is_named_in_the_message() {
        let root = tempfile::tempdir().unwrap();
        // `logs` is a file, so the directory cannot be made.
        let logs = root.path().join("logs");
        std::fs::write(&logs, "").unwrap();
        let line = fatal(&mut Vec::new(), &logs, SystemTime::now(), "boom");
        assert!(line.contains("the log could not be written"), "{line}");
    }

    #[test]
    fn restoring_twice_is_harmless() {
        let mut out = Vec::new();
        restore(&mut out).unwrap();
        restore(&mut out).unwrap();
    }

    #[test]
    fn keys_map_to_the_state_machine() {
        let k = |code, m| key(KeyEvent::new(code, m));
        assert_eq!(
            k(KeyCode::Char('c'), KeyModifiers::CONTROL),
            Some(Key::CtrlC)
        );
        assert_eq!(
            k(KeyCode::Char('a'), KeyModifiers::NONE),
            Some(Key::Char('a'))
        );
        assert_eq!(k(KeyCode::Char('a'), KeyModifiers::CONTROL), None);
        assert_eq!(k(KeyCode::F(1), KeyModifiers::NONE), None);
        let mut release = KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE);
        release.kind = KeyEventKind::Release;
        assert_eq!(key(release), None);
    }
}

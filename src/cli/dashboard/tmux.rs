//! tmux commands as values: sessions open in one right-hand pane beside the dashboard,
//! which later sessions reuse (`respawn-pane`) while it is there.

use std::path::Path;

use crate::runner::ProcessSpec;

/// `tmux split-window`: a new pane to the right running `argv`, printing its pane id.
/// `env` is passed with `-e` because a pane starts from the tmux server's environment, not
/// the dashboard's (`BOT_BOTTLE_HOME` must reach the session).
pub(crate) fn split(argv: &[String], env: &[(String, String)], cwd: &Path) -> ProcessSpec {
    let mut spec = ProcessSpec::new("tmux").args(["split-window", "-h", "-P", "-F", "#{pane_id}"]);
    spec = spec.arg("-c").arg(cwd.display().to_string());
    for (k, v) in env {
        spec = spec.arg("-e").arg(format!("{k}={v}"));
    }
    spec.arg("--").args(argv.iter().cloned())
}

/// `tmux respawn-pane -k`: run `argv` in the pane `pane` (ending what ran there).
pub(crate) fn respawn(
    pane: &str,
    argv: &[String],
    env: &[(String, String)],
    cwd: &Path,
) -> ProcessSpec {
    let mut spec = ProcessSpec::new("tmux").args(["respawn-pane", "-k", "-t", pane]);
    spec = spec.arg("-c").arg(cwd.display().to_string());
    for (k, v) in env {
        spec = spec.arg("-e").arg(format!("{k}={v}"));
    }
    spec.arg("--").args(argv.iter().cloned())
}

/// `tmux select-pane`: move the keyboard to `pane`.
pub(crate) fn select(pane: &str) -> ProcessSpec {
    ProcessSpec::new("tmux").args(["select-pane", "-t", pane])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_and_respawn_carry_the_environment_and_the_command() {
        let argv = vec!["/bin/bot-bottle".to_string(), "exec".into(), "dev-1".into()];
        let env = vec![("BOT_BOTTLE_HOME".to_string(), "/h".to_string())];
        let s = split(&argv, &env, Path::new("/w"));
        assert_eq!(
            s.argv(),
            [
                "tmux",
                "split-window",
                "-h",
                "-P",
                "-F",
                "#{pane_id}",
                "-c",
                "/w",
                "-e",
                "BOT_BOTTLE_HOME=/h",
                "--",
                "/bin/bot-bottle",
                "exec",
                "dev-1"
            ]
        );
        let r = respawn("%3", &argv, &env, Path::new("/w"));
        assert_eq!(r.argv()[..5], ["tmux", "respawn-pane", "-k", "-t", "%3"]);
        assert_eq!(
            r.argv()[r.argv().len() - 4..],
            ["--", "/bin/bot-bottle", "exec", "dev-1"]
        );
        assert_eq!(select("%3").argv(), ["tmux", "select-pane", "-t", "%3"]);
    }
}

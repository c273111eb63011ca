//! `bot-bottle dashboard` (SPEC F-DASH): pending requests, live refusals and running bottles
//! in one terminal screen.
//!
//! [`app`] is the state machine (keys and data in, effects out), [`view`] draws it, [`term`]
//! owns the terminal, [`work`] does the I/O on two background threads (a poller and an
//! effect worker), and [`tmux`] builds the pane commands. This file is the loop between them.

mod app;
mod term;
mod tmux;
mod view;
mod work;

use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

use app::{App, Effect, Event};
use work::Ctx;

use crate::runner::{RealRunner, Runner};

/// How long the loop waits for a key before it looks at the data channel.
const KEY_WAIT: Duration = Duration::from_millis(100);

/// `bot-bottle dashboard`.
pub(crate) fn dashboard() -> anyhow::Result<ExitCode> {
    if !std::io::stdin().is_terminal() || !std::io::stdout().is_terminal() {
        anyhow::bail!(
            "the dashboard needs a terminal; run it in one, or use `bot-bottle requests` and `bot-bottle approve` from scripts"
        );
    }
    let root = super::context::home_root()?;
    let cwd = std::env::current_dir()?;
    let exe = std::env::current_exe()?;
    let env = std::env::vars()
        .filter(|(k, _)| k.starts_with("BOT_BOTTLE_"))
        .collect();
    let ctx = Ctx {
        root: root.clone(),
        cwd,
        exe,
        env,
    };
    let tmux = std::env::var_os("TMUX").is_some_and(|v| !v.is_empty());

    let (event_tx, event_rx) = mpsc::channel::<Event>();
    let (effect_tx, effect_rx) = mpsc::channel::<Effect>();
    let (wake_tx, wake_rx) = mpsc::channel::<()>();
    {
        let (ctx, tx) = (ctx.clone(), event_tx.clone());
        std::thread::spawn(move || work::poll_loop(&ctx, &RealRunner, &tx, &wake_rx));
    }
    {
        let (ctx, tx) = (ctx.clone(), event_tx);
        std::thread::spawn(move || {
            work::work_loop(&ctx, &RealRunner, &effect_rx, &tx, &wake_tx);
        });
    }

    let logs = root.join("logs");
    term::install_panic_hook(logs.clone());
    let result = term::Guard::enter()
        .map_err(anyhow::Error::from)
        .and_then(|guard| {
            let r = run(&ctx, App::new(tmux), &event_rx, &effect_tx);
            drop(guard);
            r
        });
    term::remove_panic_hook();
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            let line = term::fatal(
                &mut std::io::stdout(),
                &logs,
                SystemTime::now(),
                &format!("{e:#}"),
            );
            anyhow::bail!("{line}")
        }
    }
}

/// Draw, read a key or data, apply it, carry out the effects; until `Quit`.
fn run(
    ctx: &Ctx,
    mut app: App,
    events: &mpsc::Receiver<Event>,
    effects: &mpsc::Sender<Effect>,
) -> anyhow::Result<()> {
    let mut terminal = Terminal::new(CrosstermBackend::new(std::io::stdout()))?;
    terminal.clear()?;
    loop {
        terminal.draw(|f| view::draw(f, &app))?;
        let mut batch = Vec::new();
        if crossterm::event::poll(KEY_WAIT)? {
            if let crossterm::event::Event::Key(k) = crossterm::event::read()? {
                batch.extend(term::key(k).map(Event::Key));
            }
        }
        batch.extend(events.try_iter());
        let mut todo: Vec<Effect> = batch.into_iter().flat_map(|ev| app.handle(ev)).collect();
        while !todo.is_empty() {
            let mut next = Vec::new();
            for effect in todo {
                match effect {
                    Effect::Quit => return Ok(()),
                    Effect::Bell => {
                        let mut out = std::io::stdout();
                        out.write_all(b"\x07")?;
                        out.flush()?;
                    }
                    Effect::RunHere(session) => {
                        let done = run_here(ctx, &session)?;
                        terminal.clear()?;
                        next.extend(app.handle(done));
                    }
                    other => {
                        // The worker lives as long as this loop; a send fails only after it died.
                        effects.send(other).map_err(|_| {
                            anyhow::anyhow!("the dashboard's worker thread stopped")
                        })?;
                    }
                }
            }
            todo = next;
        }
    }
}

/// Give the terminal to a session (attach, launch) and take it back when the session ends.
fn run_here(ctx: &Ctx, session: &app::Session) -> anyhow::Result<Event> {
    term::restore(&mut std::io::stdout())?;
    super::say(&format!(
        "{}; the dashboard comes back when it ends",
        session.title
    ));
    let result = RealRunner.run_interactive(&ctx.session_spec(session));
    term::enter()?;
    Ok(Event::Done(match result {
        Ok(0) => Ok(format!("{} ended", session.title)),
        Ok(code) => Err(format!("{} ended with exit code {code}", session.title)),
        Err(e) => Err(e.to_string()),
    }))
}

//! Drawing the dashboard state with ratatui: three panes, a key line, a status line, and the
//! open form on top. Works on any backend, so tests read the rendered buffer of a
//! `TestBackend`.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, List, ListItem, ListState, Paragraph, Wrap};

use super::app::{
    App, BACKENDS, CHOICES, Choice, DiffLine, Feed, Mode, Pane, RouteForm, request_line,
};

/// Draw the whole screen.
pub(crate) fn draw(f: &mut Frame, app: &App) {
    let [header, body, keys, status] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(6),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(f.area());
    f.render_widget(
        Paragraph::new("bot-bottle dashboard").style(Style::new().add_modifier(Modifier::BOLD)),
        header,
    );
    let [requests, refusals, bottles] = Layout::vertical([
        Constraint::Percentage(40),
        Constraint::Percentage(30),
        Constraint::Percentage(30),
    ])
    .areas(body);
    draw_requests(f, app, requests);
    draw_refusals(f, app, refusals);
    draw_bottles(f, app, bottles);
    f.render_widget(
        Paragraph::new(key_help(app)).style(Style::new().fg(Color::DarkGray)),
        keys,
    );
    if let Some(s) = &app.status {
        let line = if s.error {
            Line::from(Span::styled(
                format!("error: {}", s.text),
                Style::new().fg(Color::Red),
            ))
        } else {
            Line::from(s.text.as_str())
        };
        f.render_widget(Paragraph::new(line), status);
    }
    draw_mode(f, app);
}

fn pane_block(title: String, focused: bool) -> Block<'static> {
    let style = if focused {
        Style::new().fg(Color::Cyan)
    } else {
        Style::new()
    };
    Block::new()
        .borders(Borders::ALL)
        .border_style(style)
        .title(title)
}

fn draw_list(
    f: &mut Frame,
    app: &App,
    pane: Pane,
    area: Rect,
    title: String,
    rows: Vec<String>,
    empty: &str,
) {
    let focused = app.pane == pane;
    let block = pane_block(title, focused);
    if rows.is_empty() {
        f.render_widget(
            Paragraph::new(empty.to_string())
                .style(Style::new().fg(Color::DarkGray))
                .block(block),
            area,
        );
        return;
    }
    let items: Vec<ListItem> = rows.into_iter().map(ListItem::new).collect();
    let list = List::new(items)
        .block(block)
        .highlight_symbol("> ")
        .highlight_style(if focused {
            Style::new().add_modifier(Modifier::REVERSED)
        } else {
            Style::new()
        });
    let mut state = ListState::default().with_selected(Some(app.selected(pane)));
    f.render_stateful_widget(list, area, &mut state);
}

fn draw_requests(f: &mut Frame, app: &App, area: Rect) {
    let rows = app.requests.iter().map(request_line).collect();
    draw_list(
        f,
        app,
        Pane::Requests,
        area,
        format!(" Pending requests ({}) ", app.requests.len()),
        rows,
        "no pending requests",
    );
}

/// The live refusal feed of one bottle (the one selected below, or each in turn with `b`),
/// or of all of them with a bottle column.
fn draw_refusals(f: &mut Frame, app: &App, area: Rect) {
    let shown = app.feed_refusals();
    let bottle = app.feed_bottle();
    let rows = shown
        .iter()
        .map(|r| {
            let what = format!(
                "{} {}{}  x{}  {}/{}",
                r.method, r.host, r.path, r.count, r.layer, r.rule
            );
            match bottle {
                Some(_) => what,
                None => format!("{}  {what}", r.bottle),
            }
        })
        .collect();
    let (title, empty) = match (app.feed, bottle) {
        (_, Some(b)) => (
            format!(" Refusals: {b} ({}) ", shown.len()),
            format!("no refusals in {b}"),
        ),
        (Feed::All, None) => (
            format!(" Refusals: all bottles ({}) ", shown.len()),
            "no refusals".to_string(),
        ),
        (Feed::Selected, None) => (" Refusals ".to_string(), "no running bottles".to_string()),
    };
    draw_list(f, app, Pane::Refusals, area, title, rows, &empty);
}

fn draw_bottles(f: &mut Frame, app: &App, area: Rect) {
    let rows = app
        .bottles
        .iter()
        .map(|b| {
            let sidecars: Vec<&str> = b
                .services
                .iter()
                .map(String::as_str)
                .filter(|s| *s != "agent")
                .collect();
            format!(
                "{}  {}  {}  sidecars: {}",
                b.identity,
                b.agent,
                b.backend,
                if sidecars.is_empty() {
                    "none".to_string()
                } else {
                    sidecars.join(",")
                }
            )
        })
        .collect();
    draw_list(
        f,
        app,
        Pane::Bottles,
        area,
        format!(" Bottles ({}) ", app.bottles.len()),
        rows,
        "no running bottles; n starts one",
    );
}

/// The keys that do something right now.
fn key_help(app: &App) -> String {
    let common = "tab pane  n new agent  q quit";
    match &app.mode {
        Mode::Normal => match app.pane {
            Pane::Requests => format!("a approve  e edit  r reject  d diff  {common}"),
            Pane::Refusals => {
                let git = app
                    .feed_refusals()
                    .get(app.selected(Pane::Refusals))
                    .is_some_and(|r| r.is_git());
                let p = if git {
                    "git refusal: no route to request"
                } else {
                    "p request this route"
                };
                format!("{p}  b next bottle / all  {common}")
            }
            Pane::Bottles => format!("a attach  s stop  {common}"),
        },
        Mode::Lifetime { .. } => {
            "o once  m minutes (type digits)  s session  v save  enter approve  esc cancel".into()
        }
        Mode::Edit { .. } | Mode::Propose { .. } => "tab next field  enter done  esc cancel".into(),
        Mode::Reject { .. } => "type a reason  enter reject  esc cancel".into(),
        Mode::Diff { approve, .. } => {
            if approve.is_some() {
                "enter approve  up/down scroll  esc cancel".into()
            } else {
                "up/down scroll  esc close".into()
            }
        }
        Mode::PickAgent { .. } => "type to filter  up/down  enter choose  esc cancel".into(),
        Mode::PickBackend { .. } => "up/down  enter choose  esc back".into(),
        Mode::Preflight { .. } => "enter launch  esc cancel".into(),
        Mode::ConfirmStop { .. } => "y stop  any other key cancels".into(),
    }
}

/// A box of `w` × `h` cells in the middle of `area` (clipped to it).
fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

fn modal(f: &mut Frame, title: String, lines: Vec<Line<'static>>, w: u16, h: u16) {
    let area = centered(f.area(), w, h);
    f.render_widget(Clear, area);
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(Block::new().borders(Borders::ALL).title(title)),
        area,
    );
}

fn form_lines(form: &RouteForm, fields: usize) -> Vec<Line<'static>> {
    let names = ["host", "paths", "methods", "reason"];
    let values = [&form.host, &form.paths, &form.methods, &form.reason];
    (0..fields)
        .map(|i| {
            let cursor = if i == form.field { "_" } else { "" };
            let marker = if i == form.field { "> " } else { "  " };
            Line::from(format!("{marker}{:<8}{}{cursor}", names[i], values[i]))
        })
        .collect()
}

fn draw_mode(f: &mut Frame, app: &App) {
    match &app.mode {
        Mode::Normal => {}
        Mode::Lifetime {
            id,
            route,
            choice,
            minutes,
            ..
        } => {
            let what = route
                .as_ref()
                .map(|r| format!("edited route {}", r.host))
                .or_else(|| {
                    app.requests
                        .iter()
                        .find(|e| e.request.id == *id)
                        .map(request_line)
                })
                .unwrap_or_default();
            let mut lines = vec![Line::from(what), Line::from("")];
            for c in CHOICES {
                let label = match c {
                    Choice::Minutes => format!("[m] for {minutes} minutes"),
                    Choice::Once => "[o] once: the next matching request".into(),
                    Choice::Session => "[s] until the bottle ends".into(),
                    Choice::Save => "[v] save to the bottle file (diff first)".into(),
                };
                let (mark, style) = if c == *choice {
                    ("(*) ", Style::new().add_modifier(Modifier::REVERSED))
                } else {
                    ("( ) ", Style::new())
                };
                lines.push(Line::from(Span::styled(format!("{mark}{label}"), style)));
            }
            modal(f, format!(" Approve {id} "), lines, 70, 9);
        }
        Mode::Edit { id, form, .. } => {
            modal(
                f,
                format!(" Edit {id}, then approve "),
                form_lines(form, 3),
                70,
                5,
            );
        }
        Mode::Propose { bottle, form } => {
            modal(
                f,
                format!(" Request a route for {bottle} "),
                form_lines(form, 4),
                76,
                8,
            );
        }
        Mode::Reject { id, reason } => {
            modal(
                f,
                format!(" Reject {id} "),
                vec![Line::from(format!("reason: {reason}_"))],
                70,
                3,
            );
        }
        Mode::Diff {
            title,
            lines,
            scroll,
            ..
        } => {
            let body: Vec<Line> = match lines {
                None => vec![Line::from("loading…")],
                Some(ls) => ls
                    .iter()
                    .skip(*scroll)
                    .map(|l| match l {
                        DiffLine::Same(t) => Line::from(format!("  {t}")),
                        DiffLine::Added(t) => Line::from(Span::styled(
                            format!("+ {t}"),
                            Style::new().fg(Color::Green),
                        )),
                        DiffLine::Removed(t) => {
                            Line::from(Span::styled(format!("- {t}"), Style::new().fg(Color::Red)))
                        }
                    })
                    .collect(),
            };
            let area = f.area();
            modal(
                f,
                format!(" {title} "),
                body,
                area.width.saturating_sub(4),
                area.height.saturating_sub(4),
            );
        }
        Mode::PickAgent { filter, selected } => {
            let agents = app.filtered_agents(filter);
            let mut lines = vec![Line::from(format!("agent: {filter}_")), Line::from("")];
            if agents.is_empty() {
                lines.push(Line::from("no agent matches"));
            }
            for (i, a) in agents.iter().enumerate() {
                lines.push(if i == *selected {
                    Line::from(Span::styled(
                        format!("> {a}"),
                        Style::new().add_modifier(Modifier::REVERSED),
                    ))
                } else {
                    Line::from(format!("  {a}"))
                });
            }
            modal(f, " New agent ".into(), lines, 50, 14);
        }
        Mode::PickBackend { agent, selected } => {
            let lines = BACKENDS
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    if i == *selected {
                        Line::from(Span::styled(
                            format!("> {}", b.as_str()),
                            Style::new().add_modifier(Modifier::REVERSED),
                        ))
                    } else {
                        Line::from(format!("  {}", b.as_str()))
                    }
                })
                .collect();
            modal(f, format!(" Backend for {agent} "), lines, 50, 4);
        }
        Mode::Preflight {
            agent,
            backend,
            text,
        } => {
            let body: Vec<Line> = match text {
                None => vec![Line::from("checking…")],
                Some(Ok(t)) => t.lines().map(|l| Line::from(l.to_string())).collect(),
                Some(Err(e)) => vec![Line::from(Span::styled(
                    format!("error: {e}"),
                    Style::new().fg(Color::Red),
                ))],
            };
            let area = f.area();
            modal(
                f,
                format!(" Preflight: {agent} on {} ", backend.as_str()),
                body,
                area.width.saturating_sub(4),
                area.height.saturating_sub(4),
            );
        }
        Mode::ConfirmStop { identity, .. } => {
            modal(
                f,
                " Stop ".into(),
                vec![Line::from(format!("stop {identity}? y/N"))],
                50,
                3,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    use super::super::app::{Event, Key};
    use super::*;
    use crate::backend::ActiveBottle;
    use crate::requests::Entry;
    use crate::sidecar::supervise::refusals::RefusalEvent;
    use crate::sidecar::supervise::spool::{Change, Request};
    use crate::sidecar::supervise::validate::RouteProposal;

    const ID1: &str = "0000000000001-00000a";

    fn entry(id: &str, host: &str) -> Entry {
        Entry {
            bottle: "dev-1".into(),
            request: Request {
                id: id.into(),
                created_at: "2026-12-02T10:00:00.000Z".into(),
                change: Change::Route(RouteProposal {
                    host: host.into(),
                    path_prefixes: vec!["/v1/".into()],
                    methods: vec![],
                }),
                reason: "needs the API".into(),
            },
            decision: None,
        }
    }

    /// The screen as text, one string per row.
    fn screen(app: &App) -> Vec<String> {
        let mut t = Terminal::new(TestBackend::new(100, 30)).unwrap();
        t.draw(|f| draw(f, app)).unwrap();
        let buf = t.backend().buffer().clone();
        (0..buf.area.height)
            .map(|y| {
                (0..buf.area.width)
                    .map(|x| buf[(x, y)].symbol().to_string())
                    .collect::<String>()
            })
            .collect()
    }

    fn shows(app: &App, text: &str) -> bool {
        screen(app).iter().any(|l| l.contains(text))
    }

    fn press(app: &mut App, keys: &[Key]) {
        for k in keys {
            app.handle(Event::Key(*k));
        }
    }

    #[test]
    fn a_queued_request_is_shown_with_its_bottle_and_reason() {
        let mut app = App::new(false);
        assert!(shows(&app, "no pending requests"));
        app.handle(Event::Requests(vec![entry(ID1, "api.example.com")]));
        let s = screen(&app);
        assert!(
            s.iter().any(|l| l.contains("Pending requests (1)")),
            "{s:#?}"
        );
        assert!(
            s.iter()
                .any(|l| l.contains("> dev-1  route api.example.com paths /v1/  needs the API")),
            "{s:#?}"
        );
        assert!(s.iter().any(|l| l.contains("a approve  e edit  r reject")));
    }

    #[test]
    fn approving_shows_the_lifetime_chooser_then_the_status() {
        let mut app = App::new(false);
        app.handle(Event::Requests(vec![entry(ID1, "api.example.com")]));
        press(&mut app, &[Key::Char('a')]);
        assert!(shows(&app, &format!("Approve {ID1}")));
        assert!(shows(&app, "(*) [s] until the bottle ends"));
        press(
            &mut app,
            &[
                Key::Char('m'),
                Key::Backspace,
                Key::Backspace,
                Key::Char('1'),
            ],
        );
        assert!(shows(&app, "(*) [m] for 1 minutes"));
        assert!(shows(&app, "( ) [s] until the bottle ends"));
        press(&mut app, &[Key::Enter]);
        assert!(!shows(&app, "Approve "), "the chooser closed");
        assert!(shows(&app, &format!("approving for 1m {ID1}")));
        assert!(shows(&app, "no pending requests"));
    }

    #[test]
    fn rejecting_shows_the_typed_reason() {
        let mut app = App::new(false);
        app.handle(Event::Requests(vec![entry(ID1, "api.example.com")]));
        press(&mut app, &[Key::Char('r')]);
        for c in "too broad".chars() {
            press(&mut app, &[Key::Char(c)]);
        }
        assert!(shows(&app, "reason: too broad_"));
        press(&mut app, &[Key::Enter]);
        assert!(shows(&app, &format!("rejecting {ID1}")));
    }

    #[test]
    fn the_agent_picker_filters_as_you_type() {
        let mut app = App::new(false);
        app.handle(Event::Agents(vec![
            "api".into(),
            "dev".into(),
            "docs".into(),
        ]));
        press(&mut app, &[Key::Char('n')]);
        assert!(shows(&app, "> api"));
        assert!(shows(&app, "  dev"));
        press(&mut app, &[Key::Char('d'), Key::Char('o')]);
        let s = screen(&app);
        assert!(s.iter().any(|l| l.contains("agent: do_")), "{s:#?}");
        assert!(s.iter().any(|l| l.contains("> docs")), "{s:#?}");
        assert!(
            !s.iter().any(|l| l.contains("api") || l.contains("dev")),
            "{s:#?}"
        );
        press(&mut app, &[Key::Char('x')]);
        assert!(shows(&app, "no agent matches"));
    }

    #[test]
    fn an_error_is_one_red_line() {
        let mut app = App::new(false);
        app.handle(Event::Done(Err("`docker` was not found".into())));
        let mut t = Terminal::new(TestBackend::new(100, 30)).unwrap();
        t.draw(|f| draw(f, &app)).unwrap();
        let buf = t.backend().buffer();
        let row: String = (0..100)
            .map(|x| buf[(x, 29)].symbol().to_string())
            .collect();
        assert!(row.starts_with("error: `docker` was not found"), "{row}");
        assert_eq!(buf[(0, 29)].fg, Color::Red);
    }

    #[test]
    fn refusals_and_bottles_panes() {
        let mut app = App::new(false);
        app.handle(Event::Refusals(vec![RefusalEvent {
            bottle: "dev-1".into(),
            time: "t".into(),
            host: "pypi.org".into(),
            method: "GET".into(),
            path: "/simple/".into(),
            layer: "egress".into(),
            rule: "no-route".into(),
            status: 403,
            count: 4,
            reason: "r".into(),
        }]));
        app.handle(Event::Bottles(vec![ActiveBottle {
            backend: "docker".into(),
            identity: "dev-1".into(),
            agent: "dev".into(),
            services: vec!["agent".into(), "egress".into(), "supervise".into()],
            containers: vec![],
        }]));
        let s = screen(&app);
        assert!(
            s.iter().any(|l| l.contains("Refusals: dev-1 (1)")),
            "{s:#?}"
        );
        assert!(
            s.iter()
                .any(|l| l.contains("GET pypi.org/simple/  x4  egress/no-route")),
            "{s:#?}"
        );
        assert!(
            s.iter()
                .any(|l| l.contains("dev-1  dev  docker  sidecars: egress,supervise")),
            "{s:#?}"
        );
        press(&mut app, &[Key::Tab, Key::Char('p')]);
        let s = screen(&app);
        assert!(
            s.iter().any(|l| l.contains("Request a route for dev-1")),
            "{s:#?}"
        );
        assert!(
            s.iter().any(|l| l.contains("> host    pypi.org_")),
            "{s:#?}"
        );
        assert!(s.iter().any(|l| l.contains("  paths   /simple/")), "{s:#?}");
    }

    fn refusal(bottle: &str, method: &str, host: &str, layer: &str, rule: &str) -> RefusalEvent {
        RefusalEvent {
            bottle: bottle.into(),
            time: "t".into(),
            host: host.into(),
            method: method.into(),
            path: "/p".into(),
            layer: layer.into(),
            rule: rule.into(),
            status: 403,
            count: 1,
            reason: "r".into(),
        }
    }

    fn running(id: &str) -> ActiveBottle {
        ActiveBottle {
            backend: "docker".into(),
            identity: id.into(),
            agent: "dev".into(),
            services: vec!["agent".into(), "egress".into(), "git-gate".into()],
            containers: vec![],
        }
    }

    /// The rows of the refusals pane (between its title and the bottles pane's).
    fn feed_rows(app: &App) -> Vec<String> {
        let s = screen(app);
        let top = s.iter().position(|l| l.contains(" Refusals")).unwrap();
        s[top + 1..]
            .iter()
            .take_while(|l| !l.contains(" Bottles ("))
            .map(|l| {
                l.trim_matches(|c| c == '│' || c == ' ' || c == '└' || c == '─' || c == '┘')
                    .to_string()
            })
            .filter(|l| !l.is_empty())
            .collect()
    }

    #[test]
    fn the_refusal_feed_is_one_bottles_with_its_name_in_the_title() {
        let mut app = App::new(false);
        assert!(shows(&app, "no running bottles"));
        app.handle(Event::Refusals(vec![
            refusal("dev-2", "GET", "b.test", "allowlist", "host-not-in-routes"),
            refusal("dev-1", "PUSH", "git.test", "git-gate", "ref-force"),
            refusal("dev-1", "GET", "a.test", "allowlist", "host-not-in-routes"),
        ]));
        app.handle(Event::Bottles(vec![running("dev-1"), running("dev-2")]));
        assert!(shows(&app, "Refusals: dev-1 (2)"));
        assert_eq!(
            feed_rows(&app),
            [
                "> PUSH git.test/p  x1  git-gate/ref-force",
                "GET a.test/p  x1  allowlist/host-not-in-routes"
            ]
        );
        // In the feed: a git refusal says it is no route; `p` does not open a form.
        press(&mut app, &[Key::Tab]);
        assert!(shows(
            &app,
            "git refusal: no route to request  b next bottle / all"
        ));
        press(&mut app, &[Key::Char('p')]);
        assert!(shows(
            &app,
            "error: a git-gate refusal is not a missing route"
        ));
        assert!(!shows(&app, "Request a route for"));
        press(&mut app, &[Key::Down]);
        assert!(shows(&app, "p request this route  b next bottle / all"));
        // `b`: the next bottle's feed, then every bottle's with a bottle column.
        press(&mut app, &[Key::Char('b')]);
        assert!(shows(&app, "Refusals: dev-2 (1)"));
        assert_eq!(
            feed_rows(&app),
            ["> GET b.test/p  x1  allowlist/host-not-in-routes"]
        );
        press(&mut app, &[Key::Char('b')]);
        assert!(shows(&app, "Refusals: all bottles (3)"));
        assert_eq!(
            feed_rows(&app),
            [
                "> dev-2  GET b.test/p  x1  allowlist/host-not-in-routes",
                "dev-1  PUSH git.test/p  x1  git-gate/ref-force",
                "dev-1  GET a.test/p  x1  allowlist/host-not-in-routes"
            ]
        );
        // Picking a bottle in the bottles pane makes the feed follow it again.
        press(&mut app, &[Key::Tab, Key::Down]);
        assert!(shows(&app, "Refusals: dev-2 (1)"));
        app.handle(Event::Refusals(vec![]));
        assert!(shows(&app, "no refusals in dev-2"));
    }

    #[test]
    fn the_diff_view_marks_lines() {
        let mut app = App::new(false);
        app.handle(Event::Requests(vec![entry(ID1, "api.example.com")]));
        press(&mut app, &[Key::Char('d')]);
        assert!(shows(&app, "loading…"));
        app.handle(Event::Diff {
            id: ID1.into(),
            result: Ok((
                "routes:\n".into(),
                "routes:\n  - host: api.example.com\n".into(),
            )),
        });
        assert!(shows(&app, "save route api.example.com to the bottle file"));
        assert!(shows(&app, "+   - host: api.example.com"));
    }
}

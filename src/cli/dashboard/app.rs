//! The dashboard's state machine (SPEC F-DASH): the state of the three panes and of the open
//! form, and [`App::handle`], which takes one key or data event and returns what the edge must
//! do ([`Effect`]) as values. Nothing here touches the terminal, the engine, the files or the
//! clock, so every flow is a plain unit test.

use std::collections::BTreeSet;

use crate::backend::ActiveBottle;
use crate::manifest::ProviderKind;
use crate::plan::BackendKind;
use crate::plan::provider;
use crate::requests::{Entry, summary};
use crate::runner::shell_escape;
use crate::sidecar::supervise::refusals::RefusalEvent;
use crate::sidecar::supervise::spool::{Change, Decision, Lifetime, Verdict};
use crate::sidecar::supervise::validate::{self, RouteProposal};

/// A key, as the edge translates it from the terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Key {
    Char(char),
    Enter,
    Esc,
    Up,
    Down,
    Left,
    Right,
    Tab,
    BackTab,
    Backspace,
    CtrlC,
}

/// The three panes, top to bottom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pane {
    Requests,
    Refusals,
    Bottles,
}

impl Pane {
    fn next(self) -> Pane {
        match self {
            Pane::Requests => Pane::Refusals,
            Pane::Refusals => Pane::Bottles,
            Pane::Bottles => Pane::Requests,
        }
    }

    fn prev(self) -> Pane {
        self.next().next()
    }

    fn index(self) -> usize {
        match self {
            Pane::Requests => 0,
            Pane::Refusals => 1,
            Pane::Bottles => 2,
        }
    }
}

/// Whose refusals the feed shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Feed {
    /// The bottle selected in the bottles pane (the feed follows that selection).
    Selected,
    /// Every running bottle's, with a bottle column.
    All,
}

/// The lifetimes an approval can have (F-GRANT), in the order the chooser shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Choice {
    Once,
    Minutes,
    Session,
    Save,
}

pub(crate) const CHOICES: [Choice; 4] =
    [Choice::Once, Choice::Minutes, Choice::Session, Choice::Save];

impl Choice {
    fn position(self) -> usize {
        CHOICES.iter().position(|c| *c == self).unwrap_or(0)
    }
}

/// Longest grant the minutes field takes (a day); longer is what `session` and `save` are for.
pub(crate) const MAX_MINUTES: u64 = 24 * 60;

/// The backends the new-agent flow offers, in picker order.
pub(crate) const BACKENDS: [BackendKind; 2] = [BackendKind::Docker, BackendKind::Smolmachines];

/// A route being typed: edited before approval, or proposed from a refusal.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct RouteForm {
    pub host: String,
    /// Comma-separated path prefixes (empty: the whole host).
    pub paths: String,
    /// Comma-separated methods (empty: any).
    pub methods: String,
    /// Only used by a proposal.
    pub reason: String,
    /// Which field has the cursor: 0 host, 1 paths, 2 methods, 3 reason.
    pub field: usize,
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(String::from)
        .collect()
}

impl RouteForm {
    fn from_route(r: &RouteProposal) -> RouteForm {
        RouteForm {
            host: r.host.clone(),
            paths: r.path_prefixes.join(","),
            methods: r.methods.join(","),
            ..RouteForm::default()
        }
    }

    /// The route, checked like the agent's own proposals.
    pub(crate) fn route(&self) -> Result<RouteProposal, String> {
        validate::route(
            &self.host,
            &split_list(&self.paths),
            // Typed methods are taken in any case; the route names them upper-case.
            &split_list(&self.methods.to_uppercase()),
        )
    }

    fn field_mut(&mut self) -> &mut String {
        match self.field {
            0 => &mut self.host,
            1 => &mut self.paths,
            2 => &mut self.methods,
            _ => &mut self.reason,
        }
    }

    /// Returns `true` when the key was a typing key the form used.
    fn type_key(&mut self, key: Key, fields: usize) -> bool {
        match key {
            Key::Char(c) if !c.is_control() => self.field_mut().push(c),
            Key::Backspace => {
                self.field_mut().pop();
            }
            Key::Tab | Key::Down => self.field = (self.field + 1) % fields,
            Key::BackTab | Key::Up => self.field = (self.field + fields - 1) % fields,
            _ => return false,
        }
        true
    }
}

/// One line of a diff view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DiffLine {
    Same(String),
    Added(String),
    Removed(String),
}

/// Most cells the line diff computes; larger inputs show as all removed then all added.
const DIFF_CELLS: usize = 4_000_000;

/// A line diff of `old` → `new` (longest common subsequence).
pub(crate) fn line_diff(old: &str, new: &str) -> Vec<DiffLine> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    if a.len().saturating_mul(b.len()) > DIFF_CELLS {
        return a
            .iter()
            .map(|l| DiffLine::Removed((*l).into()))
            .chain(b.iter().map(|l| DiffLine::Added((*l).into())))
            .collect();
    }
    // lcs[i][j]: common lines of a[i..] and b[j..].
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push(DiffLine::Same(a[i].into()));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push(DiffLine::Removed(a[i].into()));
            i += 1;
        } else {
            out.push(DiffLine::Added(b[j].into()));
            j += 1;
        }
    }
    out
}

/// A decision as the operator made it; the edge stamps the time ([`Draft::decision`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Draft {
    pub id: String,
    pub verdict: Verdict,
    pub lifetime: Option<Lifetime>,
    pub route: Option<RouteProposal>,
    pub note: Option<String>,
}

impl Draft {
    pub(crate) fn decision(self, decided_at: String) -> Decision {
        Decision {
            id: self.id,
            verdict: self.verdict,
            decided_at,
            lifetime: self.lifetime,
            route: self.route,
            note: self.note,
        }
    }
}

/// What a diff view compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DiffSource {
    /// The bottle file before and after saving `route` to it.
    Save {
        bottle: String,
        route: RouteProposal,
    },
    /// The bottle's Dockerfile before and after the requested one.
    Image { bottle: String, dockerfile: String },
}

/// A `bot-bottle` command to run for the operator (the edge puts the binary in front).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Session {
    /// Shown in the status line and as the pane title.
    pub(crate) title: String,
    pub args: Vec<String>,
}

/// What the edge must do after an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Effect {
    /// Ring the terminal bell (a new request arrived).
    Bell,
    /// Hand a decision to the request's bottle and record it.
    Decide(Draft),
    /// Load both sides of a diff and answer with [`Event::Diff`].
    LoadDiff {
        id: String,
        source: DiffSource,
    },
    /// Put a request into `bottle`'s queue as if the agent had asked.
    Propose {
        bottle: String,
        route: RouteProposal,
        reason: String,
    },
    /// Run the preflight (dry run) and answer with [`Event::Preflight`].
    Preflight {
        agent: String,
        backend: BackendKind,
    },
    /// Open a session in the reused right-hand tmux pane (`pane`, or a new one when `None`).
    OpenPane {
        session: Session,
        pane: Option<String>,
    },
    /// Leave the screen, run a session in this terminal, come back when it ends.
    RunHere(Session),
    /// Stop a running bottle.
    Stop {
        identity: String,
        backend: String,
    },
    Quit,
}

/// Something that happened: a key, or data the poller or an effect brought back.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Event {
    Key(Key),
    /// Every undecided request, oldest first.
    Requests(Vec<Entry>),
    /// Recent refusals of every running bottle, newest first.
    Refusals(Vec<RefusalEvent>),
    Bottles(Vec<ActiveBottle>),
    /// Agent names that `start` accepts.
    Agents(Vec<String>),
    /// The two sides of a diff asked for with [`Effect::LoadDiff`].
    Diff {
        id: String,
        result: Result<(String, String), String>,
    },
    /// The preflight text of a dry run, or why it failed.
    Preflight {
        agent: String,
        backend: BackendKind,
        result: Result<String, String>,
    },
    /// An effect finished: what to tell the operator.
    Done(Result<String, String>),
    /// The tmux pane sessions now open in.
    SessionPane(String),
}

/// What the screen is showing on top of the panes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mode {
    Normal,
    /// Choosing how long an approval lasts; `route` is set when the operator edited it.
    Lifetime {
        id: String,
        bottle: String,
        route: Option<RouteProposal>,
        choice: Choice,
        minutes: String,
    },
    Edit {
        id: String,
        bottle: String,
        form: RouteForm,
    },
    Reject {
        id: String,
        reason: String,
    },
    /// `lines` is `None` while loading; `approve` is what Enter decides (none: view only).
    Diff {
        id: String,
        title: String,
        lines: Option<Vec<DiffLine>>,
        approve: Option<Draft>,
        scroll: usize,
    },
    Propose {
        bottle: String,
        form: RouteForm,
    },
    PickAgent {
        filter: String,
        selected: usize,
    },
    PickBackend {
        agent: String,
        selected: usize,
    },
    /// `text` is `None` while the dry run runs.
    Preflight {
        agent: String,
        backend: BackendKind,
        text: Option<Result<String, String>>,
    },
    ConfirmStop {
        identity: String,
        backend: String,
    },
}

/// The last message for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Status {
    pub error: bool,
    pub text: String,
}

/// The whole dashboard state.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct App {
    pub(crate) pane: Pane,
    pub mode: Mode,
    pub requests: Vec<Entry>,
    /// Every running bottle's refusals; the feed shows [`App::feed_refusals`].
    pub refusals: Vec<RefusalEvent>,
    pub(crate) feed: Feed,
    pub bottles: Vec<ActiveBottle>,
    pub agents: Vec<String>,
    /// Selected row of each pane.
    pub(crate) selected: [usize; 3],
    pub status: Option<Status>,
    /// Running inside tmux: sessions open in a pane beside the dashboard.
    pub tmux: bool,
    /// The right-hand pane sessions reuse, once one was opened.
    pub(crate) session_pane: Option<String>,
    /// Request ids already shown (a new one rings the bell).
    seen: BTreeSet<String>,
    /// Whether a request list arrived yet (the first one does not ring).
    loaded: bool,
}

/// Why `p` on a git-gate refusal makes no request.
pub(crate) const GIT_REFUSAL_HINT: &str = "a git-gate refusal is not a missing route; fix the push (see its reason) or change the bottle's `git-gate` policy";

/// Refusals whose reason text is longer are clipped in a pre-filled request.
const PROPOSAL_REASON_CHARS: usize = 200;

impl App {
    pub(crate) fn new(tmux: bool) -> App {
        App {
            pane: Pane::Requests,
            mode: Mode::Normal,
            requests: Vec::new(),
            refusals: Vec::new(),
            feed: Feed::Selected,
            bottles: Vec::new(),
            agents: Vec::new(),
            selected: [0; 3],
            status: None,
            tmux,
            session_pane: None,
            seen: BTreeSet::new(),
            loaded: false,
        }
    }

    fn info(&mut self, text: impl Into<String>) {
        self.status = Some(Status {
            error: false,
            text: text.into(),
        });
    }

    fn error(&mut self, text: impl Into<String>) {
        self.status = Some(Status {
            error: true,
            text: text.into(),
        });
    }

    fn rows(&self, pane: Pane) -> usize {
        match pane {
            Pane::Requests => self.requests.len(),
            Pane::Refusals => self.feed_refusals().len(),
            Pane::Bottles => self.bottles.len(),
        }
    }

    /// The bottle the feed follows: the one selected in the bottles pane, or `None` when the
    /// feed shows every bottle (or no bottle runs).
    pub(crate) fn feed_bottle(&self) -> Option<&str> {
        match self.feed {
            Feed::All => None,
            Feed::Selected => self
                .bottles
                .get(self.selected(Pane::Bottles))
                .map(|b| b.identity.as_str()),
        }
    }

    /// The refusals the feed shows, newest first.
    pub(crate) fn feed_refusals(&self) -> Vec<&RefusalEvent> {
        let bottle = self.feed_bottle();
        if self.feed == Feed::Selected && bottle.is_none() {
            return Vec::new();
        }
        self.refusals
            .iter()
            .filter(|r| bottle.is_none_or(|b| r.bottle == b))
            .collect()
    }

    /// The feed's next bottle: each running bottle in turn, then all of them.
    fn cycle_feed(&mut self) {
        let n = self.bottles.len();
        let sel = &mut self.selected[Pane::Bottles.index()];
        match self.feed {
            Feed::All if n > 0 => {
                self.feed = Feed::Selected;
                *sel = 0;
            }
            Feed::All => {}
            Feed::Selected if *sel + 1 < n => *sel += 1,
            Feed::Selected => self.feed = Feed::All,
        }
        self.selected[Pane::Refusals.index()] = 0;
    }

    fn clamp(&mut self) {
        for pane in [Pane::Requests, Pane::Refusals, Pane::Bottles] {
            let n = self.rows(pane);
            let s = &mut self.selected[pane.index()];
            *s = (*s).min(n.saturating_sub(1));
        }
    }

    /// The selected row of `pane`.
    pub(crate) fn selected(&self, pane: Pane) -> usize {
        self.selected[pane.index()]
    }

    fn selected_request(&self) -> Option<&Entry> {
        self.requests.get(self.selected(Pane::Requests))
    }

    /// Agents matching the picker's filter (case-insensitive substring), in name order.
    pub(crate) fn filtered_agents(&self, filter: &str) -> Vec<&str> {
        let f = filter.to_lowercase();
        self.agents
            .iter()
            .filter(|a| a.to_lowercase().contains(&f))
            .map(String::as_str)
            .collect()
    }

    /// Apply one event; the effects are for the edge to carry out, in order.
    pub(crate) fn handle(&mut self, event: Event) -> Vec<Effect> {
        match event {
            Event::Key(k) => self.key(k),
            Event::Requests(entries) => self.set_requests(entries),
            Event::Refusals(r) => {
                self.refusals = r;
                self.clamp();
                Vec::new()
            }
            Event::Bottles(b) => {
                self.bottles = b;
                self.clamp();
                Vec::new()
            }
            Event::Agents(a) => {
                self.agents = a;
                Vec::new()
            }
            Event::Diff { id, result } => {
                if let Mode::Diff {
                    id: want, lines, ..
                } = &mut self.mode
                {
                    if *want == id {
                        match result {
                            Ok((old, new)) => *lines = Some(line_diff(&old, &new)),
                            Err(e) => {
                                self.mode = Mode::Normal;
                                self.error(e);
                            }
                        }
                    }
                }
                Vec::new()
            }
            Event::Preflight {
                agent,
                backend,
                result,
            } => {
                if let Mode::Preflight {
                    agent: a,
                    backend: b,
                    text,
                } = &mut self.mode
                {
                    if *a == agent && *b == backend {
                        *text = Some(result);
                    }
                }
                Vec::new()
            }
            Event::Done(Ok(m)) => {
                self.info(m);
                Vec::new()
            }
            Event::Done(Err(m)) => {
                self.error(m);
                Vec::new()
            }
            Event::SessionPane(p) => {
                self.session_pane = Some(p);
                Vec::new()
            }
        }
    }

    fn set_requests(&mut self, entries: Vec<Entry>) -> Vec<Effect> {
        let new = entries.iter().any(|e| !self.seen.contains(&e.request.id));
        self.seen
            .extend(entries.iter().map(|e| e.request.id.clone()));
        let ring = new && self.loaded;
        self.loaded = true;
        self.requests = entries;
        self.clamp();
        if ring { vec![Effect::Bell] } else { Vec::new() }
    }

    /// Each mode handles its own keys: the mode is taken out here, and its handler puts back
    /// the mode that follows (nothing, for a mode that ends).
    fn key(&mut self, key: Key) -> Vec<Effect> {
        if key == Key::CtrlC {
            return vec![Effect::Quit];
        }
        let mode = std::mem::replace(&mut self.mode, Mode::Normal);
        match mode {
            Mode::Normal => self.normal_key(key),
            Mode::Lifetime {
                id,
                bottle,
                route,
                choice,
                minutes,
            } => self.lifetime_key(key, id, bottle, route, choice, minutes),
            Mode::Edit { id, bottle, form } => self.edit_key(key, id, bottle, form),
            Mode::Reject { id, reason } => self.reject_key(key, id, reason),
            Mode::Diff {
                id,
                title,
                lines,
                approve,
                scroll,
            } => self.diff_key(key, id, title, lines, approve, scroll),
            Mode::Propose { bottle, form } => self.propose_key(key, bottle, form),
            Mode::PickAgent { filter, selected } => self.pick_agent_key(key, filter, selected),
            Mode::PickBackend { agent, selected } => self.pick_backend_key(key, agent, selected),
            Mode::Preflight {
                agent,
                backend,
                text,
            } => self.preflight_key(key, agent, backend, text),
            Mode::ConfirmStop { identity, backend } => {
                self.confirm_stop_key(key, identity, backend)
            }
        }
    }

    fn edit_key(
        &mut self,
        key: Key,
        id: String,
        bottle: String,
        mut form: RouteForm,
    ) -> Vec<Effect> {
        match key {
            Key::Esc => Vec::new(),
            Key::Enter => match form.route() {
                Ok(route) => {
                    self.mode = Mode::Lifetime {
                        id,
                        bottle,
                        route: Some(route),
                        choice: Choice::Session,
                        minutes: "10".into(),
                    };
                    Vec::new()
                }
                Err(e) => {
                    self.error(e);
                    self.mode = Mode::Edit { id, bottle, form };
                    Vec::new()
                }
            },
            k => {
                form.type_key(k, 3);
                self.mode = Mode::Edit { id, bottle, form };
                Vec::new()
            }
        }
    }

    fn reject_key(&mut self, key: Key, id: String, mut reason: String) -> Vec<Effect> {
        match key {
            Key::Esc => Vec::new(),
            Key::Enter => {
                let note = if reason.trim().is_empty() {
                    None
                } else {
                    match validate::reason(&reason) {
                        Ok(r) => Some(r),
                        Err(e) => {
                            self.error(e);
                            self.mode = Mode::Reject { id, reason };
                            return Vec::new();
                        }
                    }
                };
                self.decide(Draft {
                    id,
                    verdict: Verdict::Rejected,
                    lifetime: None,
                    route: None,
                    note,
                })
            }
            Key::Char(c) if !c.is_control() => {
                reason.push(c);
                self.mode = Mode::Reject { id, reason };
                Vec::new()
            }
            Key::Backspace => {
                reason.pop();
                self.mode = Mode::Reject { id, reason };
                Vec::new()
            }
            _ => {
                self.mode = Mode::Reject { id, reason };
                Vec::new()
            }
        }
    }

    fn diff_key(
        &mut self,
        key: Key,
        id: String,
        title: String,
        lines: Option<Vec<DiffLine>>,
        approve: Option<Draft>,
        scroll: usize,
    ) -> Vec<Effect> {
        {
            let len = lines.as_ref().map_or(0, Vec::len);
            let scroll = match key {
                Key::Esc | Key::Char('q') => return Vec::new(),
                Key::Enter | Key::Char('y') if lines.is_some() => {
                    return match approve {
                        Some(d) => self.decide(d),
                        None => Vec::new(),
                    };
                }
                Key::Down | Key::Char('j') => (scroll + 1).min(len.saturating_sub(1)),
                Key::Up | Key::Char('k') => scroll.saturating_sub(1),
                _ => scroll,
            };
            self.mode = Mode::Diff {
                id,
                title,
                lines,
                approve,
                scroll,
            };
            Vec::new()
        }
    }

    fn propose_key(&mut self, key: Key, bottle: String, mut form: RouteForm) -> Vec<Effect> {
        match key {
            Key::Esc => Vec::new(),
            Key::Enter => {
                let checked = form
                    .route()
                    .and_then(|r| validate::reason(&form.reason).map(|why| (r, why)));
                match checked {
                    Ok((route, reason)) => {
                        self.info(format!("asking {bottle} for route {}", route.host));
                        vec![Effect::Propose {
                            bottle,
                            route,
                            reason,
                        }]
                    }
                    Err(e) => {
                        self.error(e);
                        self.mode = Mode::Propose { bottle, form };
                        Vec::new()
                    }
                }
            }
            k => {
                form.type_key(k, 4);
                self.mode = Mode::Propose { bottle, form };
                Vec::new()
            }
        }
    }

    fn pick_agent_key(&mut self, key: Key, mut filter: String, mut selected: usize) -> Vec<Effect> {
        {
            let n = self.filtered_agents(&filter).len();
            match key {
                Key::Esc => return Vec::new(),
                Key::Enter => {
                    return match self.filtered_agents(&filter).get(selected) {
                        Some(agent) => {
                            self.mode = Mode::PickBackend {
                                agent: (*agent).to_string(),
                                selected: 0,
                            };
                            Vec::new()
                        }
                        None => {
                            self.error(format!("no agent matches `{filter}`"));
                            self.mode = Mode::PickAgent { filter, selected };
                            Vec::new()
                        }
                    };
                }
                Key::Down => selected = (selected + 1).min(n.saturating_sub(1)),
                Key::Up => selected = selected.saturating_sub(1),
                Key::Backspace => {
                    filter.pop();
                    selected = 0;
                }
                Key::Char(c) if !c.is_control() => {
                    filter.push(c);
                    selected = 0;
                }
                _ => {}
            }
            self.mode = Mode::PickAgent { filter, selected };
            Vec::new()
        }
    }

    fn pick_backend_key(&mut self, key: Key, agent: String, selected: usize) -> Vec<Effect> {
        match key {
            Key::Esc => {
                self.mode = Mode::PickAgent {
                    filter: String::new(),
                    selected: 0,
                };
                Vec::new()
            }
            Key::Enter => {
                let backend = BACKENDS[selected.min(BACKENDS.len() - 1)];
                self.mode = Mode::Preflight {
                    agent: agent.clone(),
                    backend,
                    text: None,
                };
                vec![Effect::Preflight { agent, backend }]
            }
            Key::Down | Key::Tab => {
                self.mode = Mode::PickBackend {
                    agent,
                    selected: (selected + 1) % BACKENDS.len(),
                };
                Vec::new()
            }
            Key::Up | Key::BackTab => {
                self.mode = Mode::PickBackend {
                    agent,
                    selected: (selected + BACKENDS.len() - 1) % BACKENDS.len(),
                };
                Vec::new()
            }
            _ => {
                self.mode = Mode::PickBackend { agent, selected };
                Vec::new()
            }
        }
    }

    fn preflight_key(
        &mut self,
        key: Key,
        agent: String,
        backend: BackendKind,
        text: Option<Result<String, String>>,
    ) -> Vec<Effect> {
        match (key, &text) {
            (Key::Enter | Key::Char('y'), Some(Ok(_))) => {
                let session = Session {
                    title: format!("start {agent}"),
                    args: vec![
                        "start".into(),
                        agent,
                        "--backend".into(),
                        backend.as_str().into(),
                        "--yes".into(),
                    ],
                };
                self.open(session)
            }
            (Key::Esc | Key::Char('n') | Key::Char('q'), _) | (Key::Enter, Some(Err(_))) => {
                Vec::new()
            }
            _ => {
                self.mode = Mode::Preflight {
                    agent,
                    backend,
                    text,
                };
                Vec::new()
            }
        }
    }

    fn confirm_stop_key(&mut self, key: Key, identity: String, backend: String) -> Vec<Effect> {
        match key {
            Key::Char('y') | Key::Char('Y') => {
                self.info(format!("stopping {identity}"));
                vec![Effect::Stop { identity, backend }]
            }
            _ => Vec::new(),
        }
    }

    fn lifetime_key(
        &mut self,
        key: Key,
        id: String,
        bottle: String,
        route: Option<RouteProposal>,
        mut choice: Choice,
        mut minutes: String,
    ) -> Vec<Effect> {
        match key {
            Key::Esc => return Vec::new(),
            Key::Enter => {
                let lifetime = match choice {
                    Choice::Once => Lifetime::Once,
                    Choice::Session => Lifetime::Session,
                    Choice::Minutes => match minutes.parse::<u64>() {
                        Ok(m) if (1..=MAX_MINUTES).contains(&m) => Lifetime::Seconds(m * 60),
                        _ => {
                            self.error(format!(
                                "minutes must be a whole number from 1 to {MAX_MINUTES}"
                            ));
                            self.mode = Mode::Lifetime {
                                id,
                                bottle,
                                route,
                                choice,
                                minutes,
                            };
                            return Vec::new();
                        }
                    },
                    Choice::Save => {
                        // Saving changes the bottle file: show the diff before anything is written.
                        let Some(asked) = route.clone().or_else(|| self.asked_route(&id)) else {
                            self.error(format!("request {id} is gone"));
                            return Vec::new();
                        };
                        self.mode = Mode::Diff {
                            id: id.clone(),
                            title: format!("save route {} to the bottle file", asked.host),
                            lines: None,
                            approve: Some(Draft {
                                id: id.clone(),
                                verdict: Verdict::Approved,
                                lifetime: Some(Lifetime::Saved),
                                route,
                                note: None,
                            }),
                            scroll: 0,
                        };
                        return vec![Effect::LoadDiff {
                            id,
                            source: DiffSource::Save {
                                bottle,
                                route: asked,
                            },
                        }];
                    }
                };
                return self.decide(Draft {
                    id,
                    verdict: Verdict::Approved,
                    lifetime: Some(lifetime),
                    route,
                    note: None,
                });
            }
            Key::Left | Key::Up | Key::BackTab => {
                choice = CHOICES[(choice.position() + CHOICES.len() - 1) % CHOICES.len()];
            }
            Key::Right | Key::Down | Key::Tab => {
                choice = CHOICES[(choice.position() + 1) % CHOICES.len()];
            }
            Key::Char('o') => choice = Choice::Once,
            Key::Char('m') => choice = Choice::Minutes,
            Key::Char('s') => choice = Choice::Session,
            Key::Char('v') => choice = Choice::Save,
            Key::Char(c) if c.is_ascii_digit() => {
                if choice != Choice::Minutes {
                    minutes.clear();
                }
                choice = Choice::Minutes;
                if minutes.len() < 5 {
                    minutes.push(c);
                }
            }
            Key::Backspace => {
                minutes.pop();
            }
            _ => {}
        }
        self.mode = Mode::Lifetime {
            id,
            bottle,
            route,
            choice,
            minutes,
        };
        Vec::new()
    }

    fn asked_route(&self, id: &str) -> Option<RouteProposal> {
        self.requests
            .iter()
            .find(|e| e.request.id == id)
            .and_then(|e| match &e.request.change {
                Change::Route(r) => Some(r.clone()),
                Change::Image { .. } => None,
            })
    }

    /// Hand a decision to the edge; the row leaves the list at once (the next poll agrees, or
    /// brings it back if the bottle refused it).
    fn decide(&mut self, d: Draft) -> Vec<Effect> {
        let what = match (d.verdict, d.lifetime) {
            (Verdict::Rejected, _) => "rejecting".to_string(),
            (Verdict::Approved, None) => "approving".to_string(),
            (Verdict::Approved, Some(l)) => format!("approving {}", lifetime_text(l)),
        };
        self.info(format!("{what} {}", d.id));
        self.requests.retain(|e| e.request.id != d.id);
        self.clamp();
        vec![Effect::Decide(d)]
    }

    fn open(&mut self, session: Session) -> Vec<Effect> {
        self.info(format!("opened: {}", session.title));
        if self.tmux {
            vec![Effect::OpenPane {
                session,
                pane: self.session_pane.clone(),
            }]
        } else {
            vec![Effect::RunHere(session)]
        }
    }

    fn normal_key(&mut self, key: Key) -> Vec<Effect> {
        let pane = self.pane;
        let n = self.rows(pane);
        let sel = &mut self.selected[pane.index()];
        let before = *sel;
        match key {
            Key::Char('q') => return vec![Effect::Quit],
            Key::Tab | Key::Right => self.pane = pane.next(),
            Key::BackTab | Key::Left => self.pane = pane.prev(),
            Key::Down | Key::Char('j') => *sel = (*sel + 1).min(n.saturating_sub(1)),
            Key::Up | Key::Char('k') => *sel = sel.saturating_sub(1),
            // The feed moves on to the next bottle, then to all of them.
            Key::Char('b') => self.cycle_feed(),
            Key::Char('n') => {
                self.mode = Mode::PickAgent {
                    filter: String::new(),
                    selected: 0,
                };
            }
            k => {
                return match pane {
                    Pane::Requests => self.requests_key(k),
                    Pane::Refusals => self.refusals_key(k),
                    Pane::Bottles => self.bottles_key(k),
                };
            }
        }
        let moved = matches!(key, Key::Down | Key::Up | Key::Char('j') | Key::Char('k'));
        if pane == Pane::Bottles
            && moved
            && (self.selected(Pane::Bottles) != before || self.feed == Feed::All)
        {
            self.feed = Feed::Selected;
            self.selected[Pane::Refusals.index()] = 0;
        }
        Vec::new()
    }

    fn requests_key(&mut self, key: Key) -> Vec<Effect> {
        let Some(entry) = self.selected_request().cloned() else {
            return Vec::new();
        };
        let id = entry.request.id.clone();
        let bottle = entry.bottle.clone();
        match (key, &entry.request.change) {
            (Key::Char('a') | Key::Enter, Change::Route(_)) => {
                self.mode = Mode::Lifetime {
                    id,
                    bottle,
                    route: None,
                    choice: Choice::Session,
                    minutes: "10".into(),
                };
                Vec::new()
            }
            // An image change has no lifetime: approving it is reading its diff first.
            (Key::Char('a') | Key::Enter | Key::Char('d'), Change::Image { dockerfile }) => {
                let approve = matches!(key, Key::Char('a') | Key::Enter).then(|| Draft {
                    id: id.clone(),
                    verdict: Verdict::Approved,
                    lifetime: None,
                    route: None,
                    note: None,
                });
                self.mode = Mode::Diff {
                    id: id.clone(),
                    title: format!("image change for {bottle}"),
                    lines: None,
                    approve,
                    scroll: 0,
                };
                vec![Effect::LoadDiff {
                    id,
                    source: DiffSource::Image {
                        bottle,
                        dockerfile: dockerfile.clone(),
                    },
                }]
            }
            (Key::Char('d'), Change::Route(r)) => {
                self.mode = Mode::Diff {
                    id: id.clone(),
                    title: format!("save route {} to the bottle file", r.host),
                    lines: None,
                    approve: None,
                    scroll: 0,
                };
                vec![Effect::LoadDiff {
                    id,
                    source: DiffSource::Save {
                        bottle,
                        route: r.clone(),
                    },
                }]
            }
            (Key::Char('e'), Change::Route(r)) => {
                self.mode = Mode::Edit {
                    id,
                    bottle,
                    form: RouteForm::from_route(r),
                };
                Vec::new()
            }
            (Key::Char('e'), Change::Image { .. }) => {
                self.error("an image change cannot be edited here; reject it with a reason");
                Vec::new()
            }
            (Key::Char('r') | Key::Char('x'), _) => {
                self.mode = Mode::Reject {
                    id,
                    reason: String::new(),
                };
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    fn refusals_key(&mut self, key: Key) -> Vec<Effect> {
        let Some(ev) = self
            .feed_refusals()
            .get(self.selected(Pane::Refusals))
            .map(|e| (*e).clone())
        else {
            return Vec::new();
        };
        if !matches!(key, Key::Char('p') | Key::Enter) {
            return Vec::new();
        }
        if ev.is_git() {
            // A push or fetch the git-gate refused is not a missing route: no egress grant
            // would let it through.
            self.error(GIT_REFUSAL_HINT);
            return Vec::new();
        }
        let path = if ev.path.is_empty() || ev.path == "/" {
            String::new()
        } else {
            ev.path.clone()
        };
        let reason: String = format!(
            "refused {} {}{}: {}",
            ev.method, ev.host, ev.path, ev.reason
        )
        .chars()
        .filter(|c| !c.is_control())
        .take(PROPOSAL_REASON_CHARS)
        .collect();
        self.mode = Mode::Propose {
            bottle: ev.bottle.clone(),
            form: RouteForm {
                host: ev.host.clone(),
                paths: path,
                methods: ev.method.clone(),
                reason,
                field: 0,
            },
        };
        Vec::new()
    }

    fn bottles_key(&mut self, key: Key) -> Vec<Effect> {
        let Some(b) = self.bottles.get(self.selected(Pane::Bottles)).cloned() else {
            return Vec::new();
        };
        match key {
            Key::Char('a') | Key::Enter => self.open(Session {
                title: format!("attach {}", b.identity),
                args: attach_args(&b.identity),
            }),
            Key::Char('s') => {
                self.mode = Mode::ConfirmStop {
                    identity: b.identity,
                    backend: b.backend,
                };
                Vec::new()
            }
            _ => Vec::new(),
        }
    }
}

/// A lifetime in a few words, for the status line.
pub(crate) fn lifetime_text(l: Lifetime) -> String {
    match l {
        Lifetime::Once => "once".into(),
        Lifetime::Seconds(s) if s % 60 == 0 => format!("for {}m", s / 60),
        Lifetime::Seconds(s) => format!("for {s}s"),
        Lifetime::Session => "for the session".into(),
        Lifetime::Saved => "and save".into(),
    }
}

/// The shell line run inside a bottle on attach: continue the provider's last session, and
/// start a fresh one when there is none to continue. The provider is whichever CLI the image
/// has, so attach works for bottles started before the dashboard ran.
pub(crate) fn attach_script() -> String {
    let line = |kind, resume| {
        provider::command(kind, resume, false, provider::PROMPT_PATH)
            .unwrap_or_default()
            .iter()
            .map(|a| shell_escape(a))
            .collect::<Vec<_>>()
            .join(" ")
    };
    format!(
        "if command -v claude >/dev/null 2>&1; then {} || exec {}; else {} || exec {}; fi",
        line(ProviderKind::Claude, true),
        line(ProviderKind::Claude, false),
        line(ProviderKind::Codex, true),
        line(ProviderKind::Codex, false),
    )
}

/// `bot-bottle exec <id> -- sh -c <attach script>`.
pub(crate) fn attach_args(identity: &str) -> Vec<String> {
    vec![
        "exec".into(),
        identity.into(),
        "--".into(),
        "sh".into(),
        "-c".into(),
        attach_script(),
    ]
}

/// One request in a line, for the requests pane.
pub(crate) fn request_line(e: &Entry) -> String {
    format!(
        "{}  {}  {}",
        e.bottle,
        summary(&e.request),
        e.request.reason
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sidecar::supervise::spool::Request;

    pub(crate) fn entry(id: &str, bottle: &str, host: &str) -> Entry {
        Entry {
            bottle: bottle.into(),
            request: Request {
                id: id.into(),
                created_at: "2026-12-02T10:00:00.000Z".into(),
                change: Change::Route(RouteProposal {
                    host: host.into(),
                    path_prefixes: vec![],
                    methods: vec![],
                }),
                reason: "needs the API".into(),
            },
            decision: None,
        }
    }

    const ID1: &str = "0000000000001-00000a";
    const ID2: &str = "0000000000002-00000b";

    fn keys(app: &mut App, ks: &[Key]) -> Vec<Effect> {
        ks.iter().flat_map(|k| app.handle(Event::Key(*k))).collect()
    }

    fn typed(app: &mut App, s: &str) -> Vec<Effect> {
        s.chars()
            .flat_map(|c| app.handle(Event::Key(Key::Char(c))))
            .collect()
    }

    fn decided(effects: &[Effect]) -> Option<&Draft> {
        effects.iter().find_map(|e| match e {
            Effect::Decide(d) => Some(d),
            _ => None,
        })
    }

    #[test]
    fn approve_for_one_minute() {
        let mut app = App::new(false);
        app.handle(Event::Requests(vec![
            entry(ID1, "dev-1", "a.test"),
            entry(ID2, "dev-2", "b.test"),
        ]));
        keys(&mut app, &[Key::Down, Key::Char('a')]);
        assert!(matches!(&app.mode, Mode::Lifetime { id, .. } if id == ID2));
        let fx = typed(&mut app, "1");
        assert!(fx.is_empty());
        assert!(
            matches!(&app.mode, Mode::Lifetime { choice: Choice::Minutes, minutes, .. } if minutes == "1")
        );
        let fx = keys(&mut app, &[Key::Enter]);
        let d = decided(&fx).expect("a decision");
        assert_eq!(d.id, ID2);
        assert_eq!(d.verdict, Verdict::Approved);
        assert_eq!(d.lifetime, Some(Lifetime::Seconds(60)));
        assert_eq!(d.route, None);
        assert_eq!(app.mode, Mode::Normal);
        assert_eq!(app.requests.len(), 1, "the decided row leaves the list");
        assert_eq!(
            app.status.as_ref().unwrap().text,
            format!("approving for 1m {ID2}")
        );
    }

    #[test]
    fn each_lifetime_choice_maps_to_its_grant() {
        for (key, want) in [
            (Key::Char('o'), Lifetime::Once),
            (Key::Char('s'), Lifetime::Session),
        ] {
            let mut app = App::new(false);
            app.handle(Event::Requests(vec![entry(ID1, "dev-1", "a.test")]));
            let fx = keys(&mut app, &[Key::Char('a'), key, Key::Enter]);
            assert_eq!(decided(&fx).unwrap().lifetime, Some(want));
        }
        // Cycling with the arrows lands on the same choices.
        let mut app = App::new(false);
        app.handle(Event::Requests(vec![entry(ID1, "dev-1", "a.test")]));
        let fx = keys(&mut app, &[Key::Enter, Key::Left, Key::Left, Key::Enter]);
        assert_eq!(decided(&fx).unwrap().lifetime, Some(Lifetime::Once));
    }

    #[test]
    fn bad_minutes_are_an_error_and_the_chooser_stays() {
        let mut app = App::new(false);
        app.handle(Event::Requests(vec![entry(ID1, "dev-1", "a.test")]));
        keys(
            &mut app,
            &[
                Key::Char('a'),
                Key::Char('m'),
                Key::Backspace,
                Key::Backspace,
            ],
        );
        let fx = keys(&mut app, &[Key::Enter]);
        assert!(decided(&fx).is_none());
        assert!(app.status.as_ref().unwrap().error);
        assert!(matches!(app.mode, Mode::Lifetime { .. }));
        typed(&mut app, "99999");
        assert!(
            decided(&keys(&mut app, &[Key::Enter])).is_none(),
            "over a day"
        );
    }

    #[test]
    fn save_shows_the_diff_before_deciding() {
        let mut app = App::new(false);
        app.handle(Event::Requests(vec![entry(ID1, "dev-1", "a.test")]));
        let fx = keys(&mut app, &[Key::Char('a'), Key::Char('v'), Key::Enter]);
        assert!(decided(&fx).is_none(), "nothing decided before the diff");
        assert!(matches!(
            &fx[..],
            [Effect::LoadDiff { source: DiffSource::Save { bottle, route }, .. }]
                if bottle == "dev-1" && route.host == "a.test"
        ));
        // Enter while loading does nothing.
        assert!(keys(&mut app, &[Key::Enter]).is_empty());
        app.handle(Event::Diff {
            id: ID1.into(),
            result: Ok(("a\nb\n".into(), "a\nb\nc\n".into())),
        });
        match &app.mode {
            Mode::Diff { lines: Some(l), .. } => {
                assert_eq!(l.last(), Some(&DiffLine::Added("c".into())));
            }
            m => panic!("not a diff: {m:?}"),
        }
        let fx = keys(&mut app, &[Key::Enter]);
        assert_eq!(decided(&fx).unwrap().lifetime, Some(Lifetime::Saved));
    }

    #[test]
    fn a_diff_that_cannot_load_is_an_error() {
        let mut app = App::new(false);
        app.handle(Event::Requests(vec![entry(ID1, "dev-1", "a.test")]));
        keys(&mut app, &[Key::Char('d')]);
        app.handle(Event::Diff {
            id: ID1.into(),
            result: Err("no bottle file".into()),
        });
        assert_eq!(app.mode, Mode::Normal);
        assert_eq!(app.status.as_ref().unwrap().text, "no bottle file");
    }

    #[test]
    fn edit_then_approve_sends_the_edited_route() {
        let mut app = App::new(false);
        app.handle(Event::Requests(vec![entry(ID1, "dev-1", "a.test")]));
        keys(&mut app, &[Key::Char('e'), Key::Tab]);
        typed(&mut app, "/v1/, /v2/");
        keys(&mut app, &[Key::Tab]);
        typed(&mut app, "get");
        keys(&mut app, &[Key::Enter]);
        let fx = keys(&mut app, &[Key::Char('s'), Key::Enter]);
        let route = decided(&fx).unwrap().route.clone().unwrap();
        assert_eq!(route.host, "a.test");
        assert_eq!(route.path_prefixes, ["/v1/", "/v2/"]);
        assert_eq!(route.methods, ["GET"]);
    }

    #[test]
    fn an_edited_route_is_checked_like_a_proposal() {
        let mut app = App::new(false);
        app.handle(Event::Requests(vec![entry(ID1, "dev-1", "a.test")]));
        keys(&mut app, &[Key::Char('e'), Key::Tab]);
        typed(&mut app, "no-slash");
        let fx = keys(&mut app, &[Key::Enter]);
        assert!(fx.is_empty());
        assert!(matches!(app.mode, Mode::Edit { .. }));
        assert!(app.status.as_ref().unwrap().error);
    }

    #[test]
    fn reject_with_a_reason() {
        let mut app = App::new(false);
        app.handle(Event::Requests(vec![entry(ID1, "dev-1", "a.test")]));
        keys(&mut app, &[Key::Char('r')]);
        typed(&mut app, "not this one");
        let fx = keys(&mut app, &[Key::Enter]);
        let d = decided(&fx).unwrap();
        assert_eq!(d.verdict, Verdict::Rejected);
        assert_eq!(d.note.as_deref(), Some("not this one"));
        assert!(app.requests.is_empty());
        // Esc on the reason form decides nothing.
        let mut app = App::new(false);
        app.handle(Event::Requests(vec![entry(ID1, "dev-1", "a.test")]));
        assert!(keys(&mut app, &[Key::Char('r'), Key::Esc]).is_empty());
        assert_eq!(app.requests.len(), 1);
    }

    #[test]
    fn a_new_request_rings_the_bell_once() {
        let mut app = App::new(false);
        assert!(
            app.handle(Event::Requests(vec![entry(ID1, "d", "a.test")]))
                .is_empty(),
            "what is there on opening is not new"
        );
        assert!(
            app.handle(Event::Requests(vec![entry(ID1, "d", "a.test")]))
                .is_empty()
        );
        let fx = app.handle(Event::Requests(vec![
            entry(ID1, "d", "a.test"),
            entry(ID2, "d", "b.test"),
        ]));
        assert_eq!(fx, [Effect::Bell]);
        assert!(
            app.handle(Event::Requests(vec![entry(ID2, "d", "b.test")]))
                .is_empty()
        );
    }

    fn refusal() -> RefusalEvent {
        RefusalEvent {
            bottle: "dev-1".into(),
            time: "t".into(),
            host: "api.example.com".into(),
            method: "POST".into(),
            path: "/v1/things".into(),
            layer: "egress".into(),
            rule: "no-route".into(),
            status: 403,
            count: 3,
            reason: "layer: egress; rule: no-route".into(),
        }
    }

    #[test]
    fn one_key_turns_a_refusal_into_a_prefilled_request() {
        let mut app = App::new(false);
        app.handle(Event::Bottles(vec![bottle("dev-1")]));
        app.handle(Event::Refusals(vec![refusal()]));
        keys(&mut app, &[Key::Tab, Key::Char('p')]);
        let fx = keys(&mut app, &[Key::Enter]);
        match &fx[..] {
            [
                Effect::Propose {
                    bottle,
                    route,
                    reason,
                },
            ] => {
                assert_eq!(bottle, "dev-1");
                assert_eq!(route.host, "api.example.com");
                assert_eq!(route.path_prefixes, ["/v1/things"]);
                assert_eq!(route.methods, ["POST"]);
                assert!(
                    reason.starts_with("refused POST api.example.com/v1/things"),
                    "{reason}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    fn refusal_in(bottle: &str, host: &str) -> RefusalEvent {
        RefusalEvent {
            bottle: bottle.into(),
            host: host.into(),
            ..refusal()
        }
    }

    fn feed_hosts(app: &App) -> Vec<&str> {
        app.feed_refusals()
            .iter()
            .map(|r| r.host.as_str())
            .collect()
    }

    #[test]
    fn the_feed_follows_the_selected_bottle_and_b_cycles_to_all() {
        let mut app = App::new(false);
        assert!(app.feed_refusals().is_empty(), "no bottle, no feed");
        app.handle(Event::Refusals(vec![
            refusal_in("dev-2", "b.test"),
            refusal_in("dev-1", "a.test"),
            refusal_in("dev-2", "c.test"),
        ]));
        app.handle(Event::Bottles(vec![bottle("dev-1"), bottle("dev-2")]));
        assert_eq!(app.feed_bottle(), Some("dev-1"));
        assert_eq!(feed_hosts(&app), ["a.test"]);
        // Selecting the next bottle below points the feed at it.
        keys(&mut app, &[Key::BackTab, Key::Down]);
        assert_eq!(app.feed_bottle(), Some("dev-2"));
        assert_eq!(feed_hosts(&app), ["b.test", "c.test"]);
        // From the feed itself: `b` goes on to all bottles, then back to the first.
        keys(&mut app, &[Key::BackTab, Key::Down]);
        assert_eq!(app.selected(Pane::Refusals), 1);
        keys(&mut app, &[Key::Char('b')]);
        assert_eq!(app.feed, Feed::All);
        assert_eq!(app.feed_bottle(), None);
        assert_eq!(feed_hosts(&app), ["b.test", "a.test", "c.test"]);
        assert_eq!(
            app.selected(Pane::Refusals),
            0,
            "a new feed starts at its top"
        );
        keys(&mut app, &[Key::Char('b')]);
        assert_eq!(app.feed_bottle(), Some("dev-1"));
        keys(&mut app, &[Key::Char('b')]);
        assert_eq!(app.feed_bottle(), Some("dev-2"));
        // `p` proposes for the bottle of the refusal under the cursor in this feed.
        keys(&mut app, &[Key::Down, Key::Char('p')]);
        assert!(
            matches!(&app.mode, Mode::Propose { bottle, form } if bottle == "dev-2" && form.host == "c.test")
        );
        // The followed bottle stopped: the feed follows the one now selected.
        app.mode = Mode::Normal;
        app.handle(Event::Bottles(vec![bottle("dev-1")]));
        assert_eq!(feed_hosts(&app), ["a.test"]);
        assert_eq!(app.selected(Pane::Refusals), 0);
    }

    #[test]
    fn a_git_gate_refusal_is_not_turned_into_a_route_request() {
        let mut app = App::new(false);
        app.handle(Event::Bottles(vec![bottle("dev-1")]));
        app.handle(Event::Refusals(vec![RefusalEvent {
            method: "PUSH".into(),
            host: "github.com".into(),
            path: "/proj.git/refs/heads/main".into(),
            layer: "git-gate".into(),
            rule: "ref-force".into(),
            ..refusal()
        }]));
        let fx = keys(&mut app, &[Key::Tab, Key::Char('p')]);
        assert!(fx.is_empty());
        assert_eq!(app.mode, Mode::Normal, "no request form opens");
        let status = app.status.as_ref().unwrap();
        assert!(status.error);
        assert_eq!(status.text, GIT_REFUSAL_HINT);
        assert!(keys(&mut app, &[Key::Enter]).is_empty());
        assert_eq!(app.mode, Mode::Normal);
    }

    fn bottle(id: &str) -> ActiveBottle {
        ActiveBottle {
            backend: "docker".into(),
            identity: id.into(),
            agent: "dev".into(),
            services: vec!["agent".into(), "egress".into(), "supervise".into()],
            containers: vec![],
        }
    }

    #[test]
    fn attach_outside_tmux_runs_here_and_inside_reuses_the_pane() {
        let mut app = App::new(false);
        app.handle(Event::Bottles(vec![bottle("dev-1")]));
        let fx = keys(&mut app, &[Key::BackTab, Key::Enter]);
        match &fx[..] {
            [Effect::RunHere(s)] => {
                assert_eq!(s.args[..4], ["exec", "dev-1", "--", "sh"]);
                assert!(s.args[5].contains("--continue"), "{}", s.args[5]);
                assert!(s.args[5].contains(" || exec claude"), "{}", s.args[5]);
            }
            other => panic!("{other:?}"),
        }

        let mut app = App::new(true);
        app.handle(Event::Bottles(vec![bottle("dev-1")]));
        app.pane = Pane::Bottles;
        let fx = keys(&mut app, &[Key::Char('a')]);
        assert!(matches!(&fx[..], [Effect::OpenPane { pane: None, .. }]));
        app.handle(Event::SessionPane("%7".into()));
        let fx = keys(&mut app, &[Key::Char('a')]);
        assert!(matches!(&fx[..], [Effect::OpenPane { pane: Some(p), .. }] if p == "%7"));
    }

    #[test]
    fn stop_asks_first() {
        let mut app = App::new(false);
        app.handle(Event::Bottles(vec![bottle("dev-1")]));
        app.pane = Pane::Bottles;
        assert!(keys(&mut app, &[Key::Char('s'), Key::Char('n')]).is_empty());
        let fx = keys(&mut app, &[Key::Char('s'), Key::Char('y')]);
        assert_eq!(
            fx,
            [Effect::Stop {
                identity: "dev-1".into(),
                backend: "docker".into()
            }]
        );
    }

    #[test]
    fn new_agent_filter_backend_preflight_launch() {
        let mut app = App::new(true);
        app.handle(Event::Agents(vec![
            "api".into(),
            "dev".into(),
            "docs".into(),
        ]));
        keys(&mut app, &[Key::Char('n')]);
        typed(&mut app, "do");
        assert_eq!(app.filtered_agents("do"), ["docs"]);
        // `q` typed in the picker filters; it does not quit.
        assert!(typed(&mut app, "q").is_empty());
        keys(&mut app, &[Key::Backspace]);
        keys(&mut app, &[Key::Enter]);
        assert!(matches!(&app.mode, Mode::PickBackend { agent, .. } if agent == "docs"));
        let fx = keys(&mut app, &[Key::Down, Key::Enter]);
        assert_eq!(
            fx,
            [Effect::Preflight {
                agent: "docs".into(),
                backend: BackendKind::Smolmachines
            }]
        );
        // Enter before the preflight answered launches nothing.
        assert!(keys(&mut app, &[Key::Enter]).is_empty());
        app.handle(Event::Preflight {
            agent: "docs".into(),
            backend: BackendKind::Smolmachines,
            result: Ok("plan".into()),
        });
        let fx = keys(&mut app, &[Key::Enter]);
        match &fx[..] {
            [
                Effect::OpenPane {
                    session,
                    pane: None,
                },
            ] => assert_eq!(
                session.args,
                ["start", "docs", "--backend", "smolmachines", "--yes"]
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_failed_preflight_launches_nothing() {
        let mut app = App::new(false);
        app.handle(Event::Agents(vec!["dev".into()]));
        keys(&mut app, &[Key::Char('n'), Key::Enter, Key::Enter]);
        app.handle(Event::Preflight {
            agent: "dev".into(),
            backend: BackendKind::Docker,
            result: Err("no engine".into()),
        });
        assert!(keys(&mut app, &[Key::Enter]).is_empty());
        assert_eq!(app.mode, Mode::Normal);
    }

    #[test]
    fn quit_keys() {
        let mut app = App::new(false);
        assert_eq!(keys(&mut app, &[Key::Char('q')]), [Effect::Quit]);
        app.mode = Mode::Reject {
            id: ID1.into(),
            reason: String::new(),
        };
        assert_eq!(keys(&mut app, &[Key::CtrlC]), [Effect::Quit]);
    }

    #[test]
    fn line_diff_marks_added_and_removed() {
        let d = line_diff("FROM a\nRUN x\n", "FROM a\nRUN y\n");
        assert_eq!(
            d,
            [
                DiffLine::Same("FROM a".into()),
                DiffLine::Removed("RUN x".into()),
                DiffLine::Added("RUN y".into()),
            ]
        );
    }

    #[test]
    fn the_attach_script_falls_back_to_a_fresh_session() {
        let s = attach_script();
        assert!(
            s.contains("claude --dangerously-skip-permissions --continue"),
            "{s}"
        );
        assert!(
            s.contains("|| exec claude --dangerously-skip-permissions --append"),
            "{s}"
        );
        assert!(s.contains("resume --last || exec codex"), "{s}");
    }
}

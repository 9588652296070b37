//! The learned behavioural baseline (telemetry contract §3, `baseline_*` flags): for a while
//! (`learn_for`, from the first observation) what each declared agent does is recorded; after
//! that, what it had not done then is flagged. The judge calls [`Baseline::observe`] for every
//! span it judged under an agent.
//!
//! Per agent the baseline keeps the destinations (`host:port`) it reached, the (tool,
//! destination) pairs, the programs it executed, the directories of the files it opened (a file
//! directly under `/` keeps its full path), the models it called, and the largest request body
//! per tool (or per destination outside tools).
//!
//! It never learns after its learning period, so behaviour an attacker provokes later cannot
//! teach it. Memory is bounded: each set of an agent holds at most [`MAX_ENTRIES`] entries;
//! past that, new behaviour seen while learning is not recorded (it will be flagged after the
//! period) and a warning is logged once.
//!
//! The file (see `baseline/file.rs`) is JSON, versioned, with sorted arrays so that it reads and diffs well;
//! an operator can review it, extend `learning_until`, or delete it to learn again.

use std::{
    borrow::Cow,
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

mod file;

/// Drift flags against the learned baseline: the `baseline_*` values of the contract's one list
/// ([`runbom_event::semconv::drift`]), named here without their prefix.
pub mod flag {
    pub use runbom_event::semconv::drift::{
        BASELINE_NEW_DESTINATION as NEW_DESTINATION, BASELINE_NEW_EXEC as NEW_EXEC,
        BASELINE_NEW_FILE as NEW_FILE, BASELINE_NEW_MODEL as NEW_MODEL,
        BASELINE_NEW_TOOL_DESTINATION as NEW_TOOL_DESTINATION,
        BASELINE_PAYLOAD_SIZE as PAYLOAD_SIZE,
    };
    /// Every flag, in the order [`super::Baseline::observe`] returns them.
    pub const ALL: [&str; 6] = [
        NEW_DESTINATION,
        NEW_EXEC,
        NEW_FILE,
        NEW_TOOL_DESTINATION,
        PAYLOAD_SIZE,
        NEW_MODEL,
    ];
}

/// Most entries in one set of one agent (destinations, pairs, programs, directories, models,
/// payload keys).
pub const MAX_ENTRIES: usize = 10_000;

/// What one judged span did, as the baseline sees it (borrowed from the judge's data).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour<'a> {
    /// An outgoing connection or request; `dest` is "host:port" (the name when known, else the
    /// IP), `tool` the tool span above it (if any), `payload` the request body size in bytes
    /// when known. A scheme, userinfo, path or query in `dest` is dropped: the baseline keeps
    /// `host:port` only, so never a credential.
    Destination {
        dest: &'a str,
        tool: Option<&'a str>,
        payload: Option<u64>,
    },
    Exec {
        path: &'a str,
    },
    File {
        path: &'a str,
    },
    Model {
        model: &'a str,
    },
}

#[derive(Clone, Debug)]
pub struct Settings {
    /// Where the baseline is kept. Missing file: learning starts now; present: loaded (and
    /// learning continues if its learning period is not over yet).
    pub path: PathBuf,
    /// How long behaviour is learned (from the first observation of the baseline's life,
    /// persisted in the file) before anything new is flagged. Default 10 minutes. A loaded file
    /// keeps its own `learning_until`.
    pub learn_for: Duration,
    /// A request body is `baseline_payload_size` when larger than this many times the largest
    /// seen while learning for the same (agent, tool or destination) ... Default 4.0; at least
    /// 1.0.
    pub payload_factor: f64,
    /// ... and larger than this floor in bytes (tiny bodies are never flagged). Default 4096.
    pub payload_floor: u64,
}

impl Settings {
    pub const DEFAULT_LEARN_FOR: Duration = Duration::from_mins(10);
    pub const DEFAULT_PAYLOAD_FACTOR: f64 = 4.0;
    pub const DEFAULT_PAYLOAD_FLOOR: u64 = 4096;

    /// The defaults, kept at `path`.
    #[must_use]
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            learn_for: Self::DEFAULT_LEARN_FOR,
            payload_factor: Self::DEFAULT_PAYLOAD_FACTOR,
            payload_floor: Self::DEFAULT_PAYLOAD_FLOOR,
        }
    }
}

/// A baseline that could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error("{file}: cannot read: {error}")]
    Read { file: String, error: std::io::Error },
    #[error("{file}: not JSON: {error}")]
    Json {
        file: String,
        error: serde_json::Error,
    },
    #[error("{file}: {path}: {reason}")]
    Invalid {
        file: String,
        path: String,
        reason: String,
    },
    #[error("{file}: cannot write: {error}")]
    Write { file: String, error: std::io::Error },
    #[error("baseline settings: {0}")]
    Settings(String),
}

/// Counts for `/metrics` and logs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BaselineStats {
    pub agents: usize,
    /// Entries learned, over every set of every agent.
    pub entries: usize,
    /// Behaviour seen while learning but not recorded because its set was full.
    pub not_recorded: u64,
    /// Flags raised since the baseline was opened, per flag in [`flag::ALL`] order.
    pub flagged: Vec<(&'static str, u64)>,
}

/// What one agent did while the baseline learned (as the file writes it).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
struct Learned {
    destinations: BTreeSet<String>,
    /// Tool → destinations it reached.
    tool_destinations: BTreeMap<String, BTreeSet<String>>,
    execs: BTreeSet<String>,
    file_dirs: BTreeSet<String>,
    models: BTreeSet<String>,
    /// Largest request body per tool ...
    tool_payload_max: BTreeMap<String, u64>,
    /// ... and per destination, for requests outside tools.
    destination_payload_max: BTreeMap<String, u64>,
}

static NOTHING: Learned = Learned {
    destinations: BTreeSet::new(),
    tool_destinations: BTreeMap::new(),
    execs: BTreeSet::new(),
    file_dirs: BTreeSet::new(),
    models: BTreeSet::new(),
    tool_payload_max: BTreeMap::new(),
    destination_payload_max: BTreeMap::new(),
};

impl Learned {
    fn entries(&self) -> usize {
        self.destinations.len()
            + self.pairs()
            + self.execs.len()
            + self.file_dirs.len()
            + self.models.len()
            + self.tool_payload_max.len()
            + self.destination_payload_max.len()
    }

    fn pairs(&self) -> usize {
        self.tool_destinations.values().map(BTreeSet::len).sum()
    }

    fn payload_max(&self, tool: Option<&str>, dest: &str) -> Option<u64> {
        match tool {
            Some(t) => self.tool_payload_max.get(t),
            None => self.destination_payload_max.get(dest),
        }
        .copied()
    }
}

/// The outcome of recording one entry.
enum Added {
    Known,
    New,
    /// Not recorded: the set is full (named for the warning).
    Full(&'static str),
}

fn add(set: &mut BTreeSet<String>, v: &str, name: &'static str) -> Added {
    if set.contains(v) {
        Added::Known
    } else if set.len() >= MAX_ENTRIES {
        Added::Full(name)
    } else {
        set.insert(v.to_owned());
        Added::New
    }
}

fn raise(map: &mut BTreeMap<String, u64>, key: &str, size: u64, name: &'static str) -> Added {
    if let Some(max) = map.get_mut(key) {
        if *max >= size {
            return Added::Known;
        }
        *max = size;
        Added::New
    } else if map.len() >= MAX_ENTRIES {
        Added::Full(name)
    } else {
        map.insert(key.to_owned(), size);
        Added::New
    }
}

/// The learned baseline of every agent, and what was flagged against it.
#[derive(Debug)]
pub struct Baseline {
    settings: Settings,
    /// The learning period in Unix milliseconds (what the file can hold); `None` until the
    /// first observation.
    period: Option<(u64, u64)>,
    /// Set once an observation came after the period: a clock that steps back later does not
    /// reopen it.
    over: bool,
    agents: BTreeMap<String, Learned>,
    /// Changed since the last save.
    dirty: bool,
    flagged: [u64; flag::ALL.len()],
    not_recorded: u64,
    warned_full: bool,
}

impl Baseline {
    /// Loads `settings.path` or starts empty when it does not exist. Errors name the file, the
    /// JSON path and the reason (e.g. `baseline.json: $.agents["agent:support"].destinations[2]:
    /// expected a string, found a number`); a bad file is never silently replaced.
    pub fn open(settings: Settings, now: SystemTime) -> Result<Self, BaselineError> {
        if !settings.payload_factor.is_finite() || settings.payload_factor < 1.0 {
            return Err(BaselineError::Settings(format!(
                "payload_factor must be a number of at least 1, not {}",
                settings.payload_factor
            )));
        }
        let loaded = file::load(&settings.path)?;
        let mut baseline = Self {
            settings,
            period: None,
            over: false,
            agents: BTreeMap::new(),
            dirty: false,
            flagged: [0; flag::ALL.len()],
            not_recorded: 0,
            warned_full: false,
        };
        let file = baseline.settings.path.display();
        let Some(l) = loaded else {
            tracing::info!(
                "baseline {file}: none yet; learning for {:?} from the first observation",
                baseline.settings.learn_for
            );
            return Ok(baseline);
        };
        baseline.period = Some((l.started_ms, l.until_ms));
        baseline.agents = l.agents;
        baseline.over = !baseline.learning(now);
        let state = if baseline.over {
            "flagging new behaviour"
        } else {
            "learning"
        };
        tracing::info!(
            "baseline {file}: {} agents, {} entries, learned until {}; {state}",
            baseline.agents.len(),
            baseline.stats().entries,
            file::time(l.until_ms),
        );
        Ok(baseline)
    }

    /// Whether the baseline is still learning at `now`: before the end of its period, and no
    /// earlier call of [`Self::observe`] (or [`Self::open`]) found the period over. `now` is
    /// the wall clock, never a time from the telemetry (which a sender chooses).
    #[must_use]
    pub fn learning(&self, now: SystemTime) -> bool {
        !self.over && self.period.is_none_or(|(_, until)| unix_ms(now) < until)
    }

    /// The end of the learning period; `None` before the first observation.
    #[must_use]
    pub fn learning_until(&self) -> Option<SystemTime> {
        self.period
            .map(|(_, until)| UNIX_EPOCH + Duration::from_millis(until))
    }

    /// Records (while learning) or checks (after) what `agent` did. Returns the flags raised
    /// (empty while learning and for known behaviour), in [`flag::ALL`] order. Never learns
    /// after the learning period (an attacker must not be able to teach it), but counts what
    /// was flagged.
    pub fn observe(
        &mut self,
        agent: &str,
        what: &Behaviour<'_>,
        now: SystemTime,
    ) -> Vec<&'static str> {
        if self.learning(now) {
            self.learn(agent, what, now);
            return Vec::new();
        }
        self.over = true;
        let flags = self.check(agent, what);
        for f in &flags {
            if let Some(i) = flag::ALL.iter().position(|a| a == f) {
                self.flagged[i] += 1;
            }
        }
        flags
    }

    fn learn(&mut self, agent: &str, what: &Behaviour<'_>, now: SystemTime) {
        if self.period.is_none() {
            let start = unix_ms(now);
            let span = u64::try_from(self.settings.learn_for.as_millis()).unwrap_or(u64::MAX);
            self.period = Some((start, start.saturating_add(span).min(file::MAX_MS)));
            self.dirty = true;
        }
        if !self.agents.contains_key(agent) {
            self.agents.insert(agent.to_owned(), Learned::default());
        }
        let Some(l) = self.agents.get_mut(agent) else {
            return;
        };
        let Some(key) = Key::of(what) else {
            return;
        };
        let mut outcomes = Vec::with_capacity(3);
        match key {
            Key::Destination(dest, tool, payload) => {
                outcomes.push(add(&mut l.destinations, &dest, "destinations"));
                if let Some(tool) = tool {
                    if !l.tool_destinations.contains_key(tool) && l.pairs() < MAX_ENTRIES {
                        l.tool_destinations.insert(tool.to_owned(), BTreeSet::new());
                    }
                    let pairs = l.pairs();
                    outcomes.push(match l.tool_destinations.get_mut(tool) {
                        Some(set) if set.contains(&*dest) => Added::Known,
                        Some(set) if pairs < MAX_ENTRIES => {
                            set.insert(String::from(&*dest));
                            Added::New
                        }
                        _ => Added::Full("tool_destinations"),
                    });
                }
                if let Some(size) = payload {
                    outcomes.push(match tool {
                        Some(t) => raise(&mut l.tool_payload_max, t, size, "tool_payload_max"),
                        None => raise(
                            &mut l.destination_payload_max,
                            &dest,
                            size,
                            "destination_payload_max",
                        ),
                    });
                }
            }
            Key::Exec(path) => outcomes.push(add(&mut l.execs, path, "execs")),
            Key::FileDir(dir) => outcomes.push(add(&mut l.file_dirs, dir, "file_dirs")),
            Key::Model(model) => outcomes.push(add(&mut l.models, model, "models")),
        }
        for o in outcomes {
            match o {
                Added::Known => {}
                Added::New => self.dirty = true,
                Added::Full(set) => {
                    self.not_recorded += 1;
                    if !self.warned_full {
                        self.warned_full = true;
                        tracing::warn!(
                            "baseline {}: {set} of {agent} holds {MAX_ENTRIES} entries; new \
                             behaviour is no longer learned for it (and is flagged after the \
                             learning period); further ones are not logged",
                            self.settings.path.display()
                        );
                    }
                }
            }
        }
    }

    fn check(&self, agent: &str, what: &Behaviour<'_>) -> Vec<&'static str> {
        let l = self.agents.get(agent).unwrap_or(&NOTHING);
        let mut flags = Vec::new();
        let Some(key) = Key::of(what) else {
            return flags;
        };
        match key {
            Key::Destination(dest, tool, payload) => {
                if !l.destinations.contains(&*dest) {
                    flags.push(flag::NEW_DESTINATION);
                }
                if let Some(tool) = tool
                    && !l
                        .tool_destinations
                        .get(tool)
                        .is_some_and(|s| s.contains(&*dest))
                {
                    flags.push(flag::NEW_TOOL_DESTINATION);
                }
                if let Some(size) = payload
                    && let Some(max) = l.payload_max(tool, &dest)
                    && self.too_large(size, max)
                {
                    flags.push(flag::PAYLOAD_SIZE);
                }
            }
            Key::Exec(path) if !l.execs.contains(path) => flags.push(flag::NEW_EXEC),
            Key::FileDir(dir) if !l.file_dirs.contains(dir) => flags.push(flag::NEW_FILE),
            Key::Model(model) if !l.models.contains(model) => flags.push(flag::NEW_MODEL),
            Key::Exec(_) | Key::FileDir(_) | Key::Model(_) => {}
        }
        flags
    }

    // Bodies below 2^53 bytes convert exactly; the floor keeps the comparison honest above.
    #[allow(clippy::cast_precision_loss)]
    fn too_large(&self, size: u64, max: u64) -> bool {
        size > self.settings.payload_floor
            && size as f64 > max as f64 * self.settings.payload_factor
    }

    /// A human sentence for a flag, e.g. "destination api.evil.example:443 was never contacted
    /// by agent:support while its baseline was learned (2026-11-27T06:00:00Z–06:10:00Z)".
    #[must_use]
    pub fn reason(&self, agent: &str, flag: &str, what: &Behaviour<'_>) -> String {
        let when = format!(
            "while its baseline was learned ({})",
            self.period
                .map_or_else(|| "not yet".to_owned(), |(s, u)| file::period(s, u))
        );
        let l = self.agents.get(agent).unwrap_or(&NOTHING);
        match (flag, *what) {
            (flag::NEW_DESTINATION, Behaviour::Destination { dest, .. }) => format!(
                "destination {} was never contacted by {agent} {when}",
                dest_key(dest)
            ),
            (flag::NEW_TOOL_DESTINATION, Behaviour::Destination { dest, tool, .. }) => format!(
                "destination {} was never reached through tool {} by {agent} {when}",
                dest_key(dest),
                tool.unwrap_or("?")
            ),
            (
                flag::PAYLOAD_SIZE,
                Behaviour::Destination {
                    dest,
                    tool,
                    payload,
                },
            ) => {
                let dest = dest_key(dest);
                let max = l.payload_max(tool, &dest).unwrap_or(0);
                let (via, it) = match tool {
                    Some(t) => (format!("through tool {t}"), "through it"),
                    None => (format!("to {dest}"), "to it"),
                };
                format!(
                    "a request body of {} bytes {via} is more than {}× the largest ({max} bytes) \
                     {agent} sent {it} {when}",
                    payload.unwrap_or(0),
                    self.settings.payload_factor
                )
            }
            (flag::NEW_EXEC, Behaviour::Exec { path }) => {
                format!("program {path} was never executed by {agent} {when}")
            }
            (flag::NEW_FILE, Behaviour::File { path }) => format!(
                "file {path} is in {}, where {agent} opened no file {when}",
                file_dir(path)
            ),
            (flag::NEW_MODEL, Behaviour::Model { model }) => {
                format!("model {model} was never called by {agent} {when}")
            }
            _ => format!("{flag}: {what:?} by {agent}, not seen {when}"),
        }
    }

    /// Writes the baseline atomically (temp file + rename) when it changed since the last save;
    /// returns whether it wrote.
    pub fn save(&mut self) -> Result<bool, BaselineError> {
        let (true, Some((started, until))) = (self.dirty, self.period) else {
            return Ok(false);
        };
        let text = file::render(started, until, &self.agents);
        file::write_atomic(&self.settings.path, text.as_bytes())?;
        self.dirty = false;
        Ok(true)
    }

    /// Counts for /metrics and logs: entries learned, flags raised per flag.
    #[must_use]
    pub fn stats(&self) -> BaselineStats {
        BaselineStats {
            agents: self.agents.len(),
            entries: self.agents.values().map(Learned::entries).sum(),
            not_recorded: self.not_recorded,
            flagged: flag::ALL.iter().copied().zip(self.flagged).collect(),
        }
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .min(file::MAX_MS)
}

/// `host:port` of a destination, lower case, without scheme, userinfo, path or query.
/// What the baseline keeps of a behaviour, learning and checking alike: the destination as
/// `host:port`, a file's directory; `None` for an empty one (nothing to learn or flag).
enum Key<'a> {
    /// `host:port`, the tool above, the request body's size.
    Destination(Cow<'a, str>, Option<&'a str>, Option<u64>),
    Exec(&'a str),
    FileDir(&'a str),
    Model(&'a str),
}

impl<'a> Key<'a> {
    fn of(what: &Behaviour<'a>) -> Option<Self> {
        match *what {
            Behaviour::Destination {
                dest,
                tool,
                payload,
            } => {
                let dest = dest_key(dest);
                (!dest.is_empty()).then_some(Self::Destination(dest, tool, payload))
            }
            Behaviour::Exec { path } => (!path.is_empty()).then_some(Self::Exec(path)),
            Behaviour::File { path } => (!path.is_empty()).then(|| Self::FileDir(file_dir(path))),
            Behaviour::Model { model } => (!model.is_empty()).then_some(Self::Model(model)),
        }
    }
}

fn dest_key(dest: &str) -> Cow<'_, str> {
    let clean = |b: u8| !(b.is_ascii_uppercase() || matches!(b, b'/' | b'@' | b'?' | b'#'));
    if dest.bytes().all(clean) {
        return Cow::Borrowed(dest);
    }
    let rest = dest.split_once("://").map_or(dest, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or("");
    Cow::Owned(host_port.to_ascii_lowercase())
}

/// The directory a file is in; a file directly under `/` (or a relative name) is itself.
fn file_dir(path: &str) -> &str {
    match path.rsplit_once('/') {
        Some((dir, _)) if !dir.is_empty() => dir,
        _ => path,
    }
}

#[cfg(test)]
mod tests;

//! Strings kept for the activities of the next spans.

use super::Activity;

/// Strings of activities judged before, emptied, to hold the texts of the next ones: the
/// processor classifies every span, and taking a kept string costs less than allocating one
/// (and freeing it after the trace).
#[derive(Debug, Default)]
pub struct Texts(Vec<String>);

/// Strings [`Texts`] keeps at most (more than a trace's spans usually have) ...
const TEXTS: usize = 1024;
/// ... and the room of each: at least this much (most names fit), at most 8 times it.
const TEXT_ROOM: usize = 32;

impl Texts {
    /// A string holding `s`.
    pub(super) fn text(&mut self, s: &str) -> String {
        let mut t = self.empty();
        t.push_str(s);
        t
    }

    /// An empty string, kept or new.
    pub(super) fn empty(&mut self) -> String {
        self.0
            .pop()
            .unwrap_or_else(|| String::with_capacity(TEXT_ROOM))
    }

    pub(super) fn keep(&mut self, mut t: String) {
        if self.0.len() < TEXTS && (TEXT_ROOM..=8 * TEXT_ROOM).contains(&t.capacity()) {
            t.clear();
            self.0.push(t);
        }
    }

    fn keep_opt(&mut self, t: Option<String>) {
        if let Some(t) = t {
            self.keep(t);
        }
    }

    /// Keeps the strings of `act`, which is no longer needed.
    pub fn recycle(&mut self, act: Activity) {
        match act {
            Activity::Agent { name } => self.keep_opt(name),
            Activity::Model {
                model,
                provider,
                operation,
            } => {
                self.keep_opt(model);
                self.keep_opt(provider);
                self.keep(operation);
            }
            Activity::Tool { name } | Activity::Dns { name } => self.keep(name),
            Activity::File { path } | Activity::Exec { path } => self.keep(path),
            Activity::Mcp {
                method,
                tool,
                server,
                url,
            } => {
                self.keep(method);
                self.keep_opt(tool);
                self.keep_opt(server);
                self.keep_opt(url);
            }
            Activity::Http { .. }
            | Activity::Connect { .. }
            | Activity::Db { .. }
            | Activity::Accept { .. }
            | Activity::Other => {}
        }
    }
}

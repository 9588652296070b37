//! Protecting the workload under overload: when to wake the ring reader, and which events the
//! kernel side sheds first when the ring fills (rather than losing records at random once it is
//! full). The kernel applies both in `util::output`; this module turns settings into the
//! `ProbeConfig` fields and names the shedding slots.

use std::time::Duration;

use runbom_common::{EventKind, SHED_FILE_LOW_VALUE, SHED_SLOTS};

/// The event names that can be shed, with their shedding slot. `process.exec`, fork and
/// `process.exit` are not among them: the process tree every other event hangs on is never
/// shed.
pub const SHEDDABLE: [(&str, usize); 7] = [
    ("file.open.low_value", SHED_FILE_LOW_VALUE),
    ("file.open", EventKind::FileOpen as usize),
    ("dns.query", EventKind::DnsQuery as usize),
    ("net.connect", EventKind::Connect as usize),
    ("net.accept", EventKind::Accept as usize),
    ("http.request", EventKind::HttpData as usize),
    ("mcp", EventKind::JsonRpc as usize),
];

/// The name of shedding slot `slot` (`None` for the kinds never shed).
#[must_use]
pub fn slot_name(slot: usize) -> Option<&'static str> {
    SHEDDABLE.iter().find(|(_, s)| *s == slot).map(|(n, _)| *n)
}

/// The shedding slot of an event name (`None` when it cannot be shed).
#[must_use]
pub fn slot_of(name: &str) -> Option<usize> {
    SHEDDABLE.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

/// When the reader is woken and what is shed under overload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Overload {
    /// The reader drains the ring at least this often (the bound on an event's wait in the
    /// ring when nothing wakes it).
    pub drain_interval: Duration,
    /// The record that crosses a multiple of this many unread bytes wakes the reader at once
    /// (a power of two; `None`: 1/16 of the ring; `Some(0)`: every record wakes a reader that
    /// had caught up, the kernel's default, which costs an interrupt per event).
    pub wakeup_bytes: Option<u32>,
    /// Ring fill (percent of its bytes) at which each slot is shed; 0: never.
    pub shed_at_percent: [u8; SHED_SLOTS],
}

impl Default for Overload {
    fn default() -> Self {
        let mut shed_at_percent = [0; SHED_SLOTS];
        for (name, percent) in [
            ("file.open.low_value", 50),
            ("file.open", 70),
            ("dns.query", 85),
            ("net.connect", 85),
            ("net.accept", 85),
            ("http.request", 95),
            ("mcp", 95),
        ] {
            if let Some(slot) = slot_of(name) {
                shed_at_percent[slot] = percent;
            }
        }
        Self {
            drain_interval: Duration::from_millis(10),
            wakeup_bytes: None,
            shed_at_percent,
        }
    }
}

impl Overload {
    /// `ProbeConfig::wake_bytes` for a ring of `ring_bytes`.
    #[must_use]
    pub fn wake_bytes(&self, ring_bytes: u32) -> u32 {
        self.wakeup_bytes.unwrap_or(ring_bytes / 16)
    }

    /// `ProbeConfig::shed_at`: the unread bytes at which each slot is shed.
    #[must_use]
    pub fn shed_at(&self, ring_bytes: u32) -> [u32; SHED_SLOTS] {
        self.shed_at_percent
            .map(|p| (u64::from(ring_bytes) * u64::from(p.min(100)) / 100) as u32)
    }

    /// `ProbeConfig::open_scratch_at`: the lower of the opens' shedding levels, at most half
    /// the ring (also when opens are never shed).
    #[must_use]
    pub fn open_scratch_at(&self, ring_bytes: u32) -> u32 {
        let at = self.shed_at(ring_bytes);
        [EventKind::FileOpen as usize, SHED_FILE_LOW_VALUE]
            .into_iter()
            .map(|slot| at[slot])
            .filter(|&bytes| bytes != 0)
            .fold(ring_bytes / 2, u32::min)
    }
}

/// Low-value prefixes as they go into the path trie: only those whose path the include and
/// exclude lists report (the longest of them matching it is an include), so that a low-value
/// prefix never turns on reporting of a path the lists leave out.
#[must_use]
pub fn effective_low_value<'a>(
    include: &[String],
    exclude: &[String],
    low_value: &'a [String],
) -> Vec<&'a str> {
    let longest = |list: &[String], path: &str| {
        list.iter()
            .filter(|p| path.starts_with(p.as_str()))
            .map(String::len)
            .max()
    };
    low_value
        .iter()
        .filter(|p| match (longest(include, p), longest(exclude, p)) {
            (Some(i), Some(e)) => i > e,
            (Some(_), None) => true,
            _ => false,
        })
        .map(String::as_str)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_string()).collect()
    }

    #[test]
    fn low_value_only_where_reported() {
        let include = strings(&["/", "/usr/local/"]);
        let exclude = strings(&["/usr/lib/", "/proc/"]);
        let low = strings(&["/usr/", "/usr/lib/python3/", "/proc/x/", "/var/cache/"]);
        assert_eq!(
            effective_low_value(&include, &exclude, &low),
            vec!["/usr/", "/var/cache/"]
        );
        let only_tmp = strings(&["/tmp/"]);
        assert!(effective_low_value(&only_tmp, &[], &low).is_empty());
    }

    #[test]
    fn opens_leave_the_ring_by_the_time_they_are_shed_or_half_of_it() {
        let mut o = Overload::default();
        let ring = 1 << 20;
        assert_eq!(
            o.open_scratch_at(ring),
            o.shed_at(ring)[SHED_FILE_LOW_VALUE]
        );
        o.shed_at_percent[SHED_FILE_LOW_VALUE] = 0;
        o.shed_at_percent[EventKind::FileOpen as usize] = 0;
        assert_eq!(o.open_scratch_at(ring), ring / 2);
    }

    #[test]
    fn defaults_never_shed_the_process_tree() {
        let o = Overload::default();
        for kind in [EventKind::Exec, EventKind::Fork, EventKind::Exit] {
            assert_eq!(o.shed_at_percent[kind as usize], 0, "{kind:?}");
            assert_eq!(slot_name(kind as usize), None);
        }
        let at = o.shed_at(1 << 20);
        assert!(at[SHED_FILE_LOW_VALUE] < at[EventKind::FileOpen as usize]);
        assert!(at[EventKind::FileOpen as usize] < at[EventKind::Connect as usize]);
        assert_eq!(o.wake_bytes(1 << 20), 1 << 16);
        assert_eq!(slot_name(SHED_FILE_LOW_VALUE), Some("file.open.low_value"));
    }
}

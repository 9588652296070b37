use std::{
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use super::{Baseline, BaselineError, Behaviour, MAX_ENTRIES, Settings, flag};

const AGENT: &str = "agent:support";

/// 2026-11-27T06:00:00Z.
fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_hours(498_822)
}

fn at(mins: u64) -> SystemTime {
    t0() + Duration::from_mins(mins)
}

/// A fresh directory of its own for each test.
fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("runbom-baseline-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
    d
}

fn open(path: &Path, now: SystemTime) -> Baseline {
    Baseline::open(Settings::new(path), now).unwrap_or_else(|e| panic!("{e}"))
}

/// A baseline kept in memory only (its file never written).
fn fresh() -> Baseline {
    open(Path::new("/nonexistent/runbom-baseline.json"), t0())
}

fn dest<'a>(dest: &'a str, tool: Option<&'a str>, payload: Option<u64>) -> Behaviour<'a> {
    Behaviour::Destination {
        dest,
        tool,
        payload,
    }
}

/// What an agent does while the baseline learns (minute 1).
fn teach(b: &mut Baseline) {
    for what in [
        dest("api.openai.com:443", None, Some(20_000)),
        dest("tickets.internal:8080", Some("http_post"), Some(1_500)),
        dest("search.internal:443", Some("search"), None),
        Behaviour::Exec {
            path: "/usr/bin/git",
        },
        Behaviour::File {
            path: "/data/tickets/t-17.txt",
        },
        Behaviour::Model {
            model: "gpt-4o-mini",
        },
    ] {
        assert_eq!(b.observe(AGENT, &what, at(1)), Vec::<&str>::new());
    }
}

#[test]
fn learns_then_flags_each_kind() {
    let mut b = fresh();
    assert!(b.learning(t0()));
    teach(&mut b);
    assert!(b.learning(at(10) - Duration::from_millis(1)));
    assert!(!b.learning(at(11)));
    let after = at(12);
    let cases: [(Behaviour<'_>, &[&str]); 12] = [
        (
            dest("api.evil.example:443", None, None),
            &[flag::NEW_DESTINATION],
        ),
        (dest("api.openai.com:443", None, Some(30_000)), &[]),
        (
            Behaviour::Exec {
                path: "/usr/bin/curl",
            },
            &[flag::NEW_EXEC],
        ),
        (
            Behaviour::Exec {
                path: "/usr/bin/git",
            },
            &[],
        ),
        (
            Behaviour::File {
                path: "/etc/shadow",
            },
            &[flag::NEW_FILE],
        ),
        (
            Behaviour::File {
                path: "/data/tickets/t-18.txt",
            },
            &[],
        ),
        (
            Behaviour::File {
                path: "/data/tickets/archive/t-1.txt",
            },
            &[flag::NEW_FILE],
        ),
        (Behaviour::Model { model: "gpt-5" }, &[flag::NEW_MODEL]),
        (
            Behaviour::Model {
                model: "gpt-4o-mini",
            },
            &[],
        ),
        (
            dest("tickets.internal:8080", Some("http_post"), Some(1_000)),
            &[],
        ),
        (
            dest("tickets.internal:8080", Some("http_post"), Some(100_000)),
            &[flag::PAYLOAD_SIZE],
        ),
        (
            dest("api.evil.example:443", Some("http_post"), Some(1 << 20)),
            &[
                flag::NEW_DESTINATION,
                flag::NEW_TOOL_DESTINATION,
                flag::PAYLOAD_SIZE,
            ],
        ),
    ];
    for (what, want) in &cases {
        assert_eq!(b.observe(AGENT, what, after), *want, "{what:?}");
    }
    // Another agent learned nothing: everything it does is new.
    assert_eq!(
        b.observe(
            "agent:billing",
            &Behaviour::Model {
                model: "gpt-4o-mini"
            },
            after
        ),
        [flag::NEW_MODEL]
    );
    let stats = b.stats();
    assert_eq!(stats.agents, 1);
    assert_eq!(stats.entries, 10);
    assert_eq!(
        stats.flagged,
        [
            (flag::NEW_DESTINATION, 2),
            (flag::NEW_EXEC, 1),
            (flag::NEW_FILE, 2),
            (flag::NEW_TOOL_DESTINATION, 1),
            (flag::PAYLOAD_SIZE, 2),
            (flag::NEW_MODEL, 2),
        ]
    );
}

#[test]
fn nothing_is_learned_after_the_period() {
    let mut b = fresh();
    teach(&mut b);
    b.dirty = false; // as if saved
    let entries = b.stats().entries;
    let evil = dest("api.evil.example:443", Some("http_post"), Some(9_999_999));
    for _ in 0..3 {
        assert_eq!(
            b.observe(AGENT, &evil, at(20)),
            [
                flag::NEW_DESTINATION,
                flag::NEW_TOOL_DESTINATION,
                flag::PAYLOAD_SIZE
            ]
        );
    }
    assert_eq!(b.stats().entries, entries);
    assert!(!b.dirty, "nothing to save after the period");
    // A clock that steps back does not reopen the period.
    let curl = Behaviour::Exec {
        path: "/usr/bin/curl",
    };
    assert!(!b.learning(at(2)));
    assert_eq!(b.observe(AGENT, &curl, at(2)), [flag::NEW_EXEC]);
    assert_eq!(b.stats().entries, entries);
}

#[test]
fn a_sanctioned_tool_posting_elsewhere() {
    let mut b = fresh();
    teach(&mut b);
    // The approved http_post tool posts to a destination the agent never contacted.
    let exfil = dest("paste.evil.example:443", Some("http_post"), None);
    assert_eq!(
        b.observe(AGENT, &exfil, at(15)),
        [flag::NEW_DESTINATION, flag::NEW_TOOL_DESTINATION]
    );
    // A known destination reached by a tool that never reached it.
    let other_tool = dest("api.openai.com:443", Some("http_post"), None);
    assert_eq!(
        b.observe(AGENT, &other_tool, at(15)),
        [flag::NEW_TOOL_DESTINATION]
    );
    // A known destination outside tools, and a known pair.
    assert!(
        b.observe(AGENT, &dest("tickets.internal:8080", None, None), at(15))
            .is_empty()
    );
    assert!(
        b.observe(
            AGENT,
            &dest("search.internal:443", Some("search"), None),
            at(15)
        )
        .is_empty()
    );
    assert_eq!(
        b.reason(AGENT, flag::NEW_TOOL_DESTINATION, &exfil),
        "destination paste.evil.example:443 was never reached through tool http_post by \
         agent:support while its baseline was learned (2026-11-27T06:01:00Z–06:11:00Z)"
    );
    assert_eq!(
        b.reason(AGENT, flag::NEW_DESTINATION, &exfil),
        "destination paste.evil.example:443 was never contacted by agent:support while its \
         baseline was learned (2026-11-27T06:01:00Z–06:11:00Z)"
    );
}

#[test]
fn files_are_learned_by_directory() {
    assert_eq!(super::file_dir("/data/tickets/t-17.txt"), "/data/tickets");
    assert_eq!(super::file_dir("/etc/passwd"), "/etc");
    assert_eq!(super::file_dir("/vmlinuz"), "/vmlinuz");
    assert_eq!(super::file_dir("relative.txt"), "relative.txt");
    let mut b = fresh();
    for path in [
        "/data/tickets/t-17.txt",
        "/data/tickets/t-18.txt",
        "/vmlinuz",
    ] {
        b.observe(AGENT, &Behaviour::File { path }, at(1));
    }
    assert_eq!(b.stats().entries, 2);
    let file = |path| b.flags_for(&Behaviour::File { path });
    assert!(file("/data/tickets/t-99.txt").is_empty());
    assert!(file("/vmlinuz").is_empty());
    assert_eq!(file("/initrd.img"), [flag::NEW_FILE]);
    assert_eq!(file("/data/secrets/key.pem"), [flag::NEW_FILE]);
    assert_eq!(
        b.reason(
            AGENT,
            flag::NEW_FILE,
            &Behaviour::File {
                path: "/data/secrets/key.pem"
            }
        ),
        "file /data/secrets/key.pem is in /data/secrets, where agent:support opened no file \
         while its baseline was learned (2026-11-27T06:01:00Z–06:11:00Z)"
    );
}

impl Baseline {
    /// What `observe` would flag after the period, without counting it.
    fn flags_for(&self, what: &Behaviour<'_>) -> Vec<&'static str> {
        self.check(AGENT, what)
    }
}

#[test]
fn payload_factor_and_floor() {
    let mut b = fresh();
    b.settings.payload_factor = 4.0;
    b.settings.payload_floor = 4096;
    for (size, tool, to) in [
        (100, Some("tiny"), "a.example:443"),
        (2_000, Some("http_post"), "a.example:443"),
        (3_000, Some("http_post"), "b.example:443"),
        (10_000, None, "api.openai.com:443"),
    ] {
        b.observe(AGENT, &dest(to, tool, Some(size)), at(1));
    }
    let flags = |tool, to, size| b.flags_for(&dest(to, tool, Some(size)));
    // Per tool: the largest while learning (3 000, to any destination) × 4.
    assert!(flags(Some("http_post"), "a.example:443", 12_000).is_empty());
    assert_eq!(
        flags(Some("http_post"), "a.example:443", 12_001),
        [flag::PAYLOAD_SIZE]
    );
    // A tiny tool: 100 × 4 = 400, but nothing up to the floor is flagged.
    assert!(flags(Some("tiny"), "a.example:443", 4_096).is_empty());
    assert_eq!(
        flags(Some("tiny"), "a.example:443", 4_097),
        [flag::PAYLOAD_SIZE]
    );
    // Outside tools: per destination.
    assert!(flags(None, "api.openai.com:443", 40_000).is_empty());
    assert_eq!(
        flags(None, "api.openai.com:443", 40_001),
        [flag::PAYLOAD_SIZE]
    );
    // A key never seen with a body while learning: no payload flag.
    assert_eq!(
        flags(Some("search"), "a.example:443", 1 << 30),
        [flag::NEW_TOOL_DESTINATION]
    );
    assert_eq!(
        flags(None, "b.example:443", 1 << 30),
        Vec::<&str>::new(),
        "b.example was reached, but only through a tool"
    );
    assert_eq!(
        b.reason(
            AGENT,
            flag::PAYLOAD_SIZE,
            &dest("a.example:443", Some("http_post"), Some(12_001))
        ),
        "a request body of 12001 bytes through tool http_post is more than 4× the largest \
         (3000 bytes) agent:support sent through it while its baseline was learned \
         (2026-11-27T06:01:00Z–06:11:00Z)"
    );
}

#[test]
fn save_and_reopen_keep_the_period() {
    let path = dir("reopen").join("state").join("baseline.json");
    let mut b = open(&path, t0());
    assert_eq!(
        b.save().ok(),
        Some(false),
        "nothing learned: nothing written"
    );
    assert!(!path.exists());
    teach(&mut b);
    assert_eq!(b.save().ok(), Some(true));
    assert_eq!(b.save().ok(), Some(false), "unchanged since the last save");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
    assert!(text.contains(r#""version": 1"#), "{text}");
    assert!(
        text.contains(r#""learning_until": "2026-11-27T06:11:00.000Z""#),
        "{text}"
    );
    // Reopened inside the period, with other settings: the file's period holds, learning goes on.
    let mut settings = Settings::new(&path);
    settings.learn_for = Duration::from_hours(24);
    let mut b = Baseline::open(settings, at(5)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(b.learning_until(), Some(at(11)));
    assert!(b.learning(at(5)));
    let curl = Behaviour::Exec {
        path: "/usr/bin/curl",
    };
    assert!(b.observe(AGENT, &curl, at(5)).is_empty());
    assert_eq!(b.save().ok(), Some(true));
    // Reopened after the period: it flags what it did not learn, and remembers what it did.
    let mut b = open(&path, at(30));
    assert!(!b.learning(at(30)));
    assert!(b.observe(AGENT, &curl, at(30)).is_empty());
    assert!(
        b.observe(
            AGENT,
            &dest("tickets.internal:8080", Some("http_post"), Some(6_000)),
            at(30)
        )
        .is_empty()
    );
    assert_eq!(
        b.observe(AGENT, &Behaviour::Exec { path: "/bin/sh" }, at(30)),
        [flag::NEW_EXEC]
    );
    assert_eq!(b.save().ok(), Some(false));
    assert!(!path.with_file_name("baseline.json.tmp").exists());
}

#[test]
fn destinations_keep_no_credentials() {
    let path = dir("credentials").join("baseline.json");
    let mut b = open(&path, t0());
    let leaky = dest(
        "https://user:hunter2@API.Example:443/v1/upload?token=s3cr3t",
        None,
        Some(10),
    );
    b.observe(AGENT, &leaky, at(1));
    assert!(b.save().unwrap_or_else(|e| panic!("{e}")));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
    assert!(text.contains("\"api.example:443\""), "{text}");
    for secret in ["hunter2", "user", "s3cr3t", "token", "/v1"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    assert!(
        b.observe(AGENT, &dest("api.example:443", None, None), at(20))
            .is_empty()
    );
}

#[test]
fn bad_files_are_errors_not_a_fresh_start() {
    let d = dir("bad");
    let path = d.join("baseline.json");
    std::fs::write(
        &path,
        r#"{ "version": 1, "learning_started": "2026-11-27T06:00:00Z",
            "learning_until": "2026-11-27T06:10:00Z",
            "agents": { "agent:support": { "destinations": ["a:1", "b:2", 3] } } }"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let err = |path: &Path| match Baseline::open(Settings::new(path), t0()) {
        Ok(_) => panic!("{} opened", path.display()),
        Err(e) => e,
    };
    let e = err(&path);
    assert!(matches!(e, BaselineError::Invalid { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!(
            r#"{}: $.agents["agent:support"].destinations[2]: expected a string, found a number"#,
            path.display()
        )
    );
    std::fs::write(&path, r#"{ "version": 7 }"#).unwrap_or_else(|e| panic!("{e}"));
    assert!(err(&path).to_string().ends_with(
        "baseline.json: $.version: unsupported version 7 (this runbom reads version 1)"
    ));
    std::fs::write(&path, "").unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(err(&path), BaselineError::Json { .. }));
    assert!(matches!(err(&d), BaselineError::Read { .. }));
    let mut settings = Settings::new(d.join("other.json"));
    settings.payload_factor = f64::NAN;
    assert!(matches!(
        Baseline::open(settings, t0()),
        Err(BaselineError::Settings(_))
    ));
}

#[test]
fn sets_are_bounded() {
    let mut b = fresh();
    let names: Vec<String> = (0..=MAX_ENTRIES)
        .map(|i| format!("/opt/bin/p{i}"))
        .collect();
    for path in &names {
        b.observe(AGENT, &Behaviour::Exec { path }, at(1));
    }
    // The last one did not fit; known behaviour and other sets still do.
    assert_eq!(b.stats().entries, MAX_ENTRIES);
    assert_eq!(b.stats().not_recorded, 1);
    b.observe(AGENT, &Behaviour::Exec { path: &names[0] }, at(1));
    b.observe(AGENT, &Behaviour::Model { model: "m" }, at(1));
    assert_eq!(b.stats().entries, MAX_ENTRIES + 1);
    assert_eq!(b.stats().not_recorded, 1);
    assert_eq!(
        b.observe(
            AGENT,
            &Behaviour::Exec {
                path: &names[MAX_ENTRIES]
            },
            at(20)
        ),
        [flag::NEW_EXEC]
    );
    // Pairs are bounded per agent over every tool.
    let mut b = fresh();
    for i in 0..MAX_ENTRIES {
        let d = format!("h{i}:443");
        b.observe(
            AGENT,
            &dest(&d, Some(if i % 2 == 0 { "a" } else { "b" }), None),
            at(1),
        );
    }
    b.observe(AGENT, &dest("h0:443", Some("c"), None), at(1));
    assert_eq!(b.agents[AGENT].pairs(), MAX_ENTRIES);
    assert!(!b.agents[AGENT].tool_destinations.contains_key("c"));
    assert_eq!(b.stats().not_recorded, 1);
}

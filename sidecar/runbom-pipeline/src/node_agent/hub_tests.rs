//! The hub against a directory tree laid out as cgroups (directory inode numbers are the ids,
//! as on cgroup v2).

use std::{os::unix::fs::MetadataExt as _, path::Path, sync::Arc};

use runbom_event::{Detail, KernelEvent, ProcessInfo};

use super::{
    caller::Caller,
    hub::{Hub, HubSettings, Item, Items},
};

struct Tree {
    dir: runbom_testkit::TempDir,
}

impl Tree {
    fn new() -> Self {
        let dir = runbom_testkit::TempDir::new("hub");
        for c in ["pods/a/agent", "pods/a/sidecar", "pods/b/agent", "other"] {
            std::fs::create_dir_all(dir.path().join(c)).unwrap();
        }
        Self { dir }
    }

    fn id(&self, cgroup: &str) -> u64 {
        std::fs::metadata(self.dir.path().join(cgroup))
            .unwrap()
            .ino()
    }

    fn hub(&self, backlog: usize, queue: usize) -> Arc<Hub> {
        Hub::new(HubSettings {
            cgroup_mount: self.dir.path().to_owned(),
            backlog_events: backlog,
            subscriber_queue_events: queue,
        })
    }

    fn mount(&self) -> &Path {
        self.dir.path()
    }
}

fn caller(pod: &str) -> Caller {
    Caller {
        pid: 1,
        uid: 1000,
        cgroup: format!("/pods/{pod}/sidecar"),
        pod: format!("/pods/{pod}"),
    }
}

fn event(cgroup_id: u64, n: u32) -> KernelEvent {
    KernelEvent {
        pid: n,
        tid: n,
        cgroup_id,
        start_ns: 1,
        end_ns: 1,
        process: Arc::new(ProcessInfo::default()),
        detail: Detail::Exit { code: Some(0) },
    }
}

fn drain(items: &mut Items) -> Vec<Item> {
    std::iter::from_fn(|| items.try_recv()).collect()
}

fn seqs(items: &[Item]) -> Vec<u64> {
    items
        .iter()
        .flat_map(|i| match i {
            Item::Events(e) => e.iter().map(|(s, _)| *s).collect(),
            Item::Gap { .. } => Vec::new(),
        })
        .collect()
}

#[test]
fn only_the_subscribed_pods_events_are_taken_numbered_and_the_sidecar_left_out() {
    let t = Tree::new();
    let hub = t.hub(16, 8);
    assert_eq!(hub.divert(vec![event(t.id("pods/a/agent"), 1)]).len(), 1);
    let mut sub = hub.subscribe(&caller("a"), 0);
    assert_eq!(sub.next_sequence, 1);
    let batch = vec![
        event(t.id("pods/a/agent"), 1),
        event(t.id("pods/a"), 2),
        event(t.id("pods/a/sidecar"), 3),
        event(t.id("pods/b/agent"), 4),
        event(t.id("other"), 5),
    ];
    let rest: Vec<u32> = hub.divert(batch).iter().map(|e| e.pid).collect();
    assert_eq!(
        rest,
        [3, 4, 5],
        "its own container, other pods, the rest stay on the node"
    );
    let items = drain(&mut sub.items);
    assert_eq!(seqs(&items), [1, 2]);
    // A container started after the subscription is found (its id was never seen).
    std::fs::create_dir(t.mount().join("pods/a/late")).unwrap();
    assert!(hub.divert(vec![event(t.id("pods/a/late"), 6)]).is_empty());
    assert_eq!(seqs(&drain(&mut sub.items)), [3]);
}

#[test]
fn a_returning_subscriber_gets_the_backlog_and_the_rest_as_a_gap() {
    let t = Tree::new();
    let hub = t.hub(4, 8);
    let first = hub.subscribe(&caller("a"), 0);
    let a = t.id("pods/a/agent");
    hub.divert((1..=3).map(|n| event(a, n)).collect());
    // Handed to the connection up to 2 (the server records what it sent).
    hub.delivered("/pods/a", first.id, 2);
    hub.unsubscribe("/pods/a", first.id);
    drop(first);
    hub.divert((4..=10).map(|n| event(a, n)).collect());
    let mut again = hub.subscribe(&caller("a"), 0);
    let items = drain(&mut again.items);
    assert!(
        matches!(
            items[0],
            Item::Gap {
                first: 3,
                last: 6,
                slow: false
            }
        ),
        "{items:?}"
    );
    assert_eq!(seqs(&items), [7, 8, 9, 10], "the backlog's four");
    assert_eq!(
        hub.stats.missed.load(std::sync::atomic::Ordering::Relaxed),
        4
    );
    // An explicit resume point wins over what was handed out.
    let mut third = hub.subscribe(&caller("a"), 8);
    assert_eq!(seqs(&drain(&mut third.items)), [9, 10]);
}

#[test]
fn a_slow_subscriber_catches_up_from_the_backlog() {
    let t = Tree::new();
    let hub = t.hub(16, 2);
    let mut sub = hub.subscribe(&caller("a"), 0);
    let a = t.id("pods/a/agent");
    for n in 1..=5 {
        hub.divert(vec![event(a, n)]);
    }
    // Two events fit; from 3 on it is behind, and fed from the backlog as it drains.
    assert_eq!(seqs(&drain(&mut sub.items)), [1, 2]);
    assert!(sub.items.lagging());
    hub.catch_up("/pods/a", sub.id);
    assert_eq!(seqs(&drain(&mut sub.items)), [3, 4]);
    hub.catch_up("/pods/a", sub.id);
    hub.divert(vec![event(a, 6)]);
    hub.catch_up("/pods/a", sub.id);
    assert_eq!(seqs(&drain(&mut sub.items)), [5, 6]);
    assert!(!sub.items.lagging());
    hub.divert(vec![event(a, 7)]);
    assert_eq!(seqs(&drain(&mut sub.items)), [7], "directly again");
    assert_eq!(
        hub.stats.missed.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

#[test]
fn a_slow_subscriber_is_told_what_the_backlog_lost() {
    let t = Tree::new();
    let hub = t.hub(0, 2);
    let mut sub = hub.subscribe(&caller("a"), 0);
    let a = t.id("pods/a/agent");
    for n in 1..=5 {
        hub.divert(vec![event(a, n)]);
    }
    assert_eq!(seqs(&drain(&mut sub.items)), [1, 2]);
    hub.catch_up("/pods/a", sub.id);
    hub.divert(vec![event(a, 6)]);
    let items = drain(&mut sub.items);
    assert!(
        matches!(
            items[0],
            Item::Gap {
                first: 3,
                last: 5,
                slow: true
            }
        ),
        "{items:?}"
    );
    assert_eq!(seqs(&items), [6]);
}

#[test]
fn a_new_subscriber_replaces_the_old_and_a_gone_pod_is_forgotten() {
    let t = Tree::new();
    let hub = t.hub(4, 8);
    let mut old = hub.subscribe(&caller("b"), 0);
    let mut new = hub.subscribe(&caller("b"), 0);
    hub.divert(vec![event(t.id("pods/b/agent"), 1)]);
    assert!(old.items.try_recv().is_none(), "the old stream ends");
    assert_eq!(seqs(&drain(&mut new.items)), [1]);
    hub.unsubscribe("/pods/b", new.id);
    std::fs::remove_dir(t.mount().join("pods/b/agent")).unwrap();
    std::fs::remove_dir_all(t.mount().join("pods/b")).unwrap();
    let other = t.id("other");
    assert_eq!(hub.divert(vec![event(other, 2)]).len(), 1);
    let again = hub.subscribe(&caller("b"), 0);
    assert_eq!(again.next_sequence, 1, "a pod that went away starts over");
}

//! The node agent's side of the sidecars' streams: which kernel events belong to which
//! subscribed pod, their sequence numbers, a bounded backlog per pod for a sidecar that
//! restarts, and what each sidecar missed.
//!
//! Events of a pod that has subscribed are diverted from the node agent's own pipelines to the
//! pod's stream (numbered, kept in its backlog, handed to its subscriber when one is
//! connected); every other event stays on the node agent's path as before. Nothing waits on a
//! sidecar: one whose queue is full falls behind and is fed from the backlog as it drains it;
//! what the backlog lost meanwhile it is told (an [`Item::Gap`] before the next events).
//!
//! Which pod an event belongs to comes from its cgroup id: the ids of every cgroup under a
//! subscribed pod (but the subscriber's own container) are known; an id never seen makes the
//! hub look at the subscribed pods' cgroup directories again (a container started later), and
//! one found in none is remembered as outside (cgroup ids are never reused).

use std::{
    collections::{HashMap, HashSet, VecDeque},
    path::PathBuf,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed},
    },
};

use runbom_event::KernelEvent;
use tokio::sync::mpsc;
use tracing::warn;

use super::caller::{Caller, cgroup_ids};

/// What a subscriber's queue carries.
#[derive(Debug)]
pub enum Item {
    /// Events with their sequence numbers, in order.
    Events(Vec<(u64, KernelEvent)>),
    /// Sequence numbers `first..=last` the subscriber will never get.
    Gap { first: u64, last: u64, slow: bool },
}

/// The hub's sizes.
#[derive(Clone, Debug)]
pub struct HubSettings {
    /// Where cgroup v2 is mounted.
    pub cgroup_mount: PathBuf,
    /// Events kept per pod for a subscriber that comes back.
    pub backlog_events: usize,
    /// Events queued per subscriber before it counts as slow.
    pub subscriber_queue_events: usize,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct HubStats {
    pub diverted: AtomicU64,
    pub sent: AtomicU64,
    pub missed: AtomicU64,
    pub subscribers: AtomicU64,
    /// Connections to the socket closed at once: their place's share, or the whole, was full
    /// ([`super::slots`]).
    pub connections_refused: AtomicU64,
}

/// What a new subscriber is told and given.
#[derive(Debug)]
pub struct Subscription {
    pub id: u64,
    pub next_sequence: u64,
    pub items: Items,
}

/// A subscriber's queue, bounded in events (not in batches, whose sizes vary).
#[derive(Debug)]
pub struct Items {
    rx: mpsc::UnboundedReceiver<Item>,
    queued: Arc<AtomicUsize>,
    lagging: Arc<AtomicBool>,
}

impl Items {
    /// Whether the subscriber fell behind: its reader should call [`Hub::catch_up`] as it
    /// drains the queue.
    #[must_use]
    pub fn lagging(&self) -> bool {
        self.lagging.load(Relaxed)
    }

    /// The next item; `None` once the subscriber was replaced or the hub is gone.
    pub async fn recv(&mut self) -> Option<Item> {
        let item = self.rx.recv().await?;
        Some(self.taken(item))
    }

    /// The next item if one is queued.
    pub fn try_recv(&mut self) -> Option<Item> {
        let item = self.rx.try_recv().ok()?;
        Some(self.taken(item))
    }

    fn taken(&self, item: Item) -> Item {
        if let Item::Events(e) = &item {
            self.queued.fetch_sub(e.len(), Relaxed);
        }
        item
    }
}

#[derive(Debug)]
struct Subscriber {
    id: u64,
    tx: mpsc::UnboundedSender<Item>,
    queued: Arc<AtomicUsize>,
    /// The first sequence number not queued because the queue was full: from there on the
    /// subscriber is fed from the backlog ([`Hub::catch_up`]).
    behind: Option<u64>,
    lagging: Arc<AtomicBool>,
}

#[derive(Debug)]
struct PodStream {
    next_sequence: u64,
    /// The last sequence number handed to a subscriber's connection.
    delivered: u64,
    backlog: VecDeque<(u64, KernelEvent)>,
    subscriber: Option<Subscriber>,
    /// The subscriber's own container (left out of the stream).
    except: String,
}

#[derive(Debug, Default)]
struct State {
    pods: HashMap<String, PodStream>,
    /// Cgroup id → the pod it is in.
    by_cgroup: HashMap<u64, String>,
    /// Cgroup ids found under no subscribed pod.
    outside: HashSet<u64>,
    next_id: u64,
}

/// Most cgroup ids remembered as outside every pod before the memory starts over.
const OUTSIDE_MAX: usize = 65_536;

/// The hub (shared by the receiver's task and the server's connections).
#[derive(Debug)]
pub struct Hub {
    settings: HubSettings,
    state: Mutex<State>,
    pub stats: HubStats,
}

impl Hub {
    #[must_use]
    pub fn new(settings: HubSettings) -> Arc<Self> {
        Arc::new(Self {
            settings,
            state: Mutex::default(),
            stats: HubStats::default(),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the events of subscribed pods out of `events` (numbered, into their streams) and
    /// returns the rest, for the node agent's own pipelines.
    pub fn divert(&self, events: Vec<KernelEvent>) -> Vec<KernelEvent> {
        let mut st = self.state();
        if st.pods.is_empty() {
            return events;
        }
        let mut rest = Vec::with_capacity(events.len());
        let mut per_pod: HashMap<String, Vec<(u64, KernelEvent)>> = HashMap::new();
        for e in events {
            let pod = match st.by_cgroup.get(&e.cgroup_id) {
                Some(pod) => Some(pod.clone()),
                None if st.outside.contains(&e.cgroup_id) => None,
                None => {
                    self.rescan(&mut st);
                    let pod = st.by_cgroup.get(&e.cgroup_id).cloned();
                    if pod.is_none() {
                        if st.outside.len() >= OUTSIDE_MAX {
                            st.outside.clear();
                        }
                        st.outside.insert(e.cgroup_id);
                    }
                    pod
                }
            };
            let Some(pod) = pod else {
                rest.push(e);
                continue;
            };
            let Some(stream) = st.pods.get_mut(&pod) else {
                rest.push(e);
                continue;
            };
            let seq = stream.next_sequence;
            stream.next_sequence += 1;
            if stream.backlog.len() >= self.settings.backlog_events {
                stream.backlog.pop_front();
            }
            if self.settings.backlog_events > 0 {
                stream.backlog.push_back((seq, e.clone()));
            }
            per_pod.entry(pod).or_default().push((seq, e));
            self.stats.diverted.fetch_add(1, Relaxed);
        }
        for (pod, batch) in per_pod {
            if let Some(sub) = st.pods.get_mut(&pod).and_then(|s| s.subscriber.as_mut()) {
                self.offer(sub, batch);
            }
        }
        rest
    }

    /// Hands `batch` to `sub` without waiting. When its queue is full (an empty queue takes
    /// any batch), the subscriber falls behind: what follows is fed from the backlog as it
    /// drains its queue ([`Hub::catch_up`]).
    fn offer(&self, sub: &mut Subscriber, batch: Vec<(u64, KernelEvent)>) {
        if sub.behind.is_some() || sub.tx.is_closed() {
            return;
        }
        let n = batch.len();
        let queued = sub.queued.load(Relaxed);
        if queued > 0 && queued + n > self.settings.subscriber_queue_events {
            sub.behind = Some(batch[0].0);
            sub.lagging.store(true, Relaxed);
            return;
        }
        sub.queued.fetch_add(n, Relaxed);
        if sub.tx.send(Item::Events(batch)).is_ok() {
            self.stats.sent.fetch_add(n as u64, Relaxed);
        } else {
            sub.queued.fetch_sub(n, Relaxed);
        }
    }

    /// Refreshes which cgroup belongs to which subscribed pod (a pod whose directory is gone
    /// is forgotten, with its stream).
    fn rescan(&self, st: &mut State) {
        st.by_cgroup.clear();
        let mut gone = Vec::new();
        for (pod, stream) in &st.pods {
            match cgroup_ids(&self.settings.cgroup_mount, pod, &stream.except) {
                Ok(ids) => {
                    for id in ids {
                        st.by_cgroup.insert(id, pod.clone());
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => gone.push(pod.clone()),
                Err(e) => warn!(pod, "cannot list the pod's cgroups: {e}"),
            }
        }
        for pod in gone {
            if st.pods.get(&pod).is_some_and(|s| s.subscriber.is_none()) {
                st.pods.remove(&pod);
            }
        }
    }

    /// Subscribes `caller` to its pod's stream, replacing an earlier subscriber of the pod.
    /// Resumes after `resume_after` (0: after what the pod's last subscriber was handed); what
    /// the backlog no longer holds is queued first as a gap, then the backlog's events.
    pub fn subscribe(&self, caller: &Caller, resume_after: u64) -> Subscription {
        let mut st = self.state();
        st.next_id += 1;
        let id = st.next_id;
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let stream = st
            .pods
            .entry(caller.pod.clone())
            .or_insert_with(|| PodStream {
                next_sequence: 1,
                delivered: 0,
                backlog: VecDeque::new(),
                subscriber: None,
                except: caller.cgroup.clone(),
            });
        stream.except.clone_from(&caller.cgroup);
        let from = if resume_after > 0 {
            resume_after.min(stream.next_sequence - 1)
        } else {
            stream.delivered
        };
        let mut replay: Vec<(u64, KernelEvent)> = stream
            .backlog
            .iter()
            .filter(|(s, _)| *s > from)
            .cloned()
            .collect();
        let first_held = replay.first().map_or(stream.next_sequence, |(s, _)| *s);
        let lagging = Arc::new(AtomicBool::new(false));
        let mut sub = Subscriber {
            id,
            tx,
            queued: queued.clone(),
            behind: None,
            lagging: lagging.clone(),
        };
        if first_held > from + 1 {
            self.stats.missed.fetch_add(first_held - 1 - from, Relaxed);
            let _ = sub.tx.send(Item::Gap {
                first: from + 1,
                last: first_held - 1,
                slow: false,
            });
        }
        while !replay.is_empty() {
            let rest = replay.split_off(replay.len().min(1024));
            self.offer(&mut sub, std::mem::replace(&mut replay, rest));
        }
        let next_sequence = stream.next_sequence;
        stream.subscriber = Some(sub);
        self.stats.subscribers.store(
            st.pods.values().filter(|s| s.subscriber.is_some()).count() as u64,
            Relaxed,
        );
        // The new pod's cgroups (and every id seen so far may now be inside it).
        st.outside.clear();
        self.rescan(&mut st);
        Subscription {
            id,
            next_sequence,
            items: Items {
                rx,
                queued,
                lagging,
            },
        }
    }

    /// Feeds the subscriber `id` of `pod`, behind since its queue was full, from the backlog
    /// once at least half its queue is free: what the backlog still holds, up to the room
    /// there is, and what it no longer holds as a gap (counted as missed). Once caught up it
    /// takes new events directly again.
    pub fn catch_up(&self, pod: &str, id: u64) {
        let limit = self.settings.subscriber_queue_events;
        let mut st = self.state();
        let Some(stream) = st.pods.get_mut(pod) else {
            return;
        };
        let next = stream.next_sequence;
        let Some(sub) = stream.subscriber.as_mut().filter(|s| s.id == id) else {
            return;
        };
        let Some(from) = sub.behind else { return };
        let queued = sub.queued.load(Relaxed);
        if queued > limit / 2 {
            return;
        }
        let first_held = stream
            .backlog
            .iter()
            .map(|(s, _)| *s)
            .find(|s| *s >= from)
            .unwrap_or(next);
        if first_held > from {
            self.stats.missed.fetch_add(first_held - from, Relaxed);
            let _ = sub.tx.send(Item::Gap {
                first: from,
                last: first_held - 1,
                slow: true,
            });
        }
        let batch: Vec<(u64, KernelEvent)> = stream
            .backlog
            .iter()
            .filter(|(s, _)| *s >= first_held)
            .take((limit - queued).max(1))
            .cloned()
            .collect();
        let resume = batch.last().map_or(first_held, |(s, _)| s + 1);
        if !batch.is_empty() {
            let n = batch.len();
            sub.queued.fetch_add(n, Relaxed);
            if sub.tx.send(Item::Events(batch)).is_ok() {
                self.stats.sent.fetch_add(n as u64, Relaxed);
            } else {
                sub.queued.fetch_sub(n, Relaxed);
            }
        }
        if resume >= next {
            sub.behind = None;
            sub.lagging.store(false, Relaxed);
        } else {
            sub.behind = Some(resume);
        }
    }

    /// Records that the subscriber `id` of `pod` was handed events up to `sequence`.
    pub fn delivered(&self, pod: &str, id: u64, sequence: u64) {
        let mut st = self.state();
        if let Some(s) = st.pods.get_mut(pod)
            && s.subscriber.as_ref().is_some_and(|x| x.id == id)
        {
            s.delivered = s.delivered.max(sequence);
        }
    }

    /// The subscriber `id` of `pod` went away (a newer one may have replaced it already).
    pub fn unsubscribe(&self, pod: &str, id: u64) {
        let mut st = self.state();
        if let Some(s) = st.pods.get_mut(pod)
            && s.subscriber.as_ref().is_some_and(|x| x.id == id)
        {
            s.subscriber = None;
        }
        self.stats.subscribers.store(
            st.pods.values().filter(|s| s.subscriber.is_some()).count() as u64,
            Relaxed,
        );
    }
}

//! The connections the node agent's socket takes at once, shared out by where the caller runs.
//!
//! The socket is open to every local user (who gets what is decided per caller), so a bound on
//! all connections alone would let one caller hold them all and keep every pod's sidecar out:
//! its evidence lost. So each pod may hold at most [`Slots::per_pod`] connections (a sidecar
//! holds one; a reconnecting one briefly two), and every caller outside a pod (on the host,
//! or whose cgroup could not be read; such a caller is refused at `Subscribe` and connects only
//! to read why) shares [`Slots::outside_pods`]. Only the kernel's word decides the place: the
//! caller's cgroup from its peer credentials ([`super::peer`]), which a process cannot choose
//! under a pod root.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};

/// Where a caller runs, as far as its slots go: its pod cgroup, or `None` outside any pod.
pub type Place = Option<String>;

/// The connections taken, by place.
pub struct Slots {
    /// Most connections at once, in all.
    pub total: usize,
    /// Most connections of one pod at once.
    pub per_pod: usize,
    /// Most connections at once of every caller outside a pod, together.
    pub outside_pods: usize,
    held: Mutex<Held>,
}

#[derive(Default)]
struct Held {
    open: usize,
    by_place: HashMap<Place, usize>,
}

/// Why a connection got no slot.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum NoSlot {
    #[error("{0} connections are open")]
    Total(usize),
    #[error("pod {pod} holds {held} connections, its most")]
    Pod { pod: String, held: usize },
    #[error("callers outside pods hold {0} connections, their most")]
    OutsidePods(usize),
}

/// One connection's slot, given back when it is dropped (the connection closed).
pub struct Slot {
    slots: Arc<Slots>,
    place: Place,
}

impl Slots {
    #[must_use]
    pub fn new(total: usize, per_pod: usize, outside_pods: usize) -> Arc<Self> {
        Arc::new(Self {
            total,
            per_pod,
            outside_pods,
            held: Mutex::default(),
        })
    }

    /// A slot for a connection from `place`, when that place and the whole have room.
    pub fn take(self: &Arc<Self>, place: Place) -> Result<Slot, NoSlot> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if held.open >= self.total {
            return Err(NoSlot::Total(held.open));
        }
        let here = held.by_place.get(&place).copied().unwrap_or(0);
        match &place {
            Some(pod) if here >= self.per_pod => {
                return Err(NoSlot::Pod {
                    pod: pod.clone(),
                    held: here,
                });
            }
            None if here >= self.outside_pods => return Err(NoSlot::OutsidePods(here)),
            _ => {}
        }
        held.open += 1;
        *held.by_place.entry(place.clone()).or_default() += 1;
        Ok(Slot {
            slots: self.clone(),
            place,
        })
    }

    /// Connections open now.
    #[cfg(test)]
    fn open(&self) -> usize {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .open
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self
            .slots
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        held.open -= 1;
        if let Some(n) = held.by_place.get_mut(&self.place) {
            *n -= 1;
            if *n == 0 {
                held.by_place.remove(&self.place);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_or_the_host_fills_only_its_own_share() {
        let slots = Slots::new(5, 2, 1);
        let pod = |p: &str| Some(p.to_owned());
        let a: Vec<Slot> = (0..2).map(|_| slots.take(pod("/k/a")).unwrap()).collect();
        assert_eq!(
            slots.take(pod("/k/a")).err(),
            Some(NoSlot::Pod {
                pod: "/k/a".into(),
                held: 2
            })
        );
        let host = slots.take(None).unwrap();
        assert_eq!(slots.take(None).err(), Some(NoSlot::OutsidePods(1)));
        // Another pod still gets in, up to the whole.
        let b = slots.take(pod("/k/b")).unwrap();
        let c = slots.take(pod("/k/c")).unwrap();
        assert_eq!(slots.take(pod("/k/d")).err(), Some(NoSlot::Total(5)));
        drop((a, host, b, c));
        assert_eq!(slots.open(), 0);
        assert!(slots.take(None).is_ok());
    }
}

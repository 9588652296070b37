//! This node's pods, by uid and by container id.

use std::{collections::HashMap, sync::Arc};

use crate::meta::{ContainerMeta, PodMeta};

/// This node's pods as the last list and watch events left them.
#[derive(Debug, Default)]
pub struct PodIndex {
    by_uid: HashMap<String, Arc<PodMeta>>,
    /// Container id → pod uid.
    by_container: HashMap<String, String>,
    /// Whether the first list has completed.
    synced: bool,
}

impl PodIndex {
    /// Adds or replaces a pod.
    pub fn apply(&mut self, pod: PodMeta) {
        self.remove(&pod.uid.clone());
        for id in pod.containers.iter().filter_map(|c| c.id.clone()) {
            self.by_container.insert(id, pod.uid.clone());
        }
        self.by_uid.insert(pod.uid.clone(), Arc::new(pod));
    }

    /// Removes the pod with `uid`.
    pub fn remove(&mut self, uid: &str) {
        if let Some(old) = self.by_uid.remove(uid) {
            for id in old.containers.iter().filter_map(|c| c.id.as_deref()) {
                if self.by_container.get(id).is_some_and(|u| u == uid) {
                    self.by_container.remove(id);
                }
            }
        }
    }

    /// Replaces every pod (a completed list).
    pub fn replace(&mut self, pods: Vec<PodMeta>) {
        self.by_uid.clear();
        self.by_container.clear();
        for pod in pods {
            self.apply(pod);
        }
        self.synced = true;
    }

    #[must_use]
    pub fn synced(&self) -> bool {
        self.synced
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.by_uid.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.by_uid.is_empty()
    }

    #[must_use]
    pub fn pod(&self, uid: &str) -> Option<&Arc<PodMeta>> {
        self.by_uid.get(uid)
    }

    /// The pod and container of a process, from what its cgroup names: the container id
    /// first; then the pod uid (its only container, when it has one).
    #[must_use]
    pub fn find(
        &self,
        container_id: Option<&str>,
        pod_uid: Option<&str>,
    ) -> Option<(Arc<PodMeta>, Option<ContainerMeta>)> {
        if let Some(id) = container_id
            && let Some(pod) = self.by_container.get(id).and_then(|u| self.by_uid.get(u))
        {
            return Some((pod.clone(), pod.container_by_id(id).cloned()));
        }
        let pod = self.by_uid.get(pod_uid?)?;
        let container = match pod.containers.as_slice() {
            [only] => Some(only.clone()),
            _ => None,
        };
        Some((pod.clone(), container))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::ContainerMeta;

    fn pod(uid: &str, containers: &[(&str, Option<&str>)]) -> PodMeta {
        PodMeta {
            uid: uid.into(),
            name: "agent-0".into(),
            namespace: "ai".into(),
            node: Some("node-1".into()),
            service_account: None,
            labels: std::collections::BTreeMap::new(),
            owner: None,
            containers: containers
                .iter()
                .map(|(name, id)| ContainerMeta {
                    name: (*name).into(),
                    image_name: None,
                    image_tag: None,
                    id: id.map(str::to_owned),
                })
                .collect(),
        }
    }

    #[test]
    fn finds_by_container_then_by_pod() {
        let mut index = PodIndex::default();
        index.apply(pod("u1", &[("agent", Some("c1")), ("sidecar", Some("c2"))]));
        let (p, c) = index.find(Some("c2"), None).unwrap();
        assert_eq!(
            (p.uid.as_str(), c.unwrap().name.as_str()),
            ("u1", "sidecar")
        );
        // A container the kubelet has not reported yet: the pod, no container (two of them).
        let (p, c) = index.find(Some("c9"), Some("u1")).unwrap();
        assert_eq!((p.uid.as_str(), c), ("u1", None));
        // A pod of one container: that one.
        index.apply(pod("u2", &[("only", None)]));
        let (_, c) = index.find(Some("c9"), Some("u2")).unwrap();
        assert_eq!(c.unwrap().name, "only");
        assert!(index.find(Some("c9"), Some("u3")).is_none());
        assert!(index.find(None, None).is_none());
    }

    #[test]
    fn a_pod_recreated_with_the_same_name_is_a_new_uid() {
        let mut index = PodIndex::default();
        index.apply(pod("old", &[("agent", Some("c1"))]));
        index.remove("old");
        index.apply(pod("new", &[("agent", Some("c2"))]));
        assert!(
            index.find(Some("c1"), None).is_none(),
            "the old container is gone"
        );
        assert_eq!(index.find(Some("c2"), None).unwrap().0.uid, "new");
        // A re-list replaces everything.
        index.replace(vec![pod("other", &[("x", Some("c3"))])]);
        assert!(index.synced());
        assert_eq!(index.len(), 1);
        assert!(index.find(Some("c2"), None).is_none());
    }
}

use super::*;

const ID: &str = "4a2f0e8a2c1b7a5f4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b";
const UID: &str = "5e2f6c8a-3b1d-4f7e-9a0c-1d2e3f4a5b6c";
const UID_: &str = "5e2f6c8a_3b1d_4f7e_9a0c_1d2e3f4a5b6c";

/// What `/proc/PID/cgroup` holds, and the container id, runtime and pod uid read from it.
type Case = (String, Option<String>, Option<Runtime>, Option<String>);
type Parsed = (Option<String>, Option<Runtime>, Option<String>);

fn parsed(text: &str) -> Option<Parsed> {
    CgroupRef::from_proc_cgroup(text).map(|r| (r.container_id, r.runtime, r.pod_uid))
}

fn check(cases: Vec<Case>) {
    for (text, id, runtime, uid) in cases {
        assert_eq!(
            parsed(&text),
            Some((id, runtime, uid)),
            "cgroup file {text:?}"
        );
    }
}

#[test]
fn container_and_pod_from_every_runtime_driver_and_version() {
    use Runtime::{Containerd, CriO};
    let id = Some(ID.to_owned());
    let uid = Some(UID.to_owned());
    // (what /proc/PID/cgroup holds, container id, runtime, pod uid)
    let cases: Vec<Case> = vec![
        // containerd, systemd driver, cgroup v2 (kubeadm's default)
        (
            format!(
                "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{ID}.scope\n"
            ),
            id.clone(),
            Some(Containerd),
            uid.clone(),
        ),
        // containerd, systemd driver, guaranteed QoS (no QoS slice)
        (
            format!("0::/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{ID}.scope\n"),
            id.clone(),
            Some(Containerd),
            uid.clone(),
        ),
        // containerd, cgroupfs driver, cgroup v1 (one line per hierarchy)
        (
            format!(
                "12:pids:/kubepods/besteffort/pod{UID}/{ID}\n11:memory:/kubepods/besteffort/pod{UID}/{ID}\n1:name=systemd:/kubepods/besteffort/pod{UID}/{ID}\n0::/\n"
            ),
            id.clone(),
            None,
            uid.clone(),
        ),
        // containerd, cgroupfs driver, cgroup v2
        (
            format!("0::/kubepods/burstable/pod{UID}/{ID}\n"),
            id.clone(),
            None,
            uid.clone(),
        ),
        // CRI-O, systemd driver, cgroup v2
        (
            format!(
                "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/crio-{ID}.scope\n"
            ),
            id.clone(),
            Some(CriO),
            uid.clone(),
        ),
        // CRI-O with crun: the container's processes one level below the scope
        (
            format!(
                "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/crio-{ID}.scope/container\n"
            ),
            id.clone(),
            Some(CriO),
            uid.clone(),
        ),
        // CRI-O, systemd driver, cgroup v1
        (
            format!(
                "10:cpu,cpuacct:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/crio-{ID}.scope\n"
            ),
            id.clone(),
            Some(CriO),
            uid.clone(),
        ),
        // CRI-O, cgroupfs driver
        (
            format!("0::/kubepods/pod{UID}/crio-{ID}\n"),
            id.clone(),
            Some(CriO),
            uid.clone(),
        ),
        // CRI-O's conmon: the pod, not the container
        (
            format!(
                "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/crio-conmon-{ID}.scope\n"
            ),
            None,
            None,
            uid.clone(),
        ),
        // kind / nested kubelet (systemd): kubelet.slice above the pods
        (
            format!(
                "0::/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{UID_}.slice/cri-containerd-{ID}.scope\n"
            ),
            id.clone(),
            Some(Containerd),
            uid.clone(),
        ),
    ];
    check(cases);
}

#[test]
fn containers_outside_kubernetes() {
    use Runtime::{Docker, Podman};
    let id = Some(ID.to_owned());
    let uid = Some(UID.to_owned());
    let cases: Vec<Case> = vec![
        // Docker, systemd driver, cgroup v2 (no Kubernetes)
        (
            format!("0::/system.slice/docker-{ID}.scope\n"),
            id.clone(),
            Some(Docker),
            None,
        ),
        // Docker, cgroupfs driver, cgroup v1
        (
            format!("9:devices:/docker/{ID}\n1:name=systemd:/docker/{ID}\n"),
            id.clone(),
            None,
            None,
        ),
        // Kubernetes on Docker (cri-dockerd), systemd driver
        (
            format!(
                "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/docker-{ID}.scope\n"
            ),
            id.clone(),
            Some(Docker),
            uid.clone(),
        ),
        // Podman, and its conmon
        (
            format!("0::/machine.slice/libpod-{ID}.scope/container\n"),
            id.clone(),
            Some(Podman),
            None,
        ),
    ];
    check(cases);
}

#[test]
fn not_a_container() {
    for text in [
        "0::/user.slice/user-1000.slice/session-1.scope\n",
        "0::/system.slice/containerd.service\n",
        "0::/\n",
        "0::/init.scope\n",
        // Not 64 hex digits, not a UUID.
        "0::/system.slice/docker-abc.scope\n",
        "0::/kubepods/burstable/podnot-a-uid/xyz\n",
        // A slice that only looks like a pod's.
        &format!("0::/system.slice/app-pod{UID_}.slice\n"),
        // Upper-case hex is no runtime's id.
        &format!("0::/docker/{}\n", ID.to_uppercase()),
        "",
    ] {
        assert_eq!(parsed(text), None, "cgroup file {text:?}");
    }
    assert_eq!(
        parsed(&format!("0::/libpod_parent/libpod-conmon-{ID}.scope\n")),
        None,
        "podman's conmon is neither container nor pod"
    );
}

#[test]
fn runtime_schemes_are_the_pod_status_prefixes() {
    assert_eq!(Runtime::Containerd.scheme(), "containerd");
    assert_eq!(Runtime::CriO.scheme(), "cri-o");
    assert_eq!(Runtime::Docker.scheme(), "docker");
}

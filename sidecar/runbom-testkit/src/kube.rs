//! Kubernetes without a cluster: `tests/kube_apiserver.py`, a stand-in API server speaking the
//! real protocol over TLS with a bearer token ([`KubeApi`]), the kubeconfig that points runbom
//! at it, real Pod and ReplicaSet objects to feed it (`tests/fixtures/k8s/`), and cgroups named
//! as container runtimes name them, with real processes placed in them ([`PodCgroup`]).

use std::{
    fs,
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{ChildStdin, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use serde_json::{Value, json};

use crate::{Proc, TempDir, pki::Pki, python_bin, test_script, workspace_root};

/// The stand-in API server; killed when dropped.
pub struct KubeApi {
    _proc: Proc,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    pub port: u16,
    requests: PathBuf,
}

impl KubeApi {
    /// Starts it for the pods of `node`, with `pki`'s server certificate, accepting `token`.
    #[must_use]
    pub fn start(dir: &TempDir, pki: &Pki, node: &str, token: &str) -> Self {
        let requests = dir.join("apiserver-requests.log");
        let mut cmd = Command::new(python_bin());
        cmd.arg(test_script("kube_apiserver.py"))
            .arg("--cert")
            .arg(pki.path("server.pem"))
            .arg("--key")
            .arg(pki.path("server-key.pem"))
            .args(["--token", token, "--node", node])
            .arg("--requests")
            .arg(&requests)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(dir.join("apiserver.stderr")).expect("apiserver stderr"));
        let mut proc = Proc::spawn("the API server stand-in", &mut cmd);
        let stdin = proc.child.stdin.take().expect("piped stdin");
        let stdout = proc.child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut api = Self {
            _proc: proc,
            stdin,
            lines,
            port: 0,
            requests,
        };
        let first = api.wait_for("listening ");
        api.port = first["listening ".len()..].parse().expect("a port");
        api
    }

    /// Waits for the next stdout line starting with `prefix`; the line.
    pub fn wait_for(&mut self, prefix: &str) -> String {
        let mut skipped = Vec::new();
        loop {
            match self.lines.recv_timeout(Duration::from_secs(30)) {
                Ok(line) if line.starts_with(prefix) => return line,
                Ok(line) => skipped.push(line),
                Err(e) => panic!(
                    "the API server stand-in never said `{prefix}…` ({e}); it said {skipped:?}"
                ),
            }
        }
    }

    /// Waits until an open watch has been sent the event of resourceVersion `rv`.
    pub fn wait_delivered(&mut self, rv: u64) {
        loop {
            let line = self.wait_for("delivered ");
            if line["delivered ".len()..]
                .parse::<u64>()
                .is_ok_and(|d| d >= rv)
            {
                return;
            }
        }
    }

    fn command(&mut self, cmd: &Value) -> u64 {
        writeln!(self.stdin, "{cmd}").expect("writing to the stand-in");
        let done = self.wait_for("done ");
        done["done ".len()..].parse().expect("a resourceVersion")
    }

    /// Adds or modifies a pod; its resourceVersion.
    pub fn apply(&mut self, pod: &Value) -> u64 {
        self.command(&json!({"op": "apply", "object": pod}))
    }

    /// Deletes a pod; the resourceVersion of its deletion.
    pub fn delete(&mut self, namespace: &str, name: &str) -> u64 {
        self.command(&json!({"op": "delete", "namespace": namespace, "name": name}))
    }

    /// Stores a ReplicaSet or Job (got, not watched).
    pub fn put(&mut self, object: &Value) {
        self.command(&json!({"op": "put", "object": object}));
    }

    /// Compacts the history: open watches get 410 Gone and clients must list again.
    pub fn compact(&mut self) -> u64 {
        self.command(&json!({"op": "compact"}))
    }

    /// Every request's `GET target`, in order.
    #[must_use]
    pub fn requests(&self) -> Vec<String> {
        fs::read_to_string(&self.requests)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Writes a kubeconfig for it (CA from `pki`, bearer `token`) to `dir/kubeconfig`.
    #[must_use]
    pub fn kubeconfig(&self, dir: &TempDir, pki: &Pki, token: &str) -> PathBuf {
        dir.write(
            "kubeconfig",
            &format!(
                "apiVersion: v1
kind: Config
clusters:
- name: standin
  cluster:
    server: https://127.0.0.1:{port}
    certificate-authority: {ca}
users:
- name: runbom
  user:
    token: {token}
contexts:
- name: standin
  context: {{cluster: standin, user: runbom}}
current-context: standin
",
                port = self.port,
                ca = pki.path("ca.pem").display(),
            ),
        )
    }
}

/// A fixture object from `tests/fixtures/k8s/<name>`.
#[must_use]
pub fn fixture(name: &str) -> Value {
    let path = workspace_root().join("tests/fixtures/k8s").join(name);
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The container runtime whose cgroup naming a [`PodCgroup`] copies (systemd driver).
#[derive(Clone, Copy, Debug)]
pub enum Runtime {
    /// `…/kubepods-besteffort-pod<uid>.slice/cri-containerd-<id>.scope`
    Containerd,
    /// `…/kubepods-burstable-pod<uid>.slice/crio-<id>.scope`
    CriO,
}

/// A container's cgroup on this machine's cgroup v2 hierarchy, named as `runtime` names it
/// (under a per-test parent); removed, with its parents, when dropped.
pub struct PodCgroup {
    pub dir: PathBuf,
    root: PathBuf,
}

/// Where this machine mounts cgroup v2 (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on a
/// hybrid v1 + v2 host).
#[must_use]
pub fn cgroup2_root() -> PathBuf {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
        })
        .expect("this test needs a cgroup v2 hierarchy")
}

impl PodCgroup {
    /// Creates it for pod `uid` and container `id`.
    #[must_use]
    pub fn create(label: &str, runtime: Runtime, uid: &str, id: &str) -> Self {
        let root = cgroup2_root().join(format!("runbom-test-{label}-{}", std::process::id()));
        let uid_ = uid.replace('-', "_");
        let rel = match runtime {
            Runtime::Containerd => format!(
                "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid_}.slice/cri-containerd-{id}.scope"
            ),
            Runtime::CriO => format!(
                "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/crio-{id}.scope"
            ),
        };
        let dir = root.join(rel);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        Self { dir, root }
    }

    /// `program` with `args`, started inside this cgroup: the child moves itself in between
    /// fork and exec, as a container runtime does, so everything the program does (its exec
    /// first) happens inside the container.
    #[must_use]
    pub fn command(&self, program: &Path, args: &[String]) -> Command {
        use std::os::unix::{ffi::OsStrExt as _, process::CommandExt as _};
        let procs = std::ffi::CString::new(self.dir.join("cgroup.procs").as_os_str().as_bytes())
            .expect("a path without NUL");
        let mut cmd = Command::new(program);
        cmd.args(args);
        // SAFETY: between fork and exec only async-signal-safe calls (open, write, close) on
        // memory allocated before the fork; "0" moves the writing process itself.
        unsafe {
            cmd.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let wrote = libc::write(fd, b"0".as_ptr().cast(), 1);
                libc::close(fd);
                if wrote == 1 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        cmd
    }
}

impl Drop for PodCgroup {
    fn drop(&mut self) {
        // Leaf first; a cgroup with processes (still exiting) refuses: retry a little.
        let mut dir = self.dir.clone();
        while dir.starts_with(&self.root) {
            for _ in 0..50 {
                if fs::remove_dir(&dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if !dir.pop() {
                break;
            }
        }
    }
}

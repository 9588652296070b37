//! `process.exec` against the real kernel: the event is the exec the kernel committed, with the
//! filename and argv of the new image (what `/proc/PID/cmdline` shows), never what the caller's
//! memory held before the kernel copied it.
//!
//! One Python driver forks a child per case and reports each child's pid and output:
//! - a long argv (cut by the budget: `runbom.exec.argv_truncated`) and one of many short
//!   arguments (all kept);
//! - argv rewritten by another thread of the caller while `execve` runs: the event shows what
//!   the program received (what it printed);
//! - a script run through its `#!` line (the interpreter's command line), `fexecve`
//!   (`execveat(fd, "", AT_EMPTY_PATH)`: the filename is `/dev/fd/N`), an exec from a thread
//!   other than the main one (the process id, as the kernel reports it);
//! - execs that fail (no file, no execute permission): nothing is emitted.
//!
//! Needs root and the project's Python venv (`bash scripts/setup.sh`).

use std::{collections::HashMap, process::Command, sync::Arc, time::Duration};

use runbom_event::{Detail, KernelEvent, ProcessInfo};
use runbom_kernel::ProbeSettings;
use runbom_testkit::{TempDir, python_bin, run_bounded};
use serde_json::Value;

/// How many times the argv of an exec is rewritten under it.
const RACES: usize = 100;

const DRIVER: &str = r##"
import ctypes, json, os, sys, threading

work = sys.argv[1]
races = int(sys.argv[2])

def run(child):
    """Forks; the child runs `child` (which execs or exits); returns its pid and output."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.dup2(w, 1)
        try:
            child()
        finally:
            os._exit(127)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    _, status = os.waitpid(pid, 0)
    return {"pid": pid, "stdout": data.decode(), "status": os.waitstatus_to_exitcode(status)}

out = {}
long_argv = ["/bin/echo"] + [f"arg{i:04d}-" + "x" * 40 for i in range(60)]
out["long"] = run(lambda: os.execv("/bin/echo", long_argv)) | {"argv": long_argv}
many_argv = ["/bin/echo"] + [f"a{i}" for i in range(40)]
out["many"] = run(lambda: os.execv("/bin/echo", many_argv)) | {"argv": many_argv}

script = os.path.join(work, "x.sh")
with open(script, "w") as f:
    f.write("#!/bin/sh\necho script \"$@\"\n")
os.chmod(script, 0o755)
def run_script():
    os.chdir(work)
    os.execv("./x.sh", ["./x.sh", "a"])
out["script"] = run(run_script)

def run_fd():
    fd = os.open("/bin/echo", os.O_RDONLY)
    os.execve(fd, ["echo", f"from-fd-{fd}"], os.environ)
out["fexecve"] = run(run_fd)

def run_thread():
    t = threading.Thread(target=lambda: os.execv("/bin/echo", ["/bin/echo", "from-thread"]))
    t.start()
    t.join()
out["thread"] = run(run_thread)

not_exec = os.path.join(work, "not-executable")
with open(not_exec, "w") as f:
    f.write("#!/bin/sh\n")
def run_failing():
    for path in ["/nonexistent-runbom-exec-test/x", not_exec]:
        try:
            os.execv(path, [path, "never"])
        except OSError as e:
            print(f"{path}: {e.strerror}", flush=True)
    os._exit(0)
out["failed"] = run(run_failing)

def run_raced():
    libc = ctypes.CDLL(None, use_errno=True)
    a, b = b"A" * 200, b"B" * 200
    buf = ctypes.create_string_buffer(a, 256)
    argv = (ctypes.c_char_p * 3)(b"/bin/echo", ctypes.cast(buf, ctypes.c_char_p), None)
    envp = (ctypes.c_char_p * 1)(None)
    def flip():
        while True:
            ctypes.memmove(buf, b, len(b))
            ctypes.memmove(buf, a, len(a))
    threading.Thread(target=flip, daemon=True).start()
    libc.execve(b"/bin/echo", argv, envp)
out["raced"] = [run(run_raced) for _ in range(races)]
print(json.dumps(out))
"##;

#[test]
fn exec_events_show_the_committed_image() {
    let dir = TempDir::new("exec-events");
    // Opens are not what this test is about: keep the ring to process events.
    let settings = ProbeSettings {
        file_include: vec!["/nonexistent-runbom-exec-test/".into()],
        ..ProbeSettings::default()
    };
    let work = dir.path().to_path_buf();
    let (events, report) = runbom_testkit::kernel::capture(&settings, false, move || {
        let mut cmd = Command::new(python_bin());
        cmd.arg("-c").arg(DRIVER).arg(&work).arg(RACES.to_string());
        let out = run_bounded(&mut cmd, Duration::from_mins(2));
        assert!(
            out.status.success(),
            "driver failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        serde_json::from_str::<Value>(stdout.trim()).expect("the driver's JSON line")
    });
    let execs = Execs::new(&events);

    let long = &report["long"];
    let full = strings(&long["argv"]).join(" ");
    let (process, truncated) = execs.one(long, "long argv");
    assert!(
        truncated,
        "a {}-byte argv was not cut: {process:?}",
        full.len()
    );
    assert!(
        full.starts_with(&process.command_line) && process.command_line.len() > 900,
        "the cut command line is not the start of the real one ({} bytes): {:?}",
        process.command_line.len(),
        process.command_line
    );

    let many = &report["many"];
    let (process, truncated) = execs.one(many, "41 short arguments");
    assert!(!truncated, "{process:?}");
    assert_eq!(process.command_line, strings(&many["argv"]).join(" "));

    let (process, truncated) = execs.one(&report["script"], "script");
    assert_eq!(stdout(&report["script"]), "script a\n");
    assert!(!truncated);
    assert_eq!(process.exe, "./x.sh", "the exec'd file is the script");
    assert_eq!(
        process.command_line, "/bin/sh ./x.sh a",
        "the command line is the interpreter's, as ps shows it"
    );

    let printed = stdout(&report["fexecve"]);
    let fd = printed
        .trim_end()
        .strip_prefix("from-fd-")
        .unwrap_or_else(|| panic!("fexecve child printed {printed:?}"));
    let (process, _) = execs.one(&report["fexecve"], "fexecve");
    assert_eq!(process.exe, format!("/dev/fd/{fd}"));
    assert_eq!(process.command_line, format!("echo from-fd-{fd}"));

    let (process, _) = execs.one(&report["thread"], "exec from a thread");
    assert_eq!(stdout(&report["thread"]), "from-thread\n");
    assert_eq!(process.command_line, "/bin/echo from-thread");

    let failed = &report["failed"];
    assert_eq!(failed["status"], 0, "{failed}");
    assert_eq!(
        stdout(failed).lines().count(),
        2,
        "both execs should have failed: {failed}"
    );
    let failed_pid = pid(failed);
    assert!(
        execs.of(failed_pid).is_empty(),
        "a failed exec was reported: {:?}",
        execs.of(failed_pid)
    );

    let raced = report["raced"].as_array().expect("raced runs");
    assert_eq!(raced.len(), RACES);
    let mut mismatches = Vec::new();
    for run in raced {
        let (process, _) = execs.one(run, "exec with argv rewritten under it");
        let ran = format!("/bin/echo {}", stdout(run).trim_end_matches('\n'));
        if process.command_line != ran {
            mismatches.push((process.command_line.clone(), ran));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {RACES} execs reported a command line that did not run, e.g. {:?}",
        mismatches.len(),
        mismatches.first()
    );
}

/// The `process.exec` events seen, by process id.
struct Execs(HashMap<u32, Vec<(Arc<ProcessInfo>, bool)>>);

impl Execs {
    fn new(events: &[KernelEvent]) -> Self {
        let mut by_pid: HashMap<u32, Vec<_>> = HashMap::new();
        for e in events {
            if let Detail::Exec { argv_truncated, .. } = &e.detail {
                by_pid
                    .entry(e.pid)
                    .or_default()
                    .push((e.process.clone(), *argv_truncated));
            }
        }
        Self(by_pid)
    }

    fn of(&self, pid: u32) -> &[(Arc<ProcessInfo>, bool)] {
        self.0.get(&pid).map_or(&[], Vec::as_slice)
    }

    /// The one exec of the child `run` reports (its process, and whether argv was cut).
    fn one(&self, run: &Value, what: &str) -> (Arc<ProcessInfo>, bool) {
        assert_eq!(run["status"], 0, "{what}: {run}");
        match self.of(pid(run)) {
            [one] => one.clone(),
            other => panic!("{what}: expected one process.exec of {run}, got {other:?}"),
        }
    }
}

/// A container runtime's way: fork, move the child into the container's cgroup, exec. The
/// program (gone long before its events are read) is in the container, not in its parent's
/// (none): its container is read from the cgroup its exec ran in.
#[test]
fn a_program_started_in_a_container_is_in_it() {
    use runbom_testkit::kube::{PodCgroup, Runtime};
    let id = format!("{:064x}", u128::from(std::process::id()) << 64 | 0xc0de);
    let cgroup = PodCgroup::create(
        "exec",
        Runtime::Containerd,
        "0000aaaa-0000-0000-0000-000000000001",
        &id,
    );
    let settings = ProbeSettings {
        file_include: vec!["/nonexistent-runbom-exec-test/".into()],
        ..ProbeSettings::default()
    };
    let mut cmd = cgroup.command(std::path::Path::new("/bin/true"), &[]);
    let (events, pid) = runbom_testkit::kernel::capture(&settings, false, move || {
        let mut child = cmd.spawn().expect("start /bin/true");
        let pid = child.id();
        assert!(child.wait().expect("wait").success());
        pid
    });
    let execs: Vec<_> = events
        .iter()
        .filter(|e| e.pid == pid && matches!(e.detail, Detail::Exec { .. }))
        .collect();
    assert_eq!(execs.len(), 1, "{execs:#?}");
    assert_eq!(execs[0].process.container_id.as_deref(), Some(id.as_str()));
}

fn pid(run: &Value) -> u32 {
    u32::try_from(run["pid"].as_u64().expect("pid")).expect("pid fits u32")
}

fn stdout(run: &Value) -> &str {
    run["stdout"].as_str().expect("stdout")
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|s| s.as_str().expect("string"))
        .collect()
}

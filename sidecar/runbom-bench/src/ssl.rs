//! Benchmark `ssl`: what runbom adds to each `SSL_write` of Node (whose OpenSSL is inside the
//! `node` executable), next to reference uprobes measured in the same run.
//!
//! The workload (`ssl_writes.mjs`) is a Node client writing 64 non-HTTP bytes per iteration
//! over TLS to a Node server in another process, each write awaited: one `SSL_write` (and one
//! `write(2)` of the ciphertext) per iteration. Its CPU time per write is measured, in each
//! round, with: nothing attached (baseline); a bare uprobe on `SSL_write` (the shape of
//! runbom's hook before its return probe); a bare uprobe and a bare return probe (any pairing
//! hook's floor); runbom with only its TLS hooks (`http.plaintext: false`); runbom as shipped
//! (TLS hooks and the write-family hooks the ciphertext's `write` passes too). Results are
//! medians of the per-round differences with the same round's baseline.

use std::{
    fmt::Write as _,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, Result, anyhow, bail};
use aya::{
    Ebpf, EbpfLoader,
    programs::{UProbe, uprobe::UProbeScope},
};
use runbom_testkit::{Proc, pki::Pki};

use crate::{
    progstats,
    runbom::{Runbom, Settings},
    stats::Samples,
};

const NODE: &str = "/usr/bin/node";
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/ssl_writes.mjs");

pub struct Options {
    pub runbom: PathBuf,
    pub dir: PathBuf,
    pub writes: u64,
    pub rounds: usize,
}

const BASELINE: &str = "baseline";
const REF_ENTRY: &str = "ref uprobe";
const REF_PAIR: &str = "ref uprobe + uretprobe";
const RUNBOM_TLS: &str = "runbom (TLS hooks only)";
const RUNBOM: &str = "runbom";
const CONDITIONS: [&str; 5] = [BASELINE, REF_ENTRY, REF_PAIR, RUNBOM_TLS, RUNBOM];

/// One client run: CPU and wall nanoseconds per write.
fn client(port: u16, ca: &Path, writes: u64) -> Result<(f64, f64)> {
    let out = Command::new(NODE)
        .arg(SCRIPT)
        .args(["client", &port.to_string()])
        .arg(ca)
        .arg(writes.to_string())
        .stdin(Stdio::null())
        .output()
        .context("running the node client")?;
    if !out.status.success() {
        bail!(
            "node client failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("client output {:?}", String::from_utf8_lossy(&out.stdout)))?;
    let per = |k: &str| v[k].as_f64().unwrap_or(0.0) / writes as f64;
    Ok((per("cpu_ns"), per("wall_ns")))
}

/// The reference uprobes, loaded from runbom's object and attached to node's `SSL_write`.
struct Reference {
    ebpf: Ebpf,
}

impl Reference {
    fn load() -> Result<Self> {
        let mut ebpf = EbpfLoader::new()
            .load(runbom_kernel::probes::OBJECT)
            .context("loading the eBPF object")?;
        for name in ["reference_uprobe_bare", "reference_uretprobe_bare"] {
            let p: &mut UProbe = ebpf
                .program_mut(name)
                .ok_or_else(|| anyhow!("{name} is not in the object"))?
                .try_into()?;
            p.load()?;
        }
        Ok(Self { ebpf })
    }

    /// Attaches `programs` to node's `SSL_write`; they stay until `detach`.
    fn attach(
        &mut self,
        programs: &[&str],
    ) -> Result<Vec<(String, aya::programs::uprobe::UProbeLinkId)>> {
        let mut links = Vec::new();
        for &name in programs {
            let p: &mut UProbe = self
                .ebpf
                .program_mut(name)
                .ok_or_else(|| anyhow!("{name} is not in the object"))?
                .try_into()?;
            links.push((
                name.to_owned(),
                p.attach("SSL_write", NODE, UProbeScope::AllProcesses)?,
            ));
        }
        Ok(links)
    }

    fn detach(&mut self, links: Vec<(String, aya::programs::uprobe::UProbeLinkId)>) -> Result<()> {
        for (name, link) in links {
            let p: &mut UProbe = self
                .ebpf
                .program_mut(&name)
                .ok_or_else(|| anyhow!("{name} is not in the object"))?
                .try_into()?;
            p.detach(link)?;
        }
        Ok(())
    }
}

pub fn run(opts: &Options) -> Result<String> {
    if !Path::new(NODE).exists() {
        return Ok(format!("### SSL_write on node\n\nskipped: no {NODE}\n"));
    }
    let pki = Pki::new();
    let mut cmd = Command::new(NODE);
    cmd.arg(SCRIPT)
        .arg("server")
        .arg(pki.path("server-key.pem"))
        .arg(pki.path("server.pem"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut server = Proc::spawn("ssl_writes.mjs server", &mut cmd);
    let mut line = String::new();
    BufReader::new(server.child.stdout.take().context("server stdout")?).read_line(&mut line)?;
    let port: u16 = line
        .trim()
        .strip_prefix("READY port=")
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| anyhow!("ssl_writes.mjs server printed {line:?}"))?;
    let ca = pki.path("ca.pem");
    let mut reference = Reference::load()?;
    let mut cpu: Vec<Vec<(usize, f64)>> = vec![Vec::new(); CONDITIONS.len()];
    let mut wall: Vec<Samples> = vec![Samples::default(); CONDITIONS.len()];
    let mut record = |c: usize, round: usize, (c_ns, w_ns): (f64, f64)| {
        cpu[c].push((round, c_ns));
        wall[c].push(w_ns);
    };
    for round in 0..opts.rounds {
        eprintln!("[bench] ssl: round {}/{}", round + 1, opts.rounds);
        record(0, round, client(port, &ca, opts.writes)?);
        for (c, programs) in [
            (1, &["reference_uprobe_bare"][..]),
            (
                2,
                &["reference_uprobe_bare", "reference_uretprobe_bare"][..],
            ),
        ] {
            let links = reference.attach(programs)?;
            let m = client(port, &ca, opts.writes);
            reference.detach(links)?;
            record(c, round, m?);
        }
        for (c, plaintext) in [(3, false), (4, true)] {
            let settings = Settings {
                ring_bytes: None,
                include: &["/nonexistent-runbom-bench/"],
                exclude: &[],
                file_dir: None,
                http_plaintext: plaintext,
                mcp: true,
            };
            let rb = Runbom::start(&opts.runbom, &opts.dir, &settings, None)?;
            let m = client(port, &ca, opts.writes);
            rb.quiesce();
            rb.stop()?;
            record(c, round, m?);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let breakdown = in_programs(opts, port, &ca, &mut reference)?;
    drop(server);
    Ok(report(opts, &cpu, &wall) + &breakdown)
}

/// One more pass of the bare pair and of runbom's TLS hooks with the kernel's run-time
/// statistics on: time inside each program per run (programs that ran at least once per two
/// writes; the rest is the machine's other activity).
fn in_programs(opts: &Options, port: u16, ca: &Path, reference: &mut Reference) -> Result<String> {
    let _stats = progstats::enable()?;
    let mut out = String::from(
        "\nTime inside the programs (one pass, kernel run-time statistics):\n\n\
         | condition | program | runs/write | ns/run |\n|---|---|---:|---:|\n",
    );
    let mut rows = |condition: &str, ran: Vec<progstats::Ran>| {
        // The client's warm-up writes ran too.
        let n = (opts.writes + opts.writes / 10) as f64;
        for r in ran {
            let per = r.runs as f64 / n;
            if per >= 0.5 {
                let _ = writeln!(
                    out,
                    "| {condition} | {} | {per:.2} | {:.0} |",
                    r.name,
                    r.ns as f64 / r.runs as f64
                );
            }
        }
    };
    let links = reference.attach(&["reference_uprobe_bare", "reference_uretprobe_bare"])?;
    let before = progstats::snapshot();
    let m = client(port, ca, opts.writes);
    let after = progstats::snapshot();
    reference.detach(links)?;
    m?;
    rows(REF_PAIR, progstats::ran(&before, &after));
    let settings = Settings {
        ring_bytes: None,
        include: &["/nonexistent-runbom-bench/"],
        exclude: &[],
        file_dir: None,
        http_plaintext: false,
        mcp: true,
    };
    let rb = Runbom::start(&opts.runbom, &opts.dir, &settings, None)?;
    let before = progstats::snapshot();
    let m = client(port, ca, opts.writes);
    let after = progstats::snapshot();
    rb.quiesce();
    rb.stop()?;
    m?;
    rows(RUNBOM_TLS, progstats::ran(&before, &after));
    Ok(out)
}

fn report(opts: &Options, cpu: &[Vec<(usize, f64)>], wall: &[Samples]) -> String {
    let added = |c: usize| {
        let mut d = Samples::default();
        for &(round, v) in &cpu[c] {
            if let Some(&(_, b)) = cpu[0].iter().find(|(r, _)| *r == round) {
                d.push(v - b);
            }
        }
        d.median()
    };
    let mut out = format!(
        "### SSL_write on node (uprobes on the `node` executable)\n\n\
         {} rounds; {} awaited 64-byte TLS writes per run (one SSL_write and one write(2) each); \
         CPU time of the client process per write.\n\n\
         | condition | CPU ns/write (median) | added ns (paired median) | wall ns/write (median) |\n\
         |---|---:|---:|---:|\n",
        opts.rounds, opts.writes
    );
    for (c, name) in CONDITIONS.iter().enumerate() {
        let mut s = Samples::default();
        for &(_, v) in &cpu[c] {
            s.push(v);
        }
        let shown = if c == 0 {
            String::new()
        } else {
            format!("{:+.0}", added(c))
        };
        let _ = writeln!(
            out,
            "| {name} | {:.0} | {shown} | {:.0} |",
            s.median(),
            wall[c].median()
        );
    }
    let (ours, theirs) = (added(3), added(2));
    let _ = writeln!(
        out,
        "\n- runbom's TLS hooks add {ours:.0} ns per SSL_write; a bare uprobe + uretprobe adds \
         {theirs:.0} ns: {:.2}x. A bare uprobe alone adds {:.0} ns; runbom as shipped (write \
         hooks too) adds {:.0} ns.",
        ours / theirs,
        added(1),
        added(4)
    );
    out
}

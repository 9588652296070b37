//! Benchmark `pipes`: what MCP's JSON-RPC detection adds to each `write(2)` into a pipe.
//!
//! The writer is this process's pinned thread (the last CPU), writing into a pipe that a second
//! thread drains; its CPU time per write is measured for three buffers: 4 KiB of binary data
//! (`dd`/`cat` through a pipe: the first byte is no `{`, so the detection never runs), a 4 KiB
//! JSON log line (starts `{`, names no `"jsonrpc`: both 64-byte windows are read and searched,
//! nothing is copied) and a 200-byte JSON-RPC request (captured: copied to the ring and
//! parsed). Each round measures every buffer with nothing attached (baseline), with runbom
//! with `mcp.enabled: false` and with runbom as shipped; added costs are medians of the
//! per-round differences. One more pass with the kernel's run-time statistics on gives the time
//! inside `http_sys_enter_write` / `http_sys_exit_write` per run, with the detection and
//! without it.

use std::{
    fmt::Write as _,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    path::PathBuf,
    time::Duration,
};

use anyhow::{Result, bail};

use crate::{
    progstats,
    runbom::{Runbom, Settings},
    stats::Samples,
    workload::{pin_current_thread, thread_cpu},
};

pub struct Options {
    pub runbom: PathBuf,
    pub dir: PathBuf,
    pub writes: u64,
    pub rounds: usize,
    pub loop_cpu: Option<usize>,
    pub service_cpu: Option<usize>,
}

const CONDITIONS: [&str; 3] = ["baseline", "runbom (mcp.enabled: false)", "runbom"];
const KINDS: [&str; 3] = [
    "4 KiB binary",
    "4 KiB JSON log line",
    "200 B JSON-RPC request",
];

fn buffers() -> [Vec<u8>; 3] {
    let binary: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8 + 1).collect();
    let mut log = br#"{"level":"info","logger":"app","msg":""#.to_vec();
    log.resize(4096 - 3, b'x');
    log.extend_from_slice(b"\"}\n");
    let mut rpc = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"read_text_file","arguments":{"path":"/data/"#.to_vec();
    rpc.resize(200 - 6, b'a');
    rpc.extend_from_slice(b"\"}}}\n");
    [binary, log, rpc]
}

/// A pipe and a thread that drains it.
struct Pipe {
    write: OwnedFd,
    drain: Option<std::thread::JoinHandle<()>>,
}

impl Pipe {
    fn new() -> Result<Self> {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            bail!("pipe2: {}", std::io::Error::last_os_error());
        }
        // SAFETY: both descriptors are new and ours.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let drain = std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 16];
            // SAFETY: reads into a buffer of that length; ends at EOF or error.
            while unsafe { libc::read(read.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
        });
        Ok(Self {
            write,
            drain: Some(drain),
        })
    }

    /// CPU ns of this thread per write of `buf`, `n` times (after a tenth as warm-up).
    fn measure(&self, buf: &[u8], n: u64) -> f64 {
        let fd = self.write.as_raw_fd();
        let run = |n: u64| {
            for _ in 0..n {
                // SAFETY: writes from a live buffer of that length.
                let _ = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
            }
        };
        run(n / 10);
        let before = thread_cpu();
        run(n);
        thread_cpu().saturating_sub(before).as_nanos() as f64 / n as f64
    }
}

fn settings(mcp: bool) -> Settings<'static> {
    Settings {
        ring_bytes: None,
        include: &["/nonexistent-runbom-bench/"],
        exclude: &[],
        file_dir: None,
        http_plaintext: true,
        mcp,
    }
}

pub fn run(opts: &Options) -> Result<String> {
    // cpu[condition][kind]: (round, ns/write)
    let mut cpu = vec![vec![Vec::<(usize, f64)>::new(); KINDS.len()]; CONDITIONS.len()];
    let bufs = buffers();
    let measure_all =
        |cpu: &mut Vec<Vec<Vec<(usize, f64)>>>, c: usize, round: usize| -> Result<()> {
            let pipe = Pipe::new()?;
            if let Some(l) = opts.loop_cpu {
                pin_current_thread(l)?;
            }
            for (k, buf) in bufs.iter().enumerate() {
                cpu[c][k].push((round, pipe.measure(buf, opts.writes)));
            }
            let Pipe { write, drain } = pipe;
            drop(write);
            if let Some(d) = drain {
                let _ = d.join();
            }
            Ok(())
        };
    for round in 0..opts.rounds {
        eprintln!("[bench] pipes: round {}/{}", round + 1, opts.rounds);
        measure_all(&mut cpu, 0, round)?;
        for (c, mcp) in [(1, false), (2, true)] {
            let rb = Runbom::start(&opts.runbom, &opts.dir, &settings(mcp), opts.service_cpu)?;
            let m = measure_all(&mut cpu, c, round);
            rb.quiesce();
            rb.stop()?;
            m?;
        }
    }
    let mut out = report(opts, &cpu);
    out.push_str(&in_programs(opts, &bufs)?);
    Ok(out)
}

fn report(opts: &Options, cpu: &[Vec<Vec<(usize, f64)>>]) -> String {
    let diffs = |c: usize, base: usize, k: usize| {
        let mut d = Samples::default();
        for &(round, v) in &cpu[c][k] {
            if let Some(&(_, b)) = cpu[base][k].iter().find(|(r, _)| *r == round) {
                d.push(v - b);
            }
        }
        d
    };
    let mut out = format!(
        "### Pipe writes and MCP's JSON-RPC detection\n\n\
         {} rounds; {} writes per buffer per run into a pipe a second thread drains; CPU time \
         of the writing thread per write (median over rounds). \"MCP adds\": paired median of \
         runbom minus runbom with `mcp.enabled: false` in the same round, with the rounds' \
         range.\n\n\
         | buffer | baseline ns | runbom, MCP off ns | runbom ns | MCP adds ns (range) |\n\
         |---|---:|---:|---:|---:|\n",
        opts.rounds, opts.writes
    );
    for (k, kind) in KINDS.iter().enumerate() {
        let med = |c: usize| {
            let mut s = Samples::default();
            for &(_, v) in &cpu[c][k] {
                s.push(v);
            }
            s.median()
        };
        let d = diffs(2, 1, k);
        let _ = writeln!(
            out,
            "| {kind} | {:.0} | {:.0} | {:.0} | {:+.0} ({:+.0} to {:+.0}) |",
            med(0),
            med(1),
            med(2),
            d.median(),
            d.min(),
            d.max()
        );
    }
    out
}

/// Time inside the write hooks per run, with and without the detection (one pass each).
fn in_programs(opts: &Options, bufs: &[Vec<u8>; 3]) -> Result<String> {
    let _stats = progstats::enable()?;
    let mut out = String::from(
        "\nTime inside the write hooks (one pass each, kernel run-time statistics; runs of \
         other processes' writes included):\n\n\
         | buffer | program | ns/run, MCP off | ns/run, runbom |\n|---|---|---:|---:|\n",
    );
    let mut per_run = vec![vec![(0.0, 0.0); 2]; KINDS.len()];
    for (slot, mcp) in [(0, false), (1, true)] {
        let rb = Runbom::start(&opts.runbom, &opts.dir, &settings(mcp), opts.service_cpu)?;
        let pipe = Pipe::new()?;
        if let Some(l) = opts.loop_cpu {
            pin_current_thread(l)?;
        }
        for (k, buf) in bufs.iter().enumerate() {
            let before = progstats::snapshot();
            pipe.measure(buf, opts.writes);
            let after = progstats::snapshot();
            // The kernel keeps 15 bytes of a name (`http_sys_enter_`, `http_sys_exit_w`): of the
            // programs so named, the one that ran most ran for these writes.
            let ran = progstats::ran(&before, &after);
            for (p, prefix) in ["http_sys_enter_", "http_sys_exit_w"].iter().enumerate() {
                if let Some(r) = ran
                    .iter()
                    .filter(|r| r.name.starts_with(prefix))
                    .max_by_key(|r| r.runs)
                {
                    let ns = r.ns as f64 / r.runs as f64;
                    if slot == 0 {
                        per_run[k][p].0 = ns;
                    } else {
                        per_run[k][p].1 = ns;
                    }
                }
            }
        }
        drop(pipe);
        rb.quiesce();
        rb.stop()?;
        std::thread::sleep(Duration::from_millis(100));
    }
    for (k, kind) in KINDS.iter().enumerate() {
        for (p, program) in ["http_sys_enter_write", "http_sys_exit_write"]
            .iter()
            .enumerate()
        {
            let (off, on) = per_run[k][p];
            let _ = writeln!(out, "| {kind} | {program} | {off:.0} | {on:.0} |");
        }
    }
    Ok(out)
}

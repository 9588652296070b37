//! The measured loops and the load generators: plain libc calls, nothing allocated per call.

use std::{
    ffi::CStr,
    io,
    os::fd::{FromRawFd as _, OwnedFd},
    time::{Duration, Instant},
};

/// Pins the calling thread to one CPU.
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    // SAFETY: an all-zero `cpu_set_t` is the empty set; `CPU_SET` writes inside it for any
    // cpu below CPU_SETSIZE (checked by the libc macro); the call reads the set we pass.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &raw const set)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

pub use runbom_testkit::cpu::thread_cpu;

/// Number of CPUs this process may run on.
pub fn online_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// One `openat` + `close` of `path`, checked once so that the loops need not check.
pub fn check_open(path: &CStr) -> io::Result<()> {
    // SAFETY: a NUL-terminated path; the descriptor is closed at once.
    let fd = unsafe { libc::openat(libc::AT_FDCWD, path.as_ptr(), libc::O_RDONLY) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is ours.
    unsafe { libc::close(fd) };
    Ok(())
}

/// `n` times `openat(path, O_RDONLY)` + `close`; returns the elapsed time and the opens that
/// succeeded.
pub fn open_close(path: &CStr, n: u64) -> (Duration, u64) {
    open_close_at(libc::AT_FDCWD, path, n)
}

/// [`open_close`] of `path` relative to the directory `dir` (a descriptor, or `AT_FDCWD`).
pub fn open_close_at(dir: libc::c_int, path: &CStr, n: u64) -> (Duration, u64) {
    let mut ok = 0;
    let start = Instant::now();
    for _ in 0..n {
        // SAFETY: a NUL-terminated path; the descriptor is closed at once.
        let fd = unsafe { libc::openat(dir, path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if fd >= 0 {
            ok += 1;
            // SAFETY: `fd` is ours.
            unsafe { libc::close(fd) };
        }
    }
    (start.elapsed(), ok)
}

/// One spawn of `/bin/true`, waited for: a fork, an exec and an exit.
pub fn exec_true() -> io::Result<()> {
    let status = std::process::Command::new("/bin/true").status()?;
    if !status.success() {
        return Err(io::Error::other(format!("/bin/true exited with {status}")));
    }
    Ok(())
}

/// `n` times [`exec_true`]; returns the elapsed time.
pub fn exec_loop(n: u64) -> io::Result<Duration> {
    let start = Instant::now();
    for _ in 0..n {
        exec_true()?;
    }
    Ok(start.elapsed())
}

/// CPU time of this process's waited-for children so far (user and system).
pub fn children_cpu() -> Duration {
    // SAFETY: an all-zero rusage is valid; getrusage writes into it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid `who` and rusage pointer.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &raw mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// `n` writes of a 64-byte non-HTTP buffer to `/dev/null` (every write passes runbom's HTTP
/// hooks, none is captured).
pub fn write_loop(n: u64) -> Duration {
    static BUF: [u8; 64] = [b'x'; 64];
    // SAFETY: a NUL-terminated path; the descriptor is closed below.
    let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    let start = Instant::now();
    for _ in 0..n {
        // SAFETY: writes from a static buffer of that length.
        let _ = unsafe { libc::write(fd, BUF.as_ptr().cast(), BUF.len()) };
    }
    let elapsed = start.elapsed();
    if fd >= 0 {
        // SAFETY: `fd` is ours.
        unsafe { libc::close(fd) };
    }
    elapsed
}

/// `n` reads of 64 bytes from `/dev/zero` (every read passes runbom's HTTP/2 read hooks, none
/// is captured).
pub fn read_loop(n: u64) -> Duration {
    let mut buf = [0_u8; 64];
    // SAFETY: a NUL-terminated path; the descriptor is closed below.
    let fd = unsafe { libc::open(c"/dev/zero".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    let start = Instant::now();
    for _ in 0..n {
        // SAFETY: reads into a stack buffer of that length.
        let _ = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    }
    let elapsed = start.elapsed();
    if fd >= 0 {
        // SAFETY: `fd` is ours.
        unsafe { libc::close(fd) };
    }
    elapsed
}

pub fn getppid_loop(n: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        // SAFETY: no arguments, no memory touched.
        std::hint::black_box(unsafe { libc::getppid() });
    }
    start.elapsed()
}

/// A loopback TCP port that refuses connections: a socket bound to it but not listening keeps
/// anyone else from taking it.
pub struct RefusedPort {
    _holder: OwnedFd,
    pub addr: libc::sockaddr_in,
}

fn loopback(port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be(),
        },
        sin_zero: [0; 8],
    }
}

const SOCKADDR_IN_LEN: libc::socklen_t = size_of::<libc::sockaddr_in>() as libc::socklen_t;

impl RefusedPort {
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain socket creation; the descriptor is owned at once.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        let holder = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut addr = loopback(0);
        let mut len = SOCKADDR_IN_LEN;
        // SAFETY: `addr` is a valid `sockaddr_in` of the length passed; getsockname writes at
        // most `len` bytes into it.
        let rc = unsafe {
            let p = (&raw mut addr).cast::<libc::sockaddr>();
            if libc::bind(fd, p, SOCKADDR_IN_LEN) == 0 {
                libc::getsockname(fd, p, &raw mut len)
            } else {
                -1
            }
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            _holder: holder,
            addr,
        })
    }

    /// Checks once that a connect is refused (the loop does not check).
    pub fn check(&self) -> io::Result<()> {
        match connect_once(&self.addr) {
            Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => Ok(()),
            Err(e) => Err(e),
            Ok(()) => Err(io::Error::other("connect to the refused port succeeded")),
        }
    }
}

fn connect_once(addr: &libc::sockaddr_in) -> io::Result<()> {
    // SAFETY: plain socket calls on a descriptor we create and close; `addr` is a valid
    // `sockaddr_in` of the length passed.
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if s < 0 {
            return Err(io::Error::last_os_error());
        }
        let rc = libc::connect(
            s,
            core::ptr::from_ref(addr).cast::<libc::sockaddr>(),
            SOCKADDR_IN_LEN,
        );
        let err = io::Error::last_os_error();
        libc::close(s);
        if rc == 0 { Ok(()) } else { Err(err) }
    }
}

/// `n` times `socket()` + `connect()` to a refused loopback port + `close()`.
pub fn connect_loop(addr: &libc::sockaddr_in, n: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        let _ = connect_once(addr);
    }
    start.elapsed()
}

/// `threads` threads each opening `path` `per_thread` times as fast as they can; returns the
/// opens that succeeded and the elapsed time.
pub fn flood(path: &CStr, threads: usize, per_thread: u64) -> (u64, Duration) {
    let start = Instant::now();
    let opened = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| s.spawn(|| open_close(path, per_thread).1))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(0))
            .sum::<u64>()
    });
    (opened, start.elapsed())
}

/// Opens `path` at `rate` per second for `duration` (in 1 ms slices); returns the opens that
/// succeeded and the elapsed time.
pub fn paced(path: &CStr, rate: u64, duration: Duration) -> (u64, Duration) {
    let start = Instant::now();
    let total = (u128::from(rate) * duration.as_millis() / 1000) as u64;
    let mut done = 0u64;
    let mut opened = 0u64;
    while done < total {
        let due = (u128::from(rate) * start.elapsed().as_micros() / 1_000_000) as u64;
        let due = due.min(total);
        if due > done {
            opened += open_close(path, due - done).1;
            done = due;
        } else {
            std::thread::sleep(Duration::from_micros(500));
        }
    }
    (opened, start.elapsed())
}

//! What runbom keeps resident once it runs. Start-up touches far more than runbom uses at
//! rest: code and read-only data that run once (the configuration's parsing, the kernel's BTF,
//! loading and attaching the probes, the eBPF object itself) and the heap they use. When
//! start-up is over, [`started`] hands both back: the allocator returns what start-up freed
//! ([`crate::allocator::started`]) and, from then on, what stays free; the pages of runbom's own
//! executable file are given back to the kernel (`MADV_PAGEOUT`), and the code runbom keeps
//! running faults back in as it runs.
//! Its file's pages are clean, so nothing is written anywhere; pages other processes map too
//! are left alone by the kernel.

use std::{fs, ops::Range};

use tokio_util::sync::CancellationToken;
use tracing::debug;

/// Start-up is over: return its memory to the system, and from now on what stays free
/// (until `stop`).
pub fn started(stop: &CancellationToken) {
    crate::allocator::started();
    page_out_executable();
    let stop = stop.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(crate::allocator::PURGE_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => crate::allocator::purge_expired(),
                () = stop.cancelled() => return,
            }
        }
    });
}

/// Gives back the resident pages of the read-only mappings of runbom's executable (code and
/// read-only data; its writable data is runbom's own and stays).
fn page_out_executable() {
    let maps = match fs::read_to_string("/proc/self/maps") {
        Ok(m) => m,
        Err(e) => {
            debug!("cannot read /proc/self/maps, start-up code stays resident: {e}");
            return;
        }
    };
    let here = page_out_executable as *const () as usize;
    for range in executable_read_only(&maps, here) {
        // SAFETY: `MADV_PAGEOUT` on a read-only file mapping changes no contents: the pages
        // are dropped from this process and read back from the file on the next access.
        let result = unsafe {
            libc::madvise(
                range.start as *mut libc::c_void,
                range.end - range.start,
                libc::MADV_PAGEOUT,
            )
        };
        if result != 0 {
            // Before Linux 5.4, or not permitted: the pages stay, nothing else changes.
            debug!(
                "MADV_PAGEOUT on runbom's executable: {}",
                std::io::Error::last_os_error()
            );
            return;
        }
    }
}

/// The address ranges of the read-only mappings of the file that maps `address` (a function of
/// this executable), from `/proc/self/maps` lines (`start-end perms offset dev inode path`).
fn executable_read_only(maps: &str, address: usize) -> Vec<Range<usize>> {
    let lines: Vec<(Range<usize>, &str, &str, &str)> = maps
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (start, end) = fields.next()?.split_once('-')?;
            let perms = fields.next()?;
            let _offset = fields.next()?;
            let dev = fields.next()?;
            let inode = fields.next()?;
            let range =
                usize::from_str_radix(start, 16).ok()?..usize::from_str_radix(end, 16).ok()?;
            Some((range, perms, dev, inode))
        })
        .collect();
    let Some((_, _, dev, inode)) = lines
        .iter()
        .find(|(range, _, _, inode)| range.contains(&address) && *inode != "0")
    else {
        return Vec::new();
    };
    lines
        .iter()
        .filter(|(_, perms, d, i)| d == dev && i == inode && !perms.contains('w'))
        .map(|(range, ..)| range.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
55d0c0a00000-55d0c0d10000 r--p 00000000 fd:01 4242                       /usr/bin/runbom
55d0c0d10000-55d0c1900000 r-xp 00310000 fd:01 4242                       /usr/bin/runbom
55d0c1900000-55d0c19c0000 r--p 00f00000 fd:01 4242                       /usr/bin/runbom
55d0c19c0000-55d0c19c8000 rw-p 00fc0000 fd:01 4242                       /usr/bin/runbom
55d0c19c8000-55d0c19d0000 rw-p 00000000 00:00 0
7f0000000000-7f0000100000 r-xp 00000000 fd:01 77                         /usr/lib/x86_64-linux-gnu/libc.so.6
7f0000200000-7f0001200000 r--s 00000000 00:0f 1001                       anon_inode:bpf-map
";

    #[test]
    fn only_the_read_only_mappings_of_the_running_file() {
        let ranges = executable_read_only(MAPS, 0x55d0_c0d2_0000);
        assert_eq!(
            ranges,
            vec![
                0x55d0_c0a0_0000..0x55d0_c0d1_0000,
                0x55d0_c0d1_0000..0x55d0_c190_0000,
                0x55d0_c190_0000..0x55d0_c19c_0000,
            ]
        );
    }

    #[test]
    fn nothing_when_the_address_is_in_no_file() {
        assert!(executable_read_only(MAPS, 0x55d0_c19c_9000).is_empty());
        assert!(executable_read_only(MAPS, 0x1000).is_empty());
    }

    #[test]
    fn pages_out_this_test_binary_and_keeps_running() {
        let maps = fs::read_to_string("/proc/self/maps").expect("maps");
        let here = page_out_executable as *const () as usize;
        let ranges = executable_read_only(&maps, here);
        assert!(
            ranges.iter().any(|r| r.contains(&here)),
            "the test binary's code is among {ranges:x?}"
        );
        page_out_executable();
        // Its code and read-only data fault back in.
        assert_eq!(executable_read_only(MAPS, 0x55d0_c0d2_0000).len(), 3);
    }
}

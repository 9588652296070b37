//! Names for numbers the kernel reports: errnos, open flags, DNS questions.

/// The symbolic name of an errno (`ECONNREFUSED`), or `E<number>` for rare ones.
#[must_use]
pub fn errno(e: i32) -> &'static str {
    match e {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::ENFILE => "ENFILE",
        libc::EMFILE => "EMFILE",
        libc::ETXTBSY => "ETXTBSY",
        libc::ENOSPC => "ENOSPC",
        libc::EROFS => "EROFS",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ELOOP => "ELOOP",
        libc::ENOTSOCK => "ENOTSOCK",
        libc::EPROTOTYPE => "EPROTOTYPE",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::EADDRINUSE => "EADDRINUSE",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::ENETDOWN => "ENETDOWN",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::ECONNABORTED => "ECONNABORTED",
        libc::ECONNRESET => "ECONNRESET",
        libc::EISCONN => "EISCONN",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::EALREADY => "EALREADY",
        libc::EINPROGRESS => "EINPROGRESS",
        _ => "EUNKNOWN",
    }
}

/// `O_*` flags as the contract writes them: access mode first, then the other set flags,
/// joined by `|` (e.g. `O_WRONLY|O_CREAT|O_TRUNC`).
#[must_use]
pub fn open_flags(flags: u32) -> String {
    let mut out = String::with_capacity(32);
    // Writing into a `String` cannot fail.
    let _ = write_open_flags(flags, &mut out);
    out
}

/// Calls `f` with `flags` as [`write_open_flags`] writes them. The text of the last flags
/// written on this thread is kept: a process opens most of its files with the same flags, and
/// every open's log record writes them twice (an attribute and its body). `f` must not call
/// this again.
pub fn with_open_flags<R>(flags: u32, f: impl FnOnce(&str) -> R) -> R {
    thread_local! {
        /// The last flags and their text (empty before the first).
        static LAST: std::cell::RefCell<(u32, String)> = const {
            std::cell::RefCell::new((0, String::new()))
        };
    }
    LAST.with_borrow_mut(|(last, text)| {
        if text.is_empty() || *last != flags {
            text.clear();
            // Writing into a `String` cannot fail.
            let _ = write_open_flags(flags, text);
            *last = flags;
        }
        f(text)
    })
}

/// [`open_flags`], written into `out` (no string of its own).
///
/// # Errors
/// Only those of `out`.
pub fn write_open_flags(flags: u32, out: &mut impl std::fmt::Write) -> std::fmt::Result {
    let flags = flags as i32;
    out.write_str(match flags & libc::O_ACCMODE {
        libc::O_WRONLY => "O_WRONLY",
        libc::O_RDWR => "O_RDWR",
        _ => "O_RDONLY",
    })?;
    for (bit, name) in [
        (libc::O_CREAT, "O_CREAT"),
        (libc::O_EXCL, "O_EXCL"),
        (libc::O_NOCTTY, "O_NOCTTY"),
        (libc::O_TRUNC, "O_TRUNC"),
        (libc::O_APPEND, "O_APPEND"),
        (libc::O_NONBLOCK, "O_NONBLOCK"),
        (libc::O_DSYNC, "O_DSYNC"),
        (libc::O_DIRECT, "O_DIRECT"),
        (libc::O_LARGEFILE, "O_LARGEFILE"),
        (libc::O_DIRECTORY, "O_DIRECTORY"),
        (libc::O_NOFOLLOW, "O_NOFOLLOW"),
        (libc::O_NOATIME, "O_NOATIME"),
        (libc::O_CLOEXEC, "O_CLOEXEC"),
        (libc::O_PATH, "O_PATH"),
    ] {
        // Some flags are 0 on this architecture (O_LARGEFILE on x86_64): never report those.
        if bit != 0 && flags & bit == bit {
            out.write_char('|')?;
            out.write_str(name)?;
        }
    }
    // O_TMPFILE includes O_DIRECTORY's bit; report it by name when all of its bits are set.
    if flags & libc::O_TMPFILE == libc::O_TMPFILE {
        out.write_str("|O_TMPFILE")?;
    }
    Ok(())
}

/// The first question of a DNS query datagram: the name (dotted, lower case) and its type.
/// `None` when the datagram is not a query or its question does not parse.
#[must_use]
pub fn dns_question(msg: &[u8]) -> Option<(String, &'static str)> {
    if msg.len() < 12 || msg[2] & 0x80 != 0 {
        return None; // too short, or a response
    }
    let qdcount = u16::from_be_bytes([msg[4], msg[5]]);
    if qdcount == 0 {
        return None;
    }
    let mut name = String::new();
    let mut i = 12;
    loop {
        let len = *msg.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        if len > 63 || name.len() + len > 253 {
            return None; // compression pointers do not appear in a query's question
        }
        let label = msg.get(i..i + len)?;
        if !name.is_empty() {
            name.push('.');
        }
        for &b in label {
            if !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                return None;
            }
            name.push(b.to_ascii_lowercase() as char);
        }
        i += len;
    }
    let qtype = u16::from_be_bytes([*msg.get(i)?, *msg.get(i + 1)?]);
    Some((name, dns_qtype(qtype)))
}

/// The name of a DNS question type (`A`, `AAAA`, …; `OTHER` for the rest).
#[must_use]
pub fn dns_qtype(qtype: u16) -> &'static str {
    match qtype {
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        12 => "PTR",
        15 => "MX",
        16 => "TXT",
        28 => "AAAA",
        33 => "SRV",
        64 => "SVCB",
        65 => "HTTPS",
        255 => "ANY",
        _ => "OTHER",
    }
}

/// The name [`errno`] gives, as the same `&'static str` (for names read back from elsewhere,
/// e.g. the node agent's stream); `EUNKNOWN` for a name it never gives.
#[must_use]
pub fn errno_named(name: &str) -> &'static str {
    (1..=133)
        .map(errno)
        .find(|n| *n == name)
        .unwrap_or("EUNKNOWN")
}

/// The name [`dns_qtype`] gives, as the same `&'static str`; `OTHER` for the rest.
#[must_use]
pub fn dns_qtype_named(name: &str) -> &'static str {
    (0..=255)
        .map(dns_qtype)
        .find(|n| *n == name)
        .unwrap_or("OTHER")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_back() {
        for e in [libc::ECONNREFUSED, libc::ENOENT, libc::EINPROGRESS] {
            assert_eq!(errno_named(errno(e)), errno(e));
        }
        assert_eq!(errno_named("ENOPE"), "EUNKNOWN");
        assert_eq!(dns_qtype_named("AAAA"), "AAAA");
        assert_eq!(dns_qtype_named("HTTPS"), "HTTPS");
        assert_eq!(dns_qtype_named("weird"), "OTHER");
    }

    #[test]
    fn flag_names() {
        assert_eq!(open_flags(0), "O_RDONLY");
        let f = (libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC) as u32;
        assert_eq!(open_flags(f), "O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC");
    }

    /// The kept text is the last flags' text: repeated, changed, back to the first, zero.
    #[test]
    fn kept_flags_are_the_flags_written() {
        let w = (libc::O_WRONLY | libc::O_CREAT) as u32;
        let tmp = (libc::O_RDWR | libc::O_TMPFILE) as u32;
        for f in [w, w, tmp, 0, w, u32::MAX, 0, 0] {
            assert_eq!(
                with_open_flags(f, str::to_owned),
                open_flags(f),
                "flags {f:#x}"
            );
        }
    }

    #[test]
    fn errno_names() {
        assert_eq!(errno(libc::ECONNREFUSED), "ECONNREFUSED");
        assert_eq!(errno(9999), "EUNKNOWN");
    }

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            m.push(label.len() as u8);
            m.extend_from_slice(label.as_bytes());
        }
        m.push(0);
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&1u16.to_be_bytes());
        m
    }

    #[test]
    fn dns_questions() {
        assert_eq!(
            dns_question(&query("API.Example.com", 28)),
            Some(("api.example.com".into(), "AAAA"))
        );
        let mut response = query("example.com", 1);
        response[2] |= 0x80;
        assert_eq!(dns_question(&response), None);
        assert_eq!(dns_question(&query("example.com", 1)[..15]), None);
        assert_eq!(dns_question(b"short"), None);
    }
}

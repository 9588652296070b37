//! A kernel event's log record body: one line a person can read.

use runbom_event::{Detail, KernelEvent, names};

use super::{attributes::write_socket_addr, mcp};

/// The log record's body: one line a person can read, appended to `s`.
pub(crate) fn write_body(ev: &KernelEvent, s: &mut String) {
    use std::fmt::Write as _;
    // Strings are appended as they are: `write!` only for what has a `Display` of its own.
    let mut int = itoa::Buffer::new();
    push_all(s, &[ev.process.exe_name(), " [", int.format(ev.pid), "] "]);
    // Writing into a `String` cannot fail.
    let _ = match &ev.detail {
        Detail::Exec { .. } => {
            push_all(s, &["exec ", &ev.process.command_line]);
            Ok(())
        }
        Detail::Exit { code: Some(c) } => {
            push_all(s, &["exited with ", int.format(*c)]);
            Ok(())
        }
        Detail::Exit { code: None } => {
            s.push_str("was killed");
            Ok(())
        }
        Detail::Connect { remote, .. } => {
            s.push_str("connect ");
            write_socket_addr(*remote, s);
            Ok(())
        }
        Detail::Accept { peer: Some(p) } => {
            s.push_str("accepted ");
            write_socket_addr(*p, s);
            Ok(())
        }
        Detail::Accept { peer: None } => {
            s.push_str("accepted a connection");
            Ok(())
        }
        Detail::FileOpen { path, flags, .. } => {
            push_all(s, &["open ", path, " "]);
            names::with_open_flags(*flags, |f| s.push_str(f));
            Ok(())
        }
        Detail::DnsQuery {
            name,
            qtype,
            server,
        } => write!(s, "dns query {name} {qtype} to {server}"),
        Detail::Mcp(m) => mcp::write_body(m, s),
        Detail::HttpRequest(h) => {
            push_all(
                s,
                &[
                    h.capture.as_str(),
                    " ",
                    &h.method,
                    " ",
                    h.host.as_deref().unwrap_or(""),
                    &h.target,
                ],
            );
            Ok(())
        }
    };
    if let Detail::Connect { error: Some(e), .. } | Detail::FileOpen { error: Some(e), .. } =
        &ev.detail
    {
        push_all(s, &[" failed: ", e]);
    }
}

pub(super) fn push_all(s: &mut String, parts: &[&str]) {
    for p in parts {
        s.push_str(p);
    }
}

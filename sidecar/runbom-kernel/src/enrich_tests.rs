//! `file.open` paths: the last unchanged path kept for the next open gives the same text as
//! decoding and redacting every path afresh.

use runbom_common::{EventHeader, EventKind, FileOpenEvent, PATH_MAX, decode::Event};
use runbom_event::Detail;

use super::{Enricher, cstr};
use crate::{clock::BootClock, proctable::ProcessTable};

fn open(path: &[u8]) -> FileOpenEvent {
    let mut ev = FileOpenEvent {
        header: EventHeader {
            kind: EventKind::FileOpen as u32,
            size: size_of::<FileOpenEvent>() as u32,
            pid: 100,
            tid: 100,
            time_ns: 5,
            cgroup_id: 1,
        },
        end_ns: 6,
        flags: 0,
        ret: 3,
        path_len: path.len() as u32,
        _pad: 0,
        path: [0; PATH_MAX],
    };
    ev.path[..path.len()].copy_from_slice(path);
    ev
}

#[test]
fn kept_path_gives_what_decoding_afresh_gives() {
    let mut enricher = Enricher::new(ProcessTable::empty(), BootClock::new());
    let paths: [&[u8]; 12] = [
        b"/etc/hosts",
        b"/etc/hosts",
        b"",
        b"",
        b"/tmp/sk-abcdefghijklmnopqrstuvwx",
        b"/tmp/sk-abcdefghijklmnopqrstuvwx",
        b"/tmp/[REDACTED]",
        b"/etc/hosts",
        b"/data/\xff\xfe.bin",
        b"/data/\xff\xfe.bin",
        b"/etc/hosts\0tail",
        b"/etc/hosts",
    ];
    // The key and the invalid UTF-8 are changed by decoding: never kept.
    assert_ne!(cstr(paths[4]).as_bytes(), paths[4]);
    assert_ne!(cstr(paths[8]).as_bytes(), paths[8]);
    for path in paths {
        let event = enricher
            .enrich(&Event::FileOpen(open(path)))
            .expect("an open is an event");
        let Detail::FileOpen { path: got, .. } = event.detail else {
            panic!("not a file.open: {:?}", event.detail);
        };
        assert_eq!(got, cstr(path), "{}", String::from_utf8_lossy(path));
    }
}

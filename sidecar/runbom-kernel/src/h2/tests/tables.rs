//! The HPACK tables' bound over all connections, and the size updates read before a block is
//! decoded.

use super::*;
use crate::h2::tables::{TABLE_DEFAULT, TABLE_MAX, read_int, size_after};

/// A dynamic table size update to `size`, then `fields` encoded by `encoder` (its own table set
/// to `size`, as its peer's will be).
fn raised(encoder: &mut Encoder<'static>, size: usize, fields: &[(&[u8], &[u8])]) -> Vec<u8> {
    encoder.set_max_table_size(size);
    let mut block = Vec::new();
    hpack_int(&mut block, 0x20, 5, size);
    block.extend(encoder.encode(fields.iter().copied()));
    block
}

impl Many {
    /// The tables' maximum sizes counted by the tracker, checked against its connections'.
    fn tables(&self) -> usize {
        let (counted, each) = self.tracker.tables();
        assert_eq!(counted, each, "the count is exact");
        counted
    }
}

/// 4 096 connections each raising both HPACK tables to 64 KiB and filling them would make
/// runbom hold 512 MiB. Each table counts at its maximum size in one bound over all
/// connections: an update past it loses its connection, a new connection's tables make room by
/// losing the connection with the largest, and every way a connection ends gives its count
/// back.
#[test]
fn hpack_tables_held_are_bounded_over_all_connections() {
    // Past CONNECTIONS_MAX the least recently used connection goes, with its count.
    let mut m = Many::new(CONNECTIONS_MAX + 8);
    assert_eq!(m.tables(), CONNECTIONS_MAX * 2 * TABLE_DEFAULT);
    // Sixteen entries of 4 KiB (name, value and 32 bytes) fill a table of 64 KiB.
    let names: Vec<String> = (0..16).map(|k| format!("x-fill-{k:02}")).collect();
    let value = vec![b'v'; TABLE_MAX / 16 - 32 - names[0].len()];
    let fill: Vec<(&[u8], &[u8])> = names.iter().map(|n| (n.as_bytes(), &value[..])).collect();
    let request = [&fill[..], &[(b":method", b"GET"), (b":path", b"/")]].concat();
    let response = [&fill[..], &[(b":status", b"200")]].concat();
    let (raising, mut lost) = (400, 0);
    for i in 0..raising {
        let (client, server) = &mut m.encoders[i];
        let w = frame(1, 0x4, 1, &raised(client, TABLE_MAX, &request));
        let r = frame(1, 0x5, 1, &raised(server, TABLE_MAX, &response));
        for (dir, bytes) in [(Direction::Write, w), (Direction::Read, r)] {
            let followed = m.tracker.connections.contains_key(&Many::key(i));
            m.push(i, dir, &bytes);
            lost += usize::from(followed && !m.tracker.connections.contains_key(&Many::key(i)));
            assert!(m.tables() <= TABLES_MAX, "{} bytes counted", m.tables());
        }
    }
    assert!(lost > 0, "connections past the bound are lost");
    assert_eq!(m.tracker.lost, lost as u64, "and counted");
    assert!(
        m.tables() > TABLES_MAX - 2 * TABLE_MAX,
        "the budget is used"
    );
    // The connections that stayed decoded their blocks with full tables.
    let stayed = (0..raising)
        .filter(|&i| m.tracker.connections.contains_key(&Many::key(i)))
        .count();
    let mut out = Vec::new();
    m.tracker.take_ready(&mut out);
    let answered = out.iter().filter(|e| detail(e).status == Some(200)).count();
    assert!(
        stayed > 200 && answered == stayed,
        "{stayed} stayed, {answered} answered"
    );
    // The last bytes of the budget, taken by default connections raising one table.
    for j in raising.. {
        if m.tables() == TABLES_MAX {
            break;
        }
        let mut block = Vec::new();
        hpack_int(
            &mut block,
            0x20,
            5,
            (TABLE_DEFAULT + TABLES_MAX - m.tables()).min(TABLE_MAX),
        );
        block.extend([0x82, 0x84]); // :method GET, :path /
        m.push(j, Direction::Write, &frame(1, 0x5, 1, &block));
    }
    // A new connection's tables do not fit: the one with the largest tables is lost for them.
    let lost = m.tracker.lost;
    let mut c = Conn::with(m.tracker);
    let (counted, each) = c.tracker.tables();
    assert_eq!(counted, each);
    assert!(
        counted <= TABLES_MAX - (2 * TABLE_MAX - 2 * TABLE_DEFAULT),
        "{counted}"
    );
    assert_eq!(c.tracker.lost, lost + 1);
    let w = c.request(1, &[(b":method", b"GET"), (b":path", b"/new")], true);
    c.write(&w, 3);
    let r = c.response(1, &[(b":status", b"200")], true);
    c.read(&r, 4);
    assert_eq!(
        detail(&c.done()[0]).target,
        "/new",
        "the new connection is followed"
    );
    // Every connection gone, by its process's exit or at shutdown: nothing is counted.
    for i in 0..CONNECTIONS_MAX / 2 {
        c.tracker.exited(Many::key(i).0, 5);
    }
    assert!(c.tracker.tables().0 < CONNECTIONS_MAX * 2 * TABLE_DEFAULT);
    c.tracker.flush(6);
    assert_eq!(c.tracker.tables(), (0, 0));
}

/// The decoder is allowed no larger table than counted: an update further in a block (which
/// RFC 7541 forbids, but `loona-hpack` would apply), or one larger than the last at its start,
/// loses the connection instead of raising the table behind the count.
#[test]
fn a_size_update_past_the_count_cannot_raise_a_table() {
    let request = |c: &mut Conn, path: &[u8]| c.client.encode([(&b":path"[..], path)]);
    let mut further_in = request(&mut Conn::new(), b"/");
    hpack_int(&mut further_in, 0x20, 5, TABLE_MAX);
    further_in.push(0x82);
    let mut larger_first = Vec::new();
    hpack_int(&mut larger_first, 0x20, 5, TABLE_MAX);
    hpack_int(&mut larger_first, 0x20, 5, TABLE_DEFAULT);
    larger_first.push(0x82);
    for block in [further_in, larger_first] {
        let mut c = Conn::new();
        c.write(&frame(1, 0x5, 1, &block), 2);
        assert_eq!(c.tracker.lost, 1);
        assert_eq!(c.tracker.tables(), (0, 0), "its count given back");
    }
}

/// Tables at their default size, and one raised to 16 KiB within the bound, decode as before.
#[test]
fn tables_within_the_bound_decode_as_before() {
    let mut c = Conn::new();
    assert_eq!(c.tracker.tables(), (2 * TABLE_DEFAULT, 2 * TABLE_DEFAULT));
    let w = c.request(1, &[(b":method", b"GET"), (b":path", b"/a")], true);
    c.write(&w, 1);
    let r = c.response(1, &[(b":status", b"200")], true);
    c.read(&r, 2);
    // A 10 000-byte value kept in a table raised to 16 KiB, then referenced by the next block.
    let big = vec![b'v'; 10_000];
    let fields = |path| {
        [
            (&b":method"[..], &b"GET"[..]),
            (b":path", path),
            (b"x-big", &big),
        ]
    };
    let w = raised(&mut c.client, 16 * 1024, &fields(b"/b"));
    c.write(&frame(1, 0x5, 3, &w), 3);
    let w = c.request(5, &fields(b"/c"), true);
    assert!(w.len() < 100, "x-big is a reference to the table");
    c.write(&w, 4);
    for stream in [3, 5] {
        let r = c.response(stream, &[(b":status", b"204")], true);
        c.read(&r, 5);
    }
    let done: Vec<_> = c
        .done()
        .iter()
        .map(|e| (detail(e).target.clone(), detail(e).status))
        .collect();
    assert_eq!(
        done,
        [
            ("/a".to_owned(), Some(200)),
            ("/b".to_owned(), Some(204)),
            ("/c".to_owned(), Some(204))
        ]
    );
    assert_eq!(c.tracker.lost, 0);
    let counted = 16 * 1024 + TABLE_DEFAULT;
    assert_eq!(c.tracker.tables(), (counted, counted));
}

#[test]
fn hpack_integers_and_size_updates_are_read_or_refused() {
    // RFC 7541 C.1: 10 and 1337 with a 5-bit prefix, 42 with an 8-bit one.
    assert_eq!(read_int(&[0x0a], 5), Some((10, 1)));
    assert_eq!(read_int(&[0xff, 0x9a, 0x0a, 0x82], 5), Some((1337, 3)));
    assert_eq!(read_int(&[0x2a], 8), Some((42, 1)));
    let largest = 31 + (127 << 21) + (127 << 14) + (127 << 7) + 127;
    for prefix in [5, 6, 7] {
        for v in [
            0,
            1,
            30,
            31,
            62,
            63,
            126,
            127,
            128,
            4096,
            65_536,
            1 << 21,
            largest,
        ] {
            // The bits above the prefix are another field's.
            let mut bytes = Vec::new();
            hpack_int(&mut bytes, 0xff << prefix, prefix, v);
            assert_eq!(read_int(&bytes, prefix), Some((v, bytes.len())), "{v}");
            // Cut short anywhere.
            for cut in 0..bytes.len() {
                assert_eq!(read_int(&bytes[..cut], prefix), None, "{v} cut at {cut}");
            }
        }
    }
    // Longer than five bytes: zeros padding a small value, or a value past 2^28.
    assert_eq!(read_int(&[0x1f, 0x80, 0x80, 0x80, 0x80, 0x00], 5), None);
    assert_eq!(
        read_int(&[0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f], 5),
        None
    );
    let mut past = Vec::new();
    hpack_int(&mut past, 0, 5, largest + 1);
    assert_eq!((past.len(), read_int(&past, 5)), (6, None));
    // Size updates at the start of a block, and only there.
    let updates = |sizes: &[usize], rest: &[u8]| {
        let mut block = Vec::new();
        for &size in sizes {
            hpack_int(&mut block, 0x20, 5, size);
        }
        block.extend(rest);
        block
    };
    assert_eq!(size_after(&[], TABLE_DEFAULT), Some(TABLE_DEFAULT));
    assert_eq!(size_after(&[0x82, 0x20, 0x84], 100), Some(100));
    assert_eq!(size_after(&updates(&[16_384], &[0x82]), 100), Some(16_384));
    assert_eq!(
        size_after(&updates(&[0, TABLE_MAX], &[0x82]), 100),
        Some(TABLE_MAX)
    );
    assert_eq!(size_after(&updates(&[TABLE_MAX + 1], &[0x82]), 100), None);
    assert_eq!(size_after(&updates(&[0, 1 << 27], &[]), 100), None);
    assert_eq!(size_after(&[0x3f], 100), None, "cut short");
    assert_eq!(size_after(&[0x3f, 0x80, 0x80, 0x80, 0x80, 0x00], 100), None);
}

//! An exporter's persistent queue (`sending_queue.storage`): a write-ahead log on disk, so
//! that what the queue accepted survives `kill -9` and is sent after the next start.
//!
//! Layout of a queue's directory (`0700`): segments `<id>.wal`, each a sequence of records
//! `[u32 length][u32 CRC-32 of kind and payload][u8 kind][payload: the OTLP export request,
//! protobuf]` (little endian), and `ack`: the position (segment, offset) of the first record
//! not yet delivered, replaced atomically (write, rename) after each export.
//!
//! Delivery is at least once: a record is acknowledged after its export ended (delivered, or
//! dropped as the in-memory queue drops: not retryable, retries exhausted); a crash between
//! the export and the `ack` update sends that record again. Several records may be out at once
//! and end in any order: `ack` only moves past a record once every record before it ended, so
//! a restart sends again at most the records that were out. With `fsync: true` every append
//! and every `ack` update is `fdatasync`ed before going on (survives a power loss); without it
//! they are in the page cache, which survives the process's death but not the kernel's.
//!
//! At open, records after `ack` are replayed; a last record cut short (a crash mid-write) is
//! cut off. The queue holds at most `max_bytes` on disk: a full queue makes its writer wait,
//! which holds the pipeline back as the in-memory queue does.

use std::{
    collections::{BTreeSet, VecDeque},
    fs::{self, File},
    io::{self, Read as _, Seek as _, SeekFrom, Write as _},
    os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
    sync::{Condvar, Mutex, MutexGuard, PoisonError},
};

use opentelemetry_proto::tonic::collector::{
    logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest,
    trace::v1::ExportTraceServiceRequest,
};
use prost::Message as _;
use runbom_otlp::signal::{Signal, SignalKind};
use tokio::sync::Notify;

/// Bytes before a record's payload: length, CRC, kind.
const HEADER: u64 = 9;

/// Where a record starts (or the log ends).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    segment: u64,
    offset: u64,
}

/// A persistent queue. Its methods do file I/O: call them from blocking tasks.
pub struct Wal {
    dir: PathBuf,
    fsync: bool,
    max_bytes: u64,
    segment_bytes: u64,
    state: Mutex<State>,
    /// The writer waits here for room.
    freed: Condvar,
    /// The reader waits here for records.
    appended: Notify,
}

struct State {
    /// Segments on disk, oldest first: id and length.
    segments: VecDeque<(u64, u64)>,
    writer: File,
    reader: Option<(u64, File)>,
    /// The next record to hand out.
    read: Pos,
    /// The first record not acknowledged.
    ack: Pos,
    /// Records appended and not acknowledged, and their items (spans, log records, points).
    pending: u64,
    pending_items: u64,
    /// Records handed out and not acknowledged (the position after each) ...
    out: BTreeSet<Pos>,
    /// ... and those acknowledged while an earlier one was still out.
    ended: BTreeSet<Pos>,
    closed: bool,
}

impl State {
    fn end(&self) -> Pos {
        let (segment, offset) = self.segments.back().copied().unwrap_or((1, 0));
        Pos { segment, offset }
    }

    fn bytes(&self) -> u64 {
        self.segments.iter().map(|(_, len)| len).sum()
    }
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.wal"))
}

fn kind_of(signal: &Signal) -> (u8, Vec<u8>) {
    // Kernel log records and spans are written as the request they make, and read back as one.
    let kind = match signal.kind() {
        SignalKind::Traces => 0,
        SignalKind::Logs => 1,
        SignalKind::Metrics => 2,
    };
    (kind, signal.to_protobuf())
}

fn decode(kind: u8, payload: &[u8]) -> Option<Signal> {
    Some(match kind {
        0 => Signal::Traces(ExportTraceServiceRequest::decode(payload).ok()?),
        1 => Signal::Logs(ExportLogsServiceRequest::decode(payload).ok()?),
        2 => Signal::Metrics(ExportMetricsServiceRequest::decode(payload).ok()?),
        _ => return None,
    })
}

fn crc(kind: u8, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&[kind]);
    h.update(payload);
    h.finalize()
}

/// Reads the record at the file's position: `None` at a clean end, or when what is there is
/// not a whole, intact record.
fn read_record(file: &mut File) -> io::Result<Option<(Signal, u64)>> {
    let mut head = [0_u8; HEADER as usize];
    match file.read_exact(&mut head) {
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        r => r?,
    }
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    let sum = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    let mut payload = vec![0_u8; len as usize];
    match file.read_exact(&mut payload) {
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        r => r?,
    }
    if crc(head[8], &payload) != sum {
        return Ok(None);
    }
    Ok(decode(head[8], &payload).map(|s| (s, HEADER + u64::from(len))))
}

impl Wal {
    /// Opens (or creates) the queue in `dir`; returns it and the number of records it holds
    /// from before (to be sent again).
    pub fn open(dir: &Path, fsync: bool, max_bytes: u64) -> io::Result<(Self, u64)> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let mut ids: Vec<u64> = fs::read_dir(dir)?
            .filter_map(|e| {
                let name = e.ok()?.file_name();
                name.to_str()?.strip_suffix(".wal")?.parse().ok()
            })
            .collect();
        ids.sort_unstable();
        let mut ack = read_ack(dir)?.unwrap_or(Pos {
            segment: ids.first().copied().unwrap_or(1),
            offset: 0,
        });
        let mut segments = VecDeque::new();
        let (mut pending, mut pending_items) = (0, 0);
        for id in ids {
            let path = segment_path(dir, id);
            if id < ack.segment {
                fs::remove_file(&path)?;
                continue;
            }
            // Keep the intact records; what follows the last one (a write cut short) goes.
            let mut file = File::options().read(true).write(true).open(&path)?;
            let mut end = 0;
            while let Some((signal, len)) = read_record(&mut file)? {
                if id > ack.segment || end >= ack.offset {
                    pending += 1;
                    pending_items += signal.item_count() as u64;
                }
                end += len;
            }
            if file.metadata()?.len() != end {
                tracing::warn!(
                    file = %path.display(),
                    "persistent queue: cutting off an incomplete last record (a write interrupted by a crash)"
                );
                file.set_len(end)?;
            }
            segments.push_back((id, end));
        }
        if segments.is_empty() {
            // Nothing left (or only what was delivered): start a fresh segment after it.
            let id = if ack.offset == 0 {
                ack.segment
            } else {
                ack.segment + 1
            };
            ack = Pos {
                segment: id,
                offset: 0,
            };
            segments.push_back((id, 0));
        }
        let (last, _) = *segments.back().unwrap_or(&(1, 0));
        let writer = File::options()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(segment_path(dir, last))?;
        let wal = Self {
            dir: dir.to_owned(),
            fsync,
            max_bytes,
            segment_bytes: (max_bytes / 8).clamp(64 << 10, 16 << 20),
            state: Mutex::new(State {
                segments,
                writer,
                reader: None,
                read: ack,
                ack,
                pending,
                pending_items,
                out: BTreeSet::new(),
                ended: BTreeSet::new(),
                closed: false,
            }),
            freed: Condvar::new(),
            appended: Notify::new(),
        };
        Ok((wal, pending))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The queue's directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Records appended and not yet acknowledged.
    #[must_use]
    pub fn pending(&self) -> u64 {
        self.lock().pending
    }

    /// Items (spans, log records, data points) not yet acknowledged, and the bytes of the log
    /// on disk (what its bound counts).
    #[must_use]
    pub fn level(&self) -> (u64, u64) {
        let state = self.lock();
        (state.pending_items, state.bytes())
    }

    /// Appends `signal` once there is room (a record larger than the whole queue goes alone,
    /// into an empty one).
    pub fn append(&self, signal: &Signal) -> io::Result<()> {
        let items = signal.item_count() as u64;
        let (kind, payload) = kind_of(signal);
        let len = u32::try_from(payload.len())
            .map_err(|_| io::Error::other("request larger than 4 GiB"))?;
        let mut record = Vec::with_capacity(payload.len() + HEADER as usize);
        record.extend_from_slice(&len.to_le_bytes());
        record.extend_from_slice(&crc(kind, &payload).to_le_bytes());
        record.push(kind);
        record.extend_from_slice(&payload);
        let size = record.len() as u64;
        let mut state = self.lock();
        while state.pending > 0 && state.bytes() + size > self.max_bytes {
            state = self
                .freed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        let end = state.end();
        if end.offset >= self.segment_bytes {
            let id = end.segment + 1;
            state.writer = File::options()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(segment_path(&self.dir, id))?;
            state.segments.push_back((id, 0));
        }
        if let Err(e) = state.writer.write_all(&record) {
            // Whatever part was written is cut off, so the log stays readable.
            let end = state.end();
            let _ = state.writer.set_len(end.offset);
            return Err(e);
        }
        if self.fsync {
            state.writer.sync_data()?;
        }
        if let Some(last) = state.segments.back_mut() {
            last.1 += size;
        }
        state.pending += 1;
        state.pending_items += items;
        drop(state);
        self.appended.notify_one();
        Ok(())
    }

    /// Waits for the next record not yet handed out; `None` once the queue is closed and
    /// everything was handed out. Returns the record and the position after it (for
    /// [`Wal::ack`]).
    pub async fn next(self: &std::sync::Arc<Self>) -> io::Result<Option<(Signal, Pos)>> {
        loop {
            let wal = self.clone();
            let read = tokio::task::spawn_blocking(move || wal.read_next())
                .await
                .map_err(io::Error::other)??;
            match read {
                Read::Record(signal, pos) => return Ok(Some((signal, pos))),
                Read::Closed => return Ok(None),
                Read::Empty => self.appended.notified().await,
            }
        }
    }

    fn read_next(&self) -> io::Result<Read> {
        let mut state = self.lock();
        loop {
            let end = state.end();
            if state.read >= end {
                return Ok(if state.closed {
                    Read::Closed
                } else {
                    Read::Empty
                });
            }
            let seg_len = state
                .segments
                .iter()
                .find(|(id, _)| *id == state.read.segment)
                .map_or(0, |(_, len)| *len);
            if state.read.offset >= seg_len {
                // This segment is done: the next one.
                let next = state
                    .segments
                    .iter()
                    .map(|(id, _)| *id)
                    .find(|id| *id > state.read.segment)
                    .unwrap_or(end.segment);
                state.read = Pos {
                    segment: next,
                    offset: 0,
                };
                continue;
            }
            let Pos { segment, offset } = state.read;
            if state.reader.as_ref().is_none_or(|(id, _)| *id != segment) {
                state.reader = Some((segment, File::open(segment_path(&self.dir, segment))?));
            }
            let Some((_, file)) = state.reader.as_mut() else {
                continue;
            };
            file.seek(SeekFrom::Start(offset))?;
            if let Some((signal, len)) = read_record(file)? {
                state.read.offset += len;
                let end = state.read;
                state.out.insert(end);
                return Ok(Read::Record(signal, end));
            }
            // Damaged on disk (not by a crash: that is cut off at open): skip the segment.
            tracing::error!(
                segment = %segment_path(&self.dir, segment).display(),
                offset,
                "persistent queue: a damaged record; skipping the rest of this segment"
            );
            state.read.offset = seg_len;
        }
    }

    /// Marks the record that ends at `pos` (as [`Wal::next`] returned it), of `items` items,
    /// delivered. Once no earlier record is still out, the `ack` file moves past it (and past
    /// the later ones already delivered), and the segments before go.
    pub fn ack(&self, pos: Pos, items: u64) -> io::Result<()> {
        let mut state = self.lock();
        state.pending = state.pending.saturating_sub(1);
        state.pending_items = state.pending_items.saturating_sub(items);
        state.out.remove(&pos);
        state.ended.insert(pos);
        let mut moved = None;
        while let Some(&first) = state.ended.first() {
            if state.out.first().is_some_and(|out| *out < first) {
                break;
            }
            state.ended.pop_first();
            moved = Some(first);
        }
        let Some(pos) = moved else {
            return Ok(());
        };
        state.ack = pos;
        write_ack(&self.dir, pos, self.fsync)?;
        while state
            .segments
            .front()
            .is_some_and(|(id, _)| *id < pos.segment)
        {
            if let Some((id, _)) = state.segments.pop_front() {
                fs::remove_file(segment_path(&self.dir, id))?;
            }
        }
        drop(state);
        self.freed.notify_all();
        Ok(())
    }

    /// No more appends: the reader ends once it has handed out what is there.
    pub fn close(&self) {
        self.lock().closed = true;
        self.appended.notify_one();
    }
}

impl crate::telemetry::DiskQueueLevel for Wal {
    fn level(&self) -> (u64, u64) {
        Wal::level(self)
    }

    fn capacity_bytes(&self) -> u64 {
        self.max_bytes
    }
}

enum Read {
    Record(Signal, Pos),
    Empty,
    Closed,
}

fn read_ack(dir: &Path) -> io::Result<Option<Pos>> {
    let bytes = match fs::read(dir.join("ack")) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let Ok(raw) = <[u8; 16]>::try_from(bytes.as_slice()) else {
        return Err(io::Error::other(format!(
            "{}: not a queue position ({} bytes)",
            dir.join("ack").display(),
            bytes.len()
        )));
    };
    let (segment, offset) = raw.split_at(8);
    Ok(Some(Pos {
        segment: u64::from_le_bytes(segment.try_into().unwrap_or_default()),
        offset: u64::from_le_bytes(offset.try_into().unwrap_or_default()),
    }))
}

fn write_ack(dir: &Path, pos: Pos, fsync: bool) -> io::Result<()> {
    let tmp = dir.join("ack.tmp");
    let mut file = File::options()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(&pos.segment.to_le_bytes())?;
    file.write_all(&pos.offset.to_le_bytes())?;
    if fsync {
        file.sync_data()?;
    }
    fs::rename(&tmp, dir.join("ack"))?;
    if fsync {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;

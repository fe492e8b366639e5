//! Snapshots: the store written to one file and read back at start-up, so a restart keeps the
//! cache warm (docs/SNAPSHOT.md has the format and what a snapshot promises).
//!
//! Saving copies one shard at a time ([`Store::shard_image`]: the shard's lock is held only for
//! a memcpy of its records) and encodes the copy off the request path, so the server keeps
//! serving; each shard's records are a point-in-time view, and shards are taken one after
//! another. Each shard becomes one *run* of blocks in LRU order (oldest first). Loading merges
//! the runs by last use and restores records oldest first, which rebuilds the LRU order across
//! shards and lets `--max-keys`/`--max-memory` evict the least recently used first. Loading
//! needs one block per run in memory, saving one shard image: never the whole data twice.
//!
//! Files are written to `PATH.tmp` in the same directory, fsynced, renamed over `PATH` and the
//! directory fsynced, so a crash at any moment leaves either the old or the new snapshot.
//!
//! Synchronous and tokio-free: saves run on their own threads; the server decides when.

pub mod format;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::{Condvar, Mutex};
use tracing::{error, info, warn};

use crate::store::Store;
use format::{
    BLOCK_HEADER, CODEC_LZ4, CODEC_RAW, Deltas, FormatError, MAX_HEADER, RecordIn, RecordOut,
    RunInfo, TAIL, Trailer,
};

/// Uncompressed bytes a block holds before it is closed (less with many shards; see
/// [`block_target`]).
const BLOCK_TARGET: usize = 64 * 1024;
/// Bytes of encoded output buffered before a write to the file.
const WRITE_BUFFER: usize = 1 << 20;
/// Whether blocks are LZ4-compressed (kept raw anyway when that is not smaller); see the
/// measurements in docs/SNAPSHOT.md.
pub const COMPRESS: bool = true;

/// The block size for a store of `shards` shards: a loader holds one block per run at once,
/// so many shards get smaller blocks (at most about 16 MiB of blocks in flight).
fn block_target(shards: usize) -> usize {
    (16 << 20) / shards.max(1)
}

/// What a save wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SaveReport {
    /// Records written.
    pub keys: u64,
    /// File size.
    pub bytes: u64,
    /// Time from the first shard copy to the directory fsync.
    pub took: Duration,
}

/// A failed save: what it was doing, on which path, and the system's error.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {}: {source}", path.display())]
pub struct SaveError {
    /// "create", "write", "fsync", "rename to", ...
    pub action: &'static str,
    /// The file or directory concerned.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: io::Error,
}

/// What a load read and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Records in the file.
    pub records: u64,
    /// Records restored.
    pub loaded: u64,
    /// Records whose deadline passed while the server was down (not restored).
    pub expired: u64,
    /// Records the store refused (larger than `--max-memory` allows).
    pub refused: u64,
    /// Keys evicted during the load because the file held more than the limits allow.
    pub evicted: u64,
    /// File size.
    pub bytes: u64,
    /// Time the load took.
    pub took: Duration,
    /// When the snapshot was saved (unix ms, end of the save).
    pub saved_ms: u64,
    /// kvcache version that wrote it.
    pub writer: String,
}

/// Why a file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The bytes are not a valid snapshot (truncated, corrupted, foreign, other version).
    #[error("{0}")]
    Format(#[from] FormatError),
    /// The file could not be read.
    #[error("cannot read it: {0}")]
    Io(#[from] io::Error),
}

/// Random access to a snapshot's bytes: a file, or a slice (tests, fuzzing).
pub trait Source {
    /// Total length.
    fn len(&self) -> u64;
    /// Whether it is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Fills `buf` from `offset`; an error if the bytes are not all there.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
}

impl Source for [u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        match self.get(start..).and_then(|s| s.get(..buf.len())) {
            Some(s) => {
                buf.copy_from_slice(s);
                Ok(())
            }
            None => Err(io::ErrorKind::UnexpectedEof.into()),
        }
    }
}

struct FileSource {
    file: File,
    len: u64,
}

impl Source for FileSource {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }
}

/// Writes a snapshot of `store` to `out`, one shard at a time; `progress` counts records as
/// they are encoded (INFO's `current_save_keys_processed`). Returns the records and bytes
/// written.
pub fn write_to(
    store: &Store,
    out: &mut impl Write,
    progress: &AtomicU64,
) -> io::Result<(u64, u64)> {
    write_with(store, out, progress, COMPRESS)
}

/// [`write_to`] with compression chosen by the caller (for the measurements in
/// docs/SNAPSHOT.md: `examples/snapshot_measure.rs`).
#[doc(hidden)]
pub fn write_with(
    store: &Store,
    out: &mut impl Write,
    progress: &AtomicU64,
    compress: bool,
) -> io::Result<(u64, u64)> {
    let shards = store.shard_count();
    let mut w = Writer {
        out,
        buf: Vec::with_capacity(WRITE_BUFFER + BLOCK_TARGET * 2),
        offset: 0,
    };
    format::encode_header(now_ms(), shards as u32, &mut w.buf);
    let mut trailer = Trailer::default();
    let mut blocks = Blocks {
        raw: Vec::new(),
        packed: Vec::new(),
        records: 0,
        deltas: Deltas::default(),
        target: block_target(shards).clamp(4096, BLOCK_TARGET),
        flushed: 0,
        compress,
    };
    for i in 0..shards {
        let image = store.shard_image(i);
        let mut run = RunInfo {
            offset: w.pos(),
            ..RunInfo::default()
        };
        let mut failed = None;
        image.for_each_oldest_first(|r| {
            if failed.is_some() {
                return;
            }
            let rec = RecordIn {
                key: r.key,
                value: r.value,
                expires_at: r.expires_at,
                flags: r.flags,
                cas: r.cas,
                last_used: r.last_used,
            };
            let need = format::max_record_len(r.key.len(), r.value.len());
            if blocks.records > 0 && blocks.raw.len() + need > blocks.target {
                if let Err(e) = blocks.close(&mut w, &mut run) {
                    failed = Some(e);
                    return;
                }
                progress.fetch_add(blocks.flushed, Relaxed);
            }
            blocks.push(&rec);
        });
        drop(image);
        if let Some(e) = failed {
            return Err(e);
        }
        blocks.close(&mut w, &mut run)?;
        progress.fetch_add(blocks.flushed, Relaxed);
        run.end = w.pos();
        trailer.records += run.records;
        trailer.blocks += run.blocks;
        trailer.runs.push(run);
    }
    // Taken after the last shard image, so it is later than every record's last use.
    trailer.ref_ticks = store.recency_now();
    trailer.finished_ms = now_ms();
    let at = w.pos();
    format::encode_trailer(&trailer, at, &mut w.buf);
    w.flush()?;
    Ok((trailer.records, w.offset))
}

/// Buffers encoded output and tracks the file offset.
struct Writer<'o, W: Write> {
    out: &'o mut W,
    buf: Vec<u8>,
    offset: u64,
}

impl<W: Write> Writer<'_, W> {
    fn pos(&self) -> u64 {
        self.offset + self.buf.len() as u64
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.write_all(&self.buf)?;
        self.offset += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }
}

/// The block being filled.
struct Blocks {
    raw: Vec<u8>,
    packed: Vec<u8>,
    records: u32,
    deltas: Deltas,
    target: usize,
    /// Records in the block most recently closed.
    flushed: u64,
    compress: bool,
}

impl Blocks {
    fn push(&mut self, r: &RecordIn<'_>) {
        format::encode_record(r, &mut self.deltas, &mut self.raw);
        self.records += 1;
    }

    /// Ends the current block (if it holds anything) and appends it to the output.
    fn close<W: Write>(&mut self, w: &mut Writer<'_, W>, run: &mut RunInfo) -> io::Result<()> {
        self.flushed = self.records as u64;
        if self.records == 0 {
            return Ok(());
        }
        let raw_len = u32::try_from(self.raw.len()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "a record is too large for the snapshot format (4 GiB per block)",
            )
        })?;
        let mut codec = CODEC_RAW;
        if self.compress {
            self.packed
                .resize(lz4_flex::block::get_maximum_output_size(self.raw.len()), 0);
            if let Ok(n) = lz4_flex::block::compress_into(&self.raw, &mut self.packed)
                && n < self.raw.len()
            {
                self.packed.truncate(n);
                codec = CODEC_LZ4;
            }
        }
        let payload = if codec == CODEC_LZ4 {
            &self.packed
        } else {
            &self.raw
        };
        format::encode_block(self.records, raw_len, codec, payload, &mut w.buf);
        run.records += self.records as u64;
        run.blocks += 1;
        self.raw.clear();
        self.records = 0;
        self.deltas = Deltas::default();
        if self.raw.capacity() > 4 * self.target {
            self.raw = Vec::new(); // grown for one huge record
            self.packed = Vec::new();
        }
        if w.buf.len() >= WRITE_BUFFER {
            w.flush()?;
        }
        Ok(())
    }
}

/// The temporary file a save writes before renaming it over `path`.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Saves `store` to `path` crash-safely: write `PATH.tmp`, fsync it, rename it over `path`,
/// fsync the directory. On any error the temporary file is removed and `path` is untouched.
pub fn save(store: &Store, path: &Path, progress: &AtomicU64) -> Result<SaveReport, SaveError> {
    let started = Instant::now();
    let tmp = temp_path(path);
    let fail = |action, p: &Path| {
        let p = p.to_path_buf();
        move |source| SaveError {
            action,
            path: p,
            source,
        }
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(fail("create", &tmp))?;
    let written = write_to(store, &mut file, progress)
        .map_err(fail("write", &tmp))
        .and_then(|r| file.sync_all().map(|_| r).map_err(fail("fsync", &tmp)));
    drop(file);
    let (keys, bytes) = match written {
        Ok(r) => r,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(fail("rename the new snapshot to", path)(e));
    }
    let dir = parent_dir(path);
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(fail("fsync the directory", dir))?;
    Ok(SaveReport {
        keys,
        bytes,
        took: started.elapsed(),
    })
}

/// Loads a snapshot file into `store` (see [`load_from`]).
pub fn load(store: &Store, path: &Path) -> Result<LoadReport, LoadError> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    load_from(store, &FileSource { file, len })
}

/// Loads a snapshot into `store`: checks the header, trailer and every block's checksum, and
/// restores records oldest first across all runs. On an error, records restored before it
/// stay in the store (the caller decides whether to flush them).
pub fn load_from<S: Source + ?Sized>(store: &Store, src: &S) -> Result<LoadReport, LoadError> {
    load_with(store, src, None)
}

/// [`load_from`] with the number of restoring threads chosen by the caller (`None`: by the
/// file's size), for the measurements in docs/SNAPSHOT.md.
#[doc(hidden)]
pub fn load_with<S: Source + ?Sized>(
    store: &Store,
    src: &S,
    threads: Option<usize>,
) -> Result<LoadReport, LoadError> {
    let started = Instant::now();
    let len = src.len();
    let evictions_before = store.stats().evictions;
    let mut head = vec![0u8; (len.min(MAX_HEADER as u64)) as usize];
    src.read_at(&mut head, 0)?;
    let header = format::decode_header(&head, len)?;
    let mut tail = [0u8; TAIL];
    if len >= TAIL as u64 {
        src.read_at(&mut tail, len - TAIL as u64)?;
    }
    let (at, crc) = format::decode_tail(&tail[..len.min(TAIL as u64) as usize], header.len, len)?;
    let mut body = vec![0u8; (len - TAIL as u64 - at) as usize];
    src.read_at(&mut body, at)?;
    let trailer = format::decode_trailer(&body, at, crc, &header)?;
    let mut report = LoadReport {
        records: trailer.records,
        bytes: len,
        saved_ms: trailer.finished_ms,
        writer: header.writer.clone(),
        ..LoadReport::default()
    };
    let runs: Vec<RunReader> = trailer
        .runs
        .iter()
        .filter(|r| r.records > 0)
        .map(|&info| RunReader {
            info,
            next: info.offset,
            block_at: info.offset,
            stored: Vec::new(),
            raw: Vec::new(),
            pos: 0,
            left: 0,
            deltas: Deltas::default(),
            cur: None,
            records: 0,
            blocks: 0,
        })
        .collect();
    let mut merge = Merge::new(runs, src)?;
    store.reserve(usize::try_from(trailer.records).unwrap_or(usize::MAX));
    let workers = threads.unwrap_or_else(|| restore_threads(trailer.records));
    let counts = if workers > 1 {
        restore_parallel(store, &mut merge, src, trailer.ref_ticks, workers)
    } else {
        restore_serial(store, &mut merge, src, trailer.ref_ticks)
    };
    store.end_reserve();
    let counts = counts?;
    report.loaded = counts.loaded;
    report.expired = counts.expired;
    report.refused = counts.refused;
    report.evicted = store.stats().evictions.saturating_sub(evictions_before);
    report.took = started.elapsed();
    Ok(report)
}

/// Restores every merged record on this thread, in exact LRU order.
fn restore_serial<S: Source + ?Sized>(
    store: &Store,
    merge: &mut Merge,
    src: &S,
    ref_ticks: u64,
) -> Result<Counts, LoadError> {
    let mut c = Counts::default();
    while let Some(r) = merge.next(src)? {
        let rec = r.cur.as_ref().expect("a merged run has a record");
        c.add(store.restore(
            &r.raw[rec.key.clone()],
            &r.raw[rec.value.clone()],
            rec.expires_at,
            rec.flags,
            rec.cas,
            ref_ticks.saturating_sub(rec.last_used),
        ));
    }
    Ok(c)
}

/// Files with fewer records load on one thread, in exact LRU order.
const PARALLEL_FROM: u64 = 100_000;
/// Records per lockstep batch of a parallel load: the LRU order is exact between batches and may
/// be shuffled only inside one (a span of a few milliseconds of history in a large cache).
const BATCH: usize = 4096;

/// Threads that restore a file of `records` records: one below [`PARALLEL_FROM`] or with fewer
/// than 4 CPUs (on 2 vCPUs, two restoring threads measured no faster than one: the store's insert
/// path waits on memory, and hyperthreads of one core share it); else one per CPU but one, at
/// most 4.
fn restore_threads(records: u64) -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if records < PARALLEL_FROM || cpus < 4 {
        return 1;
    }
    (cpus - 1).min(4)
}

/// What the restores of a load did.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    loaded: u64,
    expired: u64,
    refused: u64,
}

impl Counts {
    fn add(&mut self, r: Result<bool, crate::store::StoreError>) {
        match r {
            Ok(true) => self.loaded += 1,
            Ok(false) => self.expired += 1,
            Err(_) => self.refused += 1,
        }
    }
}

/// The runs merged oldest first: a heap of each run's next record by last use.
struct Merge {
    runs: Vec<RunReader>,
    heap: BinaryHeap<Reverse<(u64, usize)>>,
    /// The run whose record was handed out last (advanced on the next call).
    taken: Option<usize>,
}

impl Merge {
    fn new<S: Source + ?Sized>(mut runs: Vec<RunReader>, src: &S) -> Result<Merge, LoadError> {
        let mut heap = BinaryHeap::with_capacity(runs.len());
        for (i, r) in runs.iter_mut().enumerate() {
            if let Some(t) = r.advance(src)? {
                heap.push(Reverse((t, i)));
            }
        }
        Ok(Merge {
            runs,
            heap,
            taken: None,
        })
    }

    /// The run holding the next record in LRU order (its `cur`), or `None` at the end.
    fn next<S: Source + ?Sized>(&mut self, src: &S) -> Result<Option<&RunReader>, LoadError> {
        if let Some(i) = self.taken.take()
            && let Some(t) = self.runs[i].advance(src)?
        {
            self.heap.push(Reverse((t, i)));
        }
        Ok(self.heap.pop().map(|Reverse((_, i))| {
            self.taken = Some(i);
            &self.runs[i]
        }))
    }
}

/// One worker's share of a batch: records copied out of their blocks, in LRU order.
#[derive(Default)]
struct Share {
    bytes: Vec<u8>,
    items: Vec<(u32, u32, Option<u64>, u32, u64, u64)>,
}

/// Restores with `workers` threads while this one reads and merges. Records are dealt to
/// workers by a hash of the key (so one key always goes to the same worker, in order) in
/// batches of [`BATCH`]; a batch starts only when every worker has finished the one before, so
/// records of different batches are restored in LRU order and only records inside one batch
/// may be restored out of order (by a few milliseconds' worth of history).
fn restore_parallel<S: Source + ?Sized>(
    store: &Store,
    merge: &mut Merge,
    src: &S,
    ref_ticks: u64,
    workers: usize,
) -> Result<Counts, LoadError> {
    use std::sync::mpsc;
    std::thread::scope(|scope| {
        let (done_tx, done_rx) = mpsc::channel::<(Share, Counts)>();
        let mut to_workers = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (tx, rx) = mpsc::channel::<Share>();
            let done = done_tx.clone();
            to_workers.push(tx);
            scope.spawn(move || {
                for mut share in rx {
                    let mut c = Counts::default();
                    let mut at = 0usize;
                    for &(klen, vlen, exp, flags, cas, age) in &share.items {
                        let (k, v) = (klen as usize, vlen as usize);
                        let key = &share.bytes[at..at + k];
                        let value = &share.bytes[at + k..at + k + v];
                        at += k + v;
                        c.add(store.restore(key, value, exp, flags, cas, age));
                    }
                    share.bytes.clear();
                    share.items.clear();
                    if done.send((share, c)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(done_tx);
        let mut spare: Vec<Share> = (0..2 * workers).map(|_| Share::default()).collect();
        let mut total = Counts::default();
        let mut in_flight = 0usize;
        let result = loop {
            // Fill the next batch while the workers restore the previous one.
            let mut shares: Vec<Share> = (0..workers)
                .map(|_| spare.pop().unwrap_or_default())
                .collect();
            let mut n = 0;
            let filled = loop {
                if n == BATCH {
                    break Ok(());
                }
                match merge.next(src) {
                    Ok(Some(r)) => {
                        let rec = r.cur.as_ref().expect("a merged run has a record");
                        let (key, value) = (&r.raw[rec.key.clone()], &r.raw[rec.value.clone()]);
                        let share = &mut shares[crc32c::crc32c(key) as usize % workers];
                        share.bytes.extend_from_slice(key);
                        share.bytes.extend_from_slice(value);
                        share.items.push((
                            key.len() as u32,
                            value.len() as u32,
                            rec.expires_at,
                            rec.flags,
                            rec.cas,
                            ref_ticks.saturating_sub(rec.last_used),
                        ));
                        n += 1;
                    }
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e),
                }
            };
            // The previous batch must be complete before this one starts.
            for _ in 0..in_flight {
                let (share, c) = done_rx.recv().expect("workers outlive the batches");
                total.loaded += c.loaded;
                total.expired += c.expired;
                total.refused += c.refused;
                spare.push(share);
            }
            in_flight = 0;
            if let Err(e) = filled {
                break Err(e);
            }
            if n == 0 {
                break Ok(total);
            }
            for (tx, share) in to_workers.iter().zip(shares) {
                tx.send(share).expect("worker alive");
                in_flight += 1;
            }
        };
        drop(to_workers);
        result
    })
}

/// Reads one run's blocks in order and decodes its records one at a time.
struct RunReader {
    info: RunInfo,
    /// Offset of the next block.
    next: u64,
    /// Offset of the current block (for error messages).
    block_at: u64,
    stored: Vec<u8>,
    raw: Vec<u8>,
    pos: usize,
    /// Records left in the current block.
    left: u32,
    deltas: Deltas,
    cur: Option<RecordOut>,
    records: u64,
    blocks: u64,
}

impl RunReader {
    /// Moves to the next record; returns its last-use time, or `None` at the end of the run
    /// (after checking the run held what the trailer says).
    fn advance<S: Source + ?Sized>(&mut self, src: &S) -> Result<Option<u64>, LoadError> {
        let malformed = |what, offset| FormatError::Malformed { what, offset };
        if self.left == 0 {
            if self.next == self.info.end {
                if self.records != self.info.records || self.blocks != self.info.blocks {
                    return Err(malformed(
                        "run holds other counts than the trailer says",
                        self.info.offset,
                    )
                    .into());
                }
                self.cur = None;
                return Ok(None);
            }
            if self.blocks == self.info.blocks || self.info.end - self.next < BLOCK_HEADER as u64 {
                return Err(malformed(
                    "run holds other counts than the trailer says",
                    self.info.offset,
                )
                .into());
            }
            let mut h = [0u8; BLOCK_HEADER];
            src.read_at(&mut h, self.next)?;
            let b = format::decode_block_header(&h, self.next, self.info.end)?;
            self.stored.resize(b.stored_len as usize, 0);
            src.read_at(&mut self.stored, self.next + BLOCK_HEADER as u64)?;
            format::open_block(&h, &b, &self.stored, self.next, &mut self.raw)?;
            if self.stored.capacity() > 4 * BLOCK_TARGET {
                self.stored = Vec::new(); // grown for one huge record
            }
            self.block_at = self.next;
            self.next += (BLOCK_HEADER + b.stored_len as usize) as u64;
            self.pos = 0;
            self.left = b.records;
            self.deltas = Deltas::default();
            self.blocks += 1;
        }
        let rec = format::decode_record(&self.raw, &mut self.pos, &mut self.deltas)
            .map_err(|what| malformed(what, self.block_at))?;
        self.left -= 1;
        self.records += 1;
        if self.left == 0 && self.pos != self.raw.len() {
            return Err(malformed("block has bytes after its last record", self.block_at).into());
        }
        let t = rec.last_used;
        self.cur = Some(rec);
        Ok(Some(t))
    }
}

/// What happened to the snapshot file at start-up.
#[derive(Debug)]
pub enum Startup {
    /// There was no file: the cache starts empty.
    NoFile,
    /// The file was loaded.
    Loaded(LoadReport),
    /// The file was bad: moved aside, and the cache starts empty.
    MovedAside {
        /// What was wrong.
        error: FormatError,
        /// Where the file is now.
        to: PathBuf,
    },
}

/// Why the server must not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The file exists but cannot be read (permissions, I/O error): refusing to start keeps it
    /// from being overwritten by the next save.
    #[error("cannot read {}: {source}", path.display())]
    Unreadable {
        /// The snapshot file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The file is bad and `--snapshot-strict` is set; it is left where it is.
    #[error("{} is not a usable snapshot: {error} (--snapshot-strict: refusing to start; move the file away to start empty)", path.display())]
    Strict {
        /// The snapshot file.
        path: PathBuf,
        /// What is wrong.
        error: FormatError,
    },
    /// The file is bad and could not be moved aside.
    #[error("{} is not a usable snapshot ({error}) and cannot be moved aside: {source}", path.display())]
    CannotMoveAside {
        /// The snapshot file.
        path: PathBuf,
        /// What is wrong with it.
        error: FormatError,
        /// Why the rename failed.
        source: io::Error,
    },
}

/// Start-up: removes a temporary file left by a save that was killed, then loads `path` if
/// it exists. A bad file is moved to `PATH.corrupt-<UTC time>` and the store emptied, unless
/// `strict`; an unreadable one is an error either way.
pub fn load_at_startup(
    store: &Arc<Store>,
    path: &Path,
    strict: bool,
) -> Result<Startup, StartupError> {
    let tmp = temp_path(path);
    if fs::symlink_metadata(&tmp).is_ok_and(|m| m.is_file()) {
        match fs::remove_file(&tmp) {
            Ok(()) => {
                info!(file = %tmp.display(), "removed the unfinished file of an interrupted save")
            }
            Err(e) => {
                warn!(file = %tmp.display(), "cannot remove the unfinished file of an interrupted save: {e}")
            }
        }
    }
    let unreadable = |source| StartupError::Unreadable {
        path: path.to_path_buf(),
        source,
    };
    match load(store, path) {
        Ok(r) => Ok(Startup::Loaded(r)),
        Err(LoadError::Io(e)) if e.kind() == io::ErrorKind::NotFound => Ok(Startup::NoFile),
        Err(LoadError::Io(e)) => {
            store.flush(false);
            Err(unreadable(e))
        }
        Err(LoadError::Format(error)) => {
            store.flush(false);
            if strict {
                return Err(StartupError::Strict {
                    path: path.to_path_buf(),
                    error,
                });
            }
            match move_aside(path) {
                Ok(to) => Ok(Startup::MovedAside { error, to }),
                Err(source) => Err(StartupError::CannotMoveAside {
                    path: path.to_path_buf(),
                    error,
                    source,
                }),
            }
        }
    }
}

/// Renames a bad snapshot to `PATH.corrupt-<UTC time>` without ever replacing an existing
/// file (a hard link refuses to; `-1`, `-2` ... are added if the name is taken).
fn move_aside(path: &Path) -> io::Result<PathBuf> {
    let stamp = utc_stamp(SystemTime::now());
    for n in 0..1000 {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".corrupt-{stamp}"));
        if n > 0 {
            name.push(format!("-{n}"));
        }
        let to = PathBuf::from(name);
        match fs::hard_link(path, &to) {
            Ok(()) => {
                fs::remove_file(path)?;
                return Ok(to);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            // A filesystem without hard links: rename, having checked the name is free.
            Err(_) if fs::symlink_metadata(&to).is_err() => {
                fs::rename(path, &to)?;
                return Ok(to);
            }
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other(
        "too many moved-aside snapshots with the same time",
    ))
}

/// `YYYYMMDDTHHMMSSZ` for `t`.
fn utc_stamp(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let (days, rem) = (secs / 86400, secs % 86400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + (month <= 2) as i64;
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

fn now_secs() -> u64 {
    now_ms() / 1000
}

/// Why a save was not started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// No `--snapshot-file` is set.
    Off,
    /// A save is running.
    InProgress,
}

/// What INFO persistence and LASTSAVE show.
#[derive(Debug, Clone, Default)]
pub struct Status {
    /// Whether a save is running.
    pub in_progress: bool,
    /// Seconds the running save has taken so far.
    pub current_secs: Option<u64>,
    /// Records the running save has encoded.
    pub current_keys: u64,
    /// Keys in the store when the running save began.
    pub current_total: u64,
    /// Unix seconds of the last successful save (or of start-up, as Redis does).
    pub last_save_unix: u64,
    /// Whether the last save succeeded (true before any).
    pub last_ok: bool,
    /// The last failure's message.
    pub last_error: Option<String>,
    /// Duration of the last save, if any ran.
    pub last_secs: Option<u64>,
    /// Records and bytes of the last successful save.
    pub last_keys: u64,
    /// File size of the last successful save.
    pub last_bytes: u64,
    /// Successful saves since start.
    pub saves: u64,
    /// Failed saves since start.
    pub failures: u64,
    /// Writes since the last successful save began.
    pub changes: u64,
    /// What the start-up load did, if a file was loaded.
    pub load: Option<LoadReport>,
}

#[derive(Debug, Default)]
struct State {
    busy: bool,
    started: Option<(Instant, u64)>,
    last_save_unix: u64,
    last_error: Option<String>,
    last_took: Option<Duration>,
    last_keys: u64,
    last_bytes: u64,
    saves: u64,
    failures: u64,
    /// The write counter's value when the last successful save began.
    changes_at_save: u64,
    load: Option<LoadReport>,
}

/// The server's snapshot settings and save state, shared by SAVE/BGSAVE/LASTSAVE/INFO, the
/// periodic saver and shutdown. At most one save runs at a time.
#[derive(Debug)]
pub struct Snapshots {
    path: Option<PathBuf>,
    state: Mutex<State>,
    idle: Condvar,
    /// Write commands executed since start (connections add theirs once per batch).
    changes: AtomicU64,
    progress: AtomicU64,
}

impl Snapshots {
    /// Snapshot state for `path` (`None`: snapshots off; SAVE answers an error).
    pub fn new(path: Option<PathBuf>) -> Self {
        Snapshots {
            path,
            state: Mutex::new(State {
                last_save_unix: now_secs(),
                ..State::default()
            }),
            idle: Condvar::new(),
            changes: AtomicU64::new(0),
            progress: AtomicU64::new(0),
        }
    }

    /// The snapshot file, if snapshots are on.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Counts `n` writes (for `rdb_changes_since_last_save` and the periodic saver).
    #[inline]
    pub fn add_changes(&self, n: u64) {
        self.changes.fetch_add(n, Relaxed);
    }

    /// Writes since the last successful save began.
    pub fn changes_since_save(&self) -> u64 {
        let base = self.state.lock().changes_at_save;
        self.changes.load(Relaxed).saturating_sub(base)
    }

    /// Records what the start-up load did (INFO reports it).
    pub fn record_load(&self, r: LoadReport) {
        let mut st = self.state.lock();
        st.last_save_unix = st.last_save_unix.max(r.saved_ms / 1000);
        st.load = Some(r);
    }

    /// The figures INFO persistence and LASTSAVE show.
    pub fn status(&self) -> Status {
        let st = self.state.lock();
        Status {
            in_progress: st.busy,
            current_secs: st.started.map(|(t, _)| t.elapsed().as_secs()),
            current_keys: if st.busy {
                self.progress.load(Relaxed)
            } else {
                0
            },
            current_total: st.started.map_or(0, |(_, n)| n),
            last_save_unix: st.last_save_unix,
            last_ok: st.last_error.is_none(),
            last_error: st.last_error.clone(),
            last_secs: st.last_took.map(|d| d.as_secs()),
            last_keys: st.last_keys,
            last_bytes: st.last_bytes,
            saves: st.saves,
            failures: st.failures,
            changes: self
                .changes
                .load(Relaxed)
                .saturating_sub(st.changes_at_save),
            load: st.load.clone(),
        }
    }

    /// Appends the snapshot figures in Prometheus's text format (nothing when snapshots are
    /// off), so a failing save can be alerted on: `kvcache_snapshot_last_save_ok 0`.
    pub fn prometheus(&self, out: &mut String) {
        use std::fmt::Write as _;
        if self.path.is_none() {
            return;
        }
        let st = self.status();
        let rows: [(&str, &str, &str, u64); 7] = [
            (
                "last_success_timestamp_seconds",
                "gauge",
                "Unix time of the last successful snapshot save (of start-up before any)",
                st.last_save_unix,
            ),
            (
                "last_save_ok",
                "gauge",
                "1 if the last snapshot save succeeded (or none ran yet), 0 if it failed",
                st.last_ok as u64,
            ),
            (
                "in_progress",
                "gauge",
                "1 while a snapshot save runs",
                st.in_progress as u64,
            ),
            (
                "saves_total",
                "counter",
                "Snapshot saves that succeeded since start",
                st.saves,
            ),
            (
                "save_failures_total",
                "counter",
                "Snapshot saves that failed since start",
                st.failures,
            ),
            (
                "last_save_bytes",
                "gauge",
                "Size of the last snapshot written",
                st.last_bytes,
            ),
            (
                "changes_since_last_save",
                "gauge",
                "Writes since the last successful snapshot save began",
                st.changes,
            ),
        ];
        for (name, kind, help, value) in rows {
            let _ = write!(
                out,
                "# HELP kvcache_snapshot_{name} {help}\n# TYPE kvcache_snapshot_{name} {kind}\nkvcache_snapshot_{name} {value}\n"
            );
        }
    }

    /// Claims the right to save (one at a time).
    fn begin(&self, store: &Store, wait: bool) -> Result<(PathBuf, u64), Refused> {
        let path = self.path.clone().ok_or(Refused::Off)?;
        let mut st = self.state.lock();
        while st.busy {
            if !wait {
                return Err(Refused::InProgress);
            }
            self.idle.wait(&mut st);
        }
        st.busy = true;
        st.started = Some((Instant::now(), store.len() as u64));
        self.progress.store(0, Relaxed);
        Ok((path, self.changes.load(Relaxed)))
    }

    /// Runs a claimed save and records its outcome.
    fn run(&self, store: &Store, path: &Path, changes: u64) -> Result<SaveReport, String> {
        let result = save(store, path, &self.progress);
        let mut st = self.state.lock();
        st.busy = false;
        st.started = None;
        let out = match result {
            Ok(r) => {
                st.last_save_unix = now_secs();
                st.last_error = None;
                st.last_took = Some(r.took);
                st.last_keys = r.keys;
                st.last_bytes = r.bytes;
                st.saves += 1;
                st.changes_at_save = changes;
                info!(
                    file = %path.display(),
                    keys = r.keys,
                    bytes = r.bytes,
                    took_ms = r.took.as_millis() as u64,
                    "snapshot saved"
                );
                Ok(r)
            }
            Err(e) => {
                let msg = e.to_string();
                error!("snapshot save failed: {msg}; the previous snapshot (if any) is unchanged");
                st.last_error = Some(msg.clone());
                st.failures += 1;
                Err(msg)
            }
        };
        drop(st);
        self.idle.notify_all();
        out
    }

    /// Starts a save on its own thread and returns at once; `done` gets the outcome (a report,
    /// or the error message) on that thread.
    pub fn save_in_background(
        self: &Arc<Self>,
        store: &Arc<Store>,
        done: impl FnOnce(Result<SaveReport, String>) + Send + 'static,
    ) -> Result<(), Refused> {
        let (path, changes) = self.begin(store, false)?;
        let (me, store) = (Arc::clone(self), Arc::clone(store));
        let spawned = std::thread::Builder::new()
            .name("kvcache-save".into())
            .spawn(move || {
                lower_priority();
                done(me.run(&store, &path, changes))
            });
        if let Err(e) = spawned {
            // Release the claim and report the failure like any other.
            let msg = format!("cannot start the save thread: {e}");
            let mut st = self.state.lock();
            st.busy = false;
            st.started = None;
            st.last_error = Some(msg.clone());
            st.failures += 1;
            drop(st);
            self.idle.notify_all();
            error!("snapshot save failed: {msg}");
        }
        Ok(())
    }

    /// Saves on the calling thread, first waiting for a save in progress to end (shutdown).
    pub fn save_now(&self, store: &Store) -> Result<SaveReport, String> {
        let (path, changes) = self
            .begin(store, true)
            .map_err(|_| "snapshots are off".to_string())?;
        self.run(store, &path, changes)
    }

    /// Saves every `every` while writes happened since the last save, on a thread that stops
    /// when the returned guard is dropped.
    pub fn start_periodic(self: &Arc<Self>, store: &Arc<Store>, every: Duration) -> Periodic {
        let (stop, rx) = std::sync::mpsc::channel::<()>();
        let (me, store) = (Arc::clone(self), Arc::clone(store));
        let handle = std::thread::Builder::new()
            .name("kvcache-snapshot-timer".into())
            .spawn(move || {
                lower_priority();
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(every) {
                    if me.changes_since_save() == 0 {
                        continue;
                    }
                    if let Ok((path, changes)) = me.begin(&store, false) {
                        let _ = me.run(&store, &path, changes);
                    }
                }
            })
            .expect("spawn the snapshot timer thread");
        Periodic {
            stop: Some(stop),
            handle: Some(handle),
        }
    }
}

/// Gives the calling thread (a background save) a lower CPU priority than the threads serving
/// requests (nice +5: a share, not starvation), so on a busy machine a save slows down rather
/// than the requests. Best effort: an error leaves the priority as it was.
fn lower_priority() {
    // SAFETY: gettid has no arguments; setpriority on PRIO_PROCESS with a thread id changes
    // only that thread's nice value on Linux.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 5);
    }
}

/// Keeps the periodic saver running; dropping it stops and joins the thread (a save in
/// progress finishes first).
pub struct Periodic {
    stop: Option<std::sync::mpsc::Sender<()>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Periodic {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests;

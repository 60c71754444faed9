//! Reading ahead of the database: a thread that opens the files the worker will ingest, parses,
//! validates and encodes their rows into binary COPY batches, and hands them over through a
//! bounded channel, chunk by chunk. The worker's own thread is left with the database work
//! (COPY, ledger), and the two overlap on two cores. Pure Rust: the thread never calls
//! PostgreSQL (a background worker must not), so all of this is tested with plain `cargo test`.
//!
//! The worker submits [`Job`]s and reads each job's [`Piece`]s in order with
//! [`Pipeline::next`]; a job it gives up on (a rolled-back chunk, a pause) is cancelled, and
//! whatever the thread already produced for it is thrown away unread.

use crate::pgcopy::CopyEncoder;
use crate::reader::{EventReader, OpenError, Outcome, RawSource, Resume};
use crate::shown::excerpt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

/// Read a file from `resume` (or its first data line), in chunks of about `chunk_bytes`.
#[derive(Debug, Clone)]
pub struct Job {
    pub path: PathBuf,
    pub resume: Option<Resume>,
    /// XXH3-64 of the file's bytes before `resume.byte`, as recorded with the commit
    /// ([`ChunkEnd::prefix_hash`]): if the file no longer starts with those bytes, the job ends
    /// with [`Piece::OpenFailed`]`(`[`OpenError::Changed`]`)` instead of appending another
    /// file's rows to the committed ones. `None`: no hash to compare (a commit recorded before
    /// hashes were); a file shorter than `resume.byte` is refused all the same.
    pub expect_prefix: Option<u64>,
    /// Longest record (bytes, line terminator excluded); a longer one is rejected and skipped.
    /// See [`EventReader::with_max_record_bytes`].
    pub max_record_bytes: u64,
    /// Modified less than `min_file_age` ago: an unterminated last line is not data yet.
    pub young: bool,
    pub chunk_bytes: u64,
    /// Most rows in one [`Piece::Batch`].
    pub batch_rows: usize,
    /// Stop after the first chunk (the job ends with its [`Piece::ChunkEnd`]).
    pub one_chunk: bool,
    /// A pipeline's file (any format, into any table) rather than an events file: how to read
    /// it and the target's columns. Its rows come as [`Piece::TextBatch`]es.
    pub generic: Option<Arc<GenericJob>>,
}

/// How to read a pipeline's files: its options (format, compression, mapping) and its target
/// table's columns.
#[derive(Debug, Clone, PartialEq)]
pub struct GenericJob {
    pub options: ingest_core::options::PipelineOptions,
    pub columns: Vec<ingest_core::mapping::TargetColumn>,
    /// The folders a file must really be in once open (`ecommerce_ingest.allowed_roots`, for a
    /// pipeline owned by a non-superuser); `None`: anywhere.
    pub roots: Option<Vec<std::path::PathBuf>>,
}

/// A pipeline's valid rows in COPY text format, all for the same column list: each row's end in
/// `data`, its line, and its raw text (for a row the database refuses).
pub struct TextRows {
    pub columns: Arc<[String]>,
    pub data: Vec<u8>,
    pub ends: Vec<usize>,
    pub lines: Vec<u64>,
    pub raws: Vec<String>,
}

impl TextRows {
    pub fn new(columns: Arc<[String]>) -> TextRows {
        TextRows {
            columns,
            data: Vec::new(),
            ends: Vec::new(),
            lines: Vec::new(),
            raws: Vec::new(),
        }
    }
    pub fn len(&self) -> usize {
        self.ends.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
    /// The bytes of rows `from..to`.
    pub fn slice(&self, from: usize, to: usize) -> &[u8] {
        let start = if from == 0 { 0 } else { self.ends[from - 1] };
        let end = if to == 0 { 0 } else { self.ends[to - 1] };
        &self.data[start..end]
    }
}

/// Valid rows, encoded for COPY with `source_file_id` 0 (set it with
/// [`CopyEncoder::set_source_file_id`]), with each row's line and byte range.
pub struct Rows {
    pub copy: CopyEncoder,
    pub lines: Vec<u64>,
    pub spans: Vec<(u64, u64)>,
}

impl Rows {
    /// An empty batch with room for `n` rows in `bytes` encoded bytes.
    fn with_capacity(n: usize, bytes: usize) -> Rows {
        Rows {
            copy: CopyEncoder::with_capacity(n, bytes),
            lines: Vec::with_capacity(n),
            spans: Vec::with_capacity(n),
        }
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
}

/// A row the contract refuses: its line, the column at fault, why, and its raw text.
#[derive(Debug, Clone, PartialEq)]
pub struct Reject {
    pub line: u64,
    pub column: Option<String>,
    pub reason: String,
    pub raw: String,
}

/// Where a chunk started and ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChunkEnd {
    pub start: Resume,
    /// Where the next chunk starts: after the last record read, or at a held line.
    pub resume: Resume,
    /// Line of the last record read in this chunk (`start.line` if none).
    pub last_line: u64,
    /// A young file's unterminated last line was left for later.
    pub held: bool,
    /// The reader reached the end of the file (what is there now).
    pub at_eof: bool,
    /// XXH3-64 of the file's bytes `[0, resume.byte)`: record it with the commit, and pass it
    /// back as [`Job::expect_prefix`] to resume at `resume`.
    pub prefix_hash: u64,
    /// XXH3-64 of the whole file, once it was read to the end. Equal to `prefix_hash` when
    /// `resume` is the end of the file (no trailing blank lines or held record).
    pub hash: Option<u64>,
}

impl ChunkEnd {
    /// Nothing more to read now: the job is over.
    pub fn last(&self) -> bool {
        self.at_eof || self.held
    }
}

/// Most characters of a [`Piece::ReadFailed`] text.
pub const READ_FAILED_MAX: usize = 1024;

/// What the thread was doing when a read failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadStep {
    Reading,
    /// Hashing the bytes before a chunk's end (its `prefix_hash`).
    Hashing,
}

/// Why the thread stopped reading a file in the middle (its text is [`Piece::ReadFailed`]).
#[derive(Debug)]
pub struct ReadError {
    pub step: ReadStep,
    pub path: PathBuf,
    pub error: std::io::Error,
}

impl std::fmt::Display for ReadError {
    /// What was being done, on which file, and the error, capped (an error's text is not ours
    /// to bound).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let doing = match self.step {
            ReadStep::Reading => "reading",
            ReadStep::Hashing => "hashing the committed bytes of",
        };
        let path = excerpt(&self.path.display().to_string(), 300);
        f.write_str(&excerpt(
            &format!("{doing} {path}: {}", self.error),
            READ_FAILED_MAX,
        ))
    }
}

impl std::error::Error for ReadError {}

fn read_failed(step: ReadStep, path: &Path, error: std::io::Error) -> ReadError {
    ReadError {
        step,
        path: path.to_path_buf(),
        error,
    }
}

/// What the thread produces for a job, in this order: `Opened` (or `OpenFailed`), then for
/// each chunk some `Batch`es and a `ChunkEnd`; `ReadFailed` ends a job early.
pub enum Piece {
    Opened {
        /// Header columns that are not in the contract (ignored).
        extra: Vec<String>,
        /// Reads the raw text of a row again, for a row the database refuses (an events
        /// file; a pipeline's rows carry their raw text).
        raw: Option<RawSource>,
    },
    OpenFailed(OpenError),
    Batch {
        rows: Rows,
        rejects: Vec<Reject>,
    },
    /// A pipeline's rows (see [`Job::generic`]).
    TextBatch {
        rows: TextRows,
        rejects: Vec<Reject>,
    },
    ChunkEnd(ChunkEnd),
    /// The keys of a pipeline's NDJSON file that map to no column, seen so far: sent before a
    /// chunk's end when the list grew in it (a CSV/TSV file's come with `Opened`).
    Extra(Vec<String>),
    /// A pipeline's file cannot be read past `end.resume` (a corrupt or truncated archive, an
    /// old enough file): the chunk ends there — what was read before the damage is ingested —
    /// and the file fails with `message`.
    Damaged {
        end: ChunkEnd,
        message: String,
    },
    /// The file could not be read further (an I/O error in the middle). The text names the
    /// file and the error, capped to [`READ_FAILED_MAX`] characters.
    ReadFailed(String),
}

impl Piece {
    /// No more pieces follow for this job.
    fn ends_job(&self, one_chunk: bool) -> bool {
        match self {
            Piece::OpenFailed(_) | Piece::ReadFailed(_) | Piece::Damaged { .. } => true,
            Piece::ChunkEnd(e) => one_chunk || e.last(),
            Piece::Opened { .. }
            | Piece::Batch { .. }
            | Piece::TextBatch { .. }
            | Piece::Extra(_) => false,
        }
    }
}

/// A submitted job, as the worker holds it.
pub struct Ticket {
    id: u64,
    one_chunk: bool,
    cancel: Arc<AtomicBool>,
    /// Its last piece was received.
    over: bool,
}

type Submitted = (u64, Job, Arc<AtomicBool>);

pub struct Pipeline {
    jobs: Option<mpsc::Sender<Submitted>>,
    /// Set when the pipeline is dropped: the thread abandons its current job.
    closing: Arc<AtomicBool>,
    pieces: mpsc::Receiver<(u64, Piece)>,
    next_id: u64,
    thread: Option<JoinHandle<()>>,
}

/// How the pipeline failed: its thread is gone (it panicked).
#[derive(Debug)]
pub struct Stopped;

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the file-reading thread stopped")
    }
}

impl Pipeline {
    /// Starts the thread. `depth`: pieces it may produce ahead of the worker (memory bound:
    /// about `depth` batches).
    pub fn start(depth: usize) -> std::io::Result<Pipeline> {
        let (job_tx, job_rx) = mpsc::channel::<Submitted>();
        let (piece_tx, piece_rx) = mpsc::sync_channel(depth.max(1));
        let closing = Arc::new(AtomicBool::new(false));
        let closing_t = closing.clone();
        let thread = std::thread::Builder::new()
            .name("ecommerce_ingest reader".into())
            .spawn(move || {
                for (id, job, cancel) in job_rx {
                    if !closing_t.load(Ordering::Relaxed) {
                        run(id, &job, &cancel, &closing_t, &piece_tx);
                    }
                }
            })?;
        Ok(Pipeline {
            jobs: Some(job_tx),
            closing,
            pieces: piece_rx,
            next_id: 0,
            thread: Some(thread),
        })
    }

    /// Queues a job; the thread starts on it once the jobs before it are done.
    pub fn submit(&mut self, job: Job) -> Result<Ticket, Stopped> {
        self.next_id += 1;
        let cancel = Arc::new(AtomicBool::new(false));
        let one_chunk = job.one_chunk;
        self.jobs
            .as_ref()
            .ok_or(Stopped)?
            .send((self.next_id, job, cancel.clone()))
            .map_err(|_| Stopped)?;
        Ok(Ticket {
            id: self.next_id,
            one_chunk,
            cancel,
            over: false,
        })
    }

    /// The next piece of `t`'s job; `Ok(None)` once its last piece was received. Pieces of
    /// jobs before it that were cancelled or not read to the end are dropped on the way.
    pub fn next(&mut self, t: &mut Ticket) -> Result<Option<Piece>, Stopped> {
        if t.over {
            return Ok(None);
        }
        loop {
            let (id, piece) = self.pieces.recv().map_err(|_| Stopped)?;
            if id < t.id {
                continue;
            }
            if id > t.id {
                // Cannot happen: a job's pieces all come before the next job's.
                t.over = true;
                return Err(Stopped);
            }
            if piece.ends_job(t.one_chunk) {
                t.over = true;
            }
            return Ok(Some(piece));
        }
    }

    /// False once the thread is gone (it panicked): start a new pipeline.
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Gives up on `t`'s job: the thread stops reading it at its next step; what it already
    /// produced is dropped by later calls to [`Pipeline::next`].
    pub fn cancel(&mut self, t: &mut Ticket) {
        t.cancel.store(true, Ordering::Relaxed);
        t.over = true;
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.closing.store(true, Ordering::Relaxed);
        self.jobs = None; // ends the thread's job loop
                          // Unblock a thread waiting to hand over a piece, then wait for it.
        while self.pieces.try_recv().is_ok() {}
        if let Some(t) = self.thread.take() {
            while !t.is_finished() {
                while self.pieces.try_recv().is_ok() {}
                std::thread::yield_now();
            }
            let _ = t.join();
        }
    }
}

/// The thread's work for one job. Returns early when the job is cancelled or the worker is
/// gone.
fn run(
    id: u64,
    job: &Job,
    cancel: &AtomicBool,
    closing: &AtomicBool,
    out: &mpsc::SyncSender<(u64, Piece)>,
) {
    let gone = || cancel.load(Ordering::Relaxed) || closing.load(Ordering::Relaxed);
    let send = |p: Piece| !gone() && out.send((id, p)).is_ok();
    if gone() {
        return;
    }
    if let Some(g) = &job.generic {
        crate::generic::run(job, g, &mut |p| send(p));
        return;
    }
    let mut reader = match EventReader::open_checked(&job.path, job.resume, job.expect_prefix) {
        Ok(r) => r.with_max_record_bytes(job.max_record_bytes),
        Err(e) => {
            send(Piece::OpenFailed(e));
            return;
        }
    };
    let raw = match reader.raw_source() {
        Ok(r) => r,
        Err(e) => {
            send(Piece::OpenFailed(OpenError::Io(e)));
            return;
        }
    };
    let extra = reader.header().extra_columns().to_vec();
    if !send(Piece::Opened {
        extra,
        raw: Some(raw),
    }) {
        return;
    }
    loop {
        let end = match chunk(&mut reader, job, &mut |p| send(p)) {
            Ok(Some(end)) => end,
            Ok(None) => return,
            Err(e) => {
                send(Piece::ReadFailed(e.to_string()));
                return;
            }
        };
        if !send(Piece::ChunkEnd(end)) || end.last() || job.one_chunk {
            return;
        }
    }
}

/// Reads one chunk, handing over full batches through `send`; `Ok(None)` if `send` refused.
fn chunk(
    reader: &mut EventReader,
    job: &Job,
    send: &mut dyn FnMut(Piece) -> bool,
) -> Result<Option<ChunkEnd>, ReadError> {
    let start = reader.position();
    let mut rows = Rows::with_capacity(0, 0);
    let mut rejects: Vec<Reject> = Vec::new();
    let mut held: Option<Resume> = None;
    let mut last_line = start.line;
    let batch_rows = job.batch_rows.max(1);
    loop {
        let rec = match reader.next_record() {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(e) => return Err(read_failed(ReadStep::Reading, &job.path, e)),
        };
        if !rec.terminated && job.young {
            // The producer may still be writing this line: not data yet.
            held = Some(Resume {
                byte: rec.start,
                line: rec.line,
            });
            break;
        }
        last_line = rec.line;
        let end = rec.end;
        match rec.outcome {
            Outcome::Valid(row) => {
                rows.copy.push(&row, 0, rec.line);
                rows.lines.push(rec.line);
                rows.spans.push((rec.start, end));
            }
            Outcome::Rejected { error, raw } => rejects.push(Reject {
                line: rec.line,
                column: error.column.map(str::to_string),
                reason: error.message,
                raw,
            }),
        }
        if rows.len() >= batch_rows || rejects.len() >= batch_rows {
            // The next batch of a big file is as big: allocate it at once, not by growing.
            let next = Rows::with_capacity(rows.len(), rows.copy.byte_len());
            let full = std::mem::replace(&mut rows, next);
            if !send(Piece::Batch {
                rows: full,
                rejects: std::mem::take(&mut rejects),
            }) {
                return Ok(None);
            }
        }
        if end - start.byte >= job.chunk_bytes {
            break;
        }
    }
    if (!rows.is_empty() || !rejects.is_empty()) && !send(Piece::Batch { rows, rejects }) {
        return Ok(None);
    }
    let at_eof = reader.at_eof();
    let resume = held.unwrap_or_else(|| reader.position());
    let prefix_hash = reader
        .prefix_hash(resume.byte)
        .map_err(|e| read_failed(ReadStep::Hashing, &job.path, e))?;
    Ok(Some(ChunkEnd {
        start,
        resume,
        last_line,
        held: held.is_some(),
        at_eof,
        prefix_hash,
        hash: reader.content_hash(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::header_line;
    use std::io::Write;

    fn line(i: usize) -> String {
        format!("u{i},view,p{i},Name {i},Books,1{i}.50,2024-05-01T12:00:00Z,s{i},mobile\n")
    }

    fn write(dir: &std::path::Path, name: &str, rows: usize, bad_every: usize) -> PathBuf {
        let p = dir.join(name);
        let mut f = std::fs::File::create(&p).unwrap();
        writeln!(f, "{}", header_line()).unwrap();
        for i in 0..rows {
            if bad_every > 0 && i % bad_every == bad_every - 1 {
                f.write_all(
                    format!("u{i},VIEW,p,n,c,1.00,2024-05-01T12:00:00Z,s,mobile\n").as_bytes(),
                )
                .unwrap();
            } else {
                f.write_all(line(i).as_bytes()).unwrap();
            }
        }
        p
    }

    fn job(path: PathBuf) -> Job {
        Job {
            path,
            resume: None,
            expect_prefix: None,
            max_record_bytes: crate::reader::MAX_RECORD_BYTES_DEFAULT,
            young: false,
            chunk_bytes: u64::MAX,
            batch_rows: 1000,
            one_chunk: false,
            generic: None,
        }
    }

    /// Every piece of one job: (valid rows, rejects, chunk ends, opened, failed).
    fn drain(p: &mut Pipeline, t: &mut Ticket) -> (u64, Vec<Reject>, Vec<ChunkEnd>, bool) {
        let (mut valid, mut rejects, mut ends, mut opened) = (0, vec![], vec![], false);
        while let Some(piece) = p.next(t).unwrap() {
            match piece {
                Piece::Opened { .. } => opened = true,
                Piece::Batch { rows, rejects: r } => {
                    valid += rows.len() as u64;
                    rejects.extend(r);
                }
                Piece::TextBatch { rows, rejects: r } => {
                    valid += rows.len() as u64;
                    rejects.extend(r);
                }
                Piece::ChunkEnd(e) => ends.push(e),
                Piece::Damaged { message, .. } => panic!("damaged: {message}"),
                Piece::Extra(e) => panic!("extra keys of an events file: {e:?}"),
                Piece::OpenFailed(e) => panic!("open failed: {e}"),
                Piece::ReadFailed(e) => panic!("read failed: {e}"),
            }
        }
        (valid, rejects, ends, opened)
    }

    #[test]
    fn rows_rejects_and_chunks_of_several_files_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), "a.csv", 2500, 10);
        let b = write(dir.path(), "b.csv", 30, 0);
        let mut p = Pipeline::start(2).unwrap();
        let mut ja = job(a.clone());
        ja.chunk_bytes = 100_000;
        let mut ta = p.submit(ja).unwrap();
        let mut tb = p.submit(job(b)).unwrap();
        let (valid, rejects, ends, opened) = drain(&mut p, &mut ta);
        assert!(opened);
        assert_eq!(valid, 2250);
        assert_eq!(rejects.len(), 250);
        assert_eq!(rejects[0].line, 11);
        assert_eq!(rejects[0].column.as_deref(), Some("event_type"));
        assert!(rejects[0].raw.starts_with("u9,VIEW,"));
        // Chunks follow each other without gaps, and the last one reaches the end.
        let size = std::fs::metadata(&a).unwrap().len();
        assert!(ends.len() > 1, "{} chunks", ends.len());
        for w in ends.windows(2) {
            assert_eq!(w[0].resume, w[1].start);
        }
        assert_eq!(ends.last().unwrap().resume.byte, size);
        assert!(ends.last().unwrap().at_eof);
        assert!(ends.last().unwrap().hash.is_some());
        assert!(ends[..ends.len() - 1].iter().all(|e| e.hash.is_none()));
        let (valid, rejects, ends, _) = drain(&mut p, &mut tb);
        assert_eq!((valid, rejects.len(), ends.len()), (30, 0, 1));
        assert_eq!(ends[0].last_line, 31);
    }

    #[test]
    fn a_cancelled_job_is_skipped_and_the_next_one_read() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), "a.csv", 20_000, 0);
        let b = write(dir.path(), "b.csv", 5, 0);
        let mut p = Pipeline::start(1).unwrap();
        let mut ja = job(a);
        ja.batch_rows = 100; // many pieces: the thread blocks on the full channel
        let mut ta = p.submit(ja).unwrap();
        let mut tb = p.submit(job(b)).unwrap();
        assert!(matches!(
            p.next(&mut ta).unwrap(),
            Some(Piece::Opened { .. })
        ));
        p.cancel(&mut ta);
        assert!(p.next(&mut ta).unwrap().is_none());
        let (valid, _, ends, opened) = drain(&mut p, &mut tb);
        assert!(opened);
        assert_eq!(valid, 5);
        assert_eq!(ends.len(), 1);
    }

    #[test]
    fn one_chunk_jobs_end_after_their_first_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), "a.csv", 3000, 0);
        let b = write(dir.path(), "b.csv", 3, 0);
        let mut p = Pipeline::start(4).unwrap();
        let mut ja = job(a.clone());
        ja.chunk_bytes = 10_000;
        ja.one_chunk = true;
        let mut ta = p.submit(ja).unwrap();
        let mut tb = p.submit(job(b)).unwrap();
        let (valid, _, ends, _) = drain(&mut p, &mut ta);
        assert_eq!(ends.len(), 1);
        assert!(!ends[0].last());
        assert!(valid > 0 && valid < 3000);
        let (valid_b, _, _, _) = drain(&mut p, &mut tb);
        assert_eq!(valid_b, 3);
        // The rest of the file, from where the chunk ended, as a new job.
        let mut jr = job(a);
        jr.resume = Some(ends[0].resume);
        let mut tr = p.submit(jr).unwrap();
        let (rest, _, ends2, _) = drain(&mut p, &mut tr);
        assert_eq!(valid + rest, 3000);
        assert_eq!(ends2[0].start, ends[0].resume);
    }

    #[test]
    fn young_files_hold_an_unterminated_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), "a.csv", 3, 0);
        let mut f = std::fs::OpenOptions::new().append(true).open(&a).unwrap();
        f.write_all(b"u9,view,p9,Name,Books,1.00,2024-05-01T12:00:00Z,s9,mob")
            .unwrap();
        let mut p = Pipeline::start(2).unwrap();
        let mut j = job(a.clone());
        j.young = true;
        let mut t = p.submit(j).unwrap();
        let (valid, rejects, ends, _) = drain(&mut p, &mut t);
        assert_eq!((valid, rejects.len()), (3, 0));
        assert!(ends[0].held);
        assert_eq!(ends[0].resume.line, 5);
        // Old enough: the same line is data (and refused: "mob" is no device type).
        let mut t = p.submit(job(a)).unwrap();
        let (valid, rejects, ends, _) = drain(&mut p, &mut t);
        assert_eq!((valid, rejects.len()), (3, 1));
        assert!(!ends[0].held && ends[0].at_eof);
    }

    #[test]
    fn open_failures_and_raw_text_after_the_reader_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Pipeline::start(2).unwrap();
        let mut t = p.submit(job(dir.path().join("missing.csv"))).unwrap();
        assert!(matches!(
            p.next(&mut t).unwrap(),
            Some(Piece::OpenFailed(OpenError::Io(_)))
        ));
        assert!(p.next(&mut t).unwrap().is_none());
        let a = write(dir.path(), "a.csv", 2, 0);
        let mut t = p.submit(job(a)).unwrap();
        let Some(Piece::Opened { raw, .. }) = p.next(&mut t).unwrap() else {
            panic!("not opened")
        };
        let Some(Piece::Batch { rows, .. }) = p.next(&mut t).unwrap() else {
            panic!("no batch")
        };
        drop(p);
        let (s, e) = rows.spans[1];
        assert_eq!(raw.unwrap().text(s, e), line(1).trim_end());
    }

    fn xxh3(bytes: &[u8]) -> u64 {
        use std::hash::Hasher;
        let mut h = twox_hash::XxHash3_64::default();
        h.write(bytes);
        h.finish()
    }

    /// The pieces of one job when it cannot be opened.
    fn open_failure(p: &mut Pipeline, j: Job) -> OpenError {
        let mut t = p.submit(j).unwrap();
        match p.next(&mut t).unwrap() {
            Some(Piece::OpenFailed(e)) => {
                assert!(
                    p.next(&mut t).unwrap().is_none(),
                    "nothing after OpenFailed"
                );
                e
            }
            Some(Piece::Opened { .. }) => panic!("opened, expected a failure"),
            _ => panic!("unexpected piece"),
        }
    }

    #[test]
    fn every_chunk_end_carries_the_hash_of_the_bytes_before_its_resume_point() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), "a.csv", 3000, 7);
        let bytes = std::fs::read(&a).unwrap();
        let mut p = Pipeline::start(2).unwrap();
        let mut j = job(a.clone());
        j.chunk_bytes = 20_000;
        let mut t = p.submit(j).unwrap();
        let (_, _, ends, _) = drain(&mut p, &mut t);
        assert!(ends.len() > 5, "{} chunks", ends.len());
        for e in &ends {
            assert_eq!(e.prefix_hash, xxh3(&bytes[..e.resume.byte as usize]));
        }
        let last = ends.last().unwrap();
        assert_eq!(last.resume.byte, bytes.len() as u64);
        assert_eq!(last.hash, Some(last.prefix_hash));
        assert_eq!(
            last.hash,
            Some(crate::reader::hash_file(&a).unwrap()),
            "the same hash as before: XXH3-64 of the whole file"
        );
    }

    #[test]
    fn trailing_blank_lines_are_in_the_whole_hash_only() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), "a.csv", 3, 0);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&a)
            .unwrap()
            .write_all(b"\n\r\n")
            .unwrap();
        let bytes = std::fs::read(&a).unwrap();
        let mut p = Pipeline::start(2).unwrap();
        let mut t = p.submit(job(a)).unwrap();
        let (_, _, ends, _) = drain(&mut p, &mut t);
        let e = ends.last().unwrap();
        assert!(e.at_eof);
        assert_eq!(e.resume.byte, bytes.len() as u64 - 3);
        assert_eq!(e.prefix_hash, xxh3(&bytes[..bytes.len() - 3]));
        assert_eq!(e.hash, Some(xxh3(&bytes)));
    }

    #[test]
    fn a_held_line_is_not_in_the_prefix_hash() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), "a.csv", 3, 0);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&a)
            .unwrap()
            .write_all(b"u9,view,p9,Name,Books,1.00")
            .unwrap();
        let bytes = std::fs::read(&a).unwrap();
        let mut p = Pipeline::start(2).unwrap();
        let mut j = job(a);
        j.young = true;
        let mut t = p.submit(j).unwrap();
        let (_, _, ends, _) = drain(&mut p, &mut t);
        let e = ends[0];
        assert!(e.held && !e.at_eof && e.hash.is_none());
        assert_eq!(e.resume.byte, bytes.len() as u64 - 26);
        assert_eq!(e.prefix_hash, xxh3(&bytes[..e.resume.byte as usize]));
    }

    /// Reads the first chunk of `a` as a one-chunk job: (valid rows, its end).
    fn first_chunk(p: &mut Pipeline, a: &Path) -> (u64, ChunkEnd) {
        let mut j = job(a.to_path_buf());
        j.chunk_bytes = 10_000;
        j.one_chunk = true;
        let mut t = p.submit(j).unwrap();
        let (valid, _, ends, _) = drain(p, &mut t);
        assert_eq!(ends.len(), 1);
        assert!(!ends[0].last());
        (valid, ends[0])
    }

    fn resumed(a: &Path, end: &ChunkEnd, expect: Option<u64>) -> Job {
        let mut j = job(a.to_path_buf());
        j.resume = Some(end.resume);
        j.expect_prefix = expect;
        j.chunk_bytes = 10_000;
        j
    }

    #[test]
    fn resuming_an_unchanged_file_checks_its_prefix_and_hashes_on() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), "a.csv", 3000, 0);
        let bytes = std::fs::read(&a).unwrap();
        let mut p = Pipeline::start(2).unwrap();
        let (first, end) = first_chunk(&mut p, &a);
        let mut t = p.submit(resumed(&a, &end, Some(end.prefix_hash))).unwrap();
        let (rest, _, ends, opened) = drain(&mut p, &mut t);
        assert!(opened);
        assert_eq!(first + rest, 3000);
        assert!(ends.len() > 1);
        assert_eq!(ends[0].start, end.resume);
        for e in &ends {
            assert_eq!(e.prefix_hash, xxh3(&bytes[..e.resume.byte as usize]));
        }
        let last = ends.last().unwrap();
        assert_eq!(last.hash, Some(crate::reader::hash_file(&a).unwrap()));
        assert_eq!(last.hash, Some(last.prefix_hash));
    }

    #[test]
    fn a_file_replaced_by_a_larger_different_one_is_not_resumed() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), "a.csv", 3000, 0);
        let mut p = Pipeline::start(2).unwrap();
        let (_, end) = first_chunk(&mut p, &a);
        // Another file under the same name: same header, other rows, and longer.
        let tmp = write(dir.path(), ".a.csv.tmp", 4000, 3);
        std::fs::rename(&tmp, &a).unwrap();
        let now = xxh3(&std::fs::read(&a).unwrap()[..end.resume.byte as usize]);
        match open_failure(&mut p, resumed(&a, &end, Some(end.prefix_hash))) {
            OpenError::Changed(c) => {
                assert_eq!(
                    c,
                    crate::hash::Changed::PrefixDiffers {
                        committed: end.resume.byte,
                        expected: end.prefix_hash,
                        found: now,
                    }
                );
                let msg = OpenError::Changed(c).to_string();
                assert!(
                    msg.contains(&format!(
                        "the first {} bytes no longer hash to {:016x} (now {now:016x})",
                        end.resume.byte, end.prefix_hash
                    )),
                    "{msg}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_truncated_file_is_not_resumed() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), "a.csv", 3000, 0);
        let mut p = Pipeline::start(2).unwrap();
        let (_, end) = first_chunk(&mut p, &a);
        let short = end.resume.byte - 10;
        std::fs::OpenOptions::new()
            .write(true)
            .open(&a)
            .unwrap()
            .set_len(short)
            .unwrap();
        for expect in [Some(end.prefix_hash), None] {
            match open_failure(&mut p, resumed(&a, &end, expect)) {
                OpenError::Changed(c) => assert_eq!(
                    c,
                    crate::hash::Changed::Shorter {
                        committed: end.resume.byte,
                        size: short,
                    },
                    "{expect:?}"
                ),
                other => panic!("{other:?}"),
            }
        }
        // Emptied: reported as changed, not as an empty file (which would count as done).
        std::fs::write(&a, b"").unwrap();
        assert!(matches!(
            open_failure(&mut p, resumed(&a, &end, Some(end.prefix_hash))),
            OpenError::Changed(crate::hash::Changed::Shorter { size: 0, .. })
        ));
    }

    #[test]
    fn the_same_prefix_with_rows_appended_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), "a.csv", 3000, 0);
        let mut p = Pipeline::start(2).unwrap();
        let (first, end) = first_chunk(&mut p, &a);
        let mut f = std::fs::OpenOptions::new().append(true).open(&a).unwrap();
        for i in 3000..3100 {
            f.write_all(line(i).as_bytes()).unwrap();
        }
        let mut t = p.submit(resumed(&a, &end, Some(end.prefix_hash))).unwrap();
        let (rest, _, ends, _) = drain(&mut p, &mut t);
        assert_eq!(first + rest, 3100);
        assert_eq!(
            ends.last().unwrap().hash,
            Some(crate::reader::hash_file(&a).unwrap())
        );
    }

    #[test]
    fn without_an_expected_hash_a_changed_file_is_resumed_unchecked() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), "a.csv", 3000, 0);
        let mut p = Pipeline::start(2).unwrap();
        let (first, end) = first_chunk(&mut p, &a);
        // Every row refused now (same length: "view" becomes "VIEW").
        let changed = std::fs::read_to_string(&a)
            .unwrap()
            .replace(",view,", ",VIEW,");
        std::fs::write(&a, changed).unwrap();
        let mut t = p.submit(resumed(&a, &end, None)).unwrap();
        let (valid, rejects, ends, opened) = drain(&mut p, &mut t);
        assert!(opened);
        assert_eq!(valid, 0);
        assert_eq!(first + rejects.len() as u64, 3000);
        assert_eq!(ends[0].start, end.resume);
        // The same change is caught with the hash.
        assert!(matches!(
            open_failure(&mut p, resumed(&a, &end, Some(end.prefix_hash))),
            OpenError::Changed(crate::hash::Changed::PrefixDiffers { .. })
        ));
    }

    #[test]
    fn the_record_cap_of_the_job_applies() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), "a.csv", 3, 0);
        // 344 bytes, and valid: the longest name and category the contract allows.
        let long = format!(
            "u,view,p,{},{},1.00,2024-05-01T12:00:00Z,s,mobile\n",
            "n".repeat(200),
            "c".repeat(100)
        );
        std::fs::OpenOptions::new()
            .append(true)
            .open(&a)
            .unwrap()
            .write_all(long.as_bytes())
            .unwrap();
        let mut p = Pipeline::start(2).unwrap();
        let mut j = job(a.clone());
        j.max_record_bytes = 200;
        let mut t = p.submit(j).unwrap();
        let (valid, rejects, _, _) = drain(&mut p, &mut t);
        assert_eq!((valid, rejects.len()), (3, 1));
        assert_eq!(rejects[0].line, 5);
        assert_eq!(
            rejects[0].reason,
            "the record is longer than 200 bytes (ecommerce_ingest.max_record_size): skipped up \
             to the next line break"
        );
        // The default cap lets it through (and then it is a valid row).
        let mut t = p.submit(job(a)).unwrap();
        let (valid, rejects, _, _) = drain(&mut p, &mut t);
        assert_eq!((valid, rejects.len()), (4, 0));
    }

    #[test]
    fn read_failures_are_capped() {
        let long = PathBuf::from(format!("/{}", "d".repeat(5000)));
        let e = || std::io::Error::other("x".repeat(5000));
        let msg = read_failed(ReadStep::Reading, &long, e()).to_string();
        assert!(msg.chars().count() <= READ_FAILED_MAX, "{}", msg.len());
        assert!(msg.starts_with("reading /ddd"), "{msg}");
        assert!(msg.ends_with('…'));
        let short = read_failed(ReadStep::Reading, Path::new("/in/a.csv"), e()).to_string();
        assert!(short.starts_with("reading /in/a.csv: xxx"), "{short}");
        let hashing = read_failed(ReadStep::Hashing, Path::new("/in/a.csv"), e()).to_string();
        assert!(
            hashing.starts_with("hashing the committed bytes of /in/a.csv: "),
            "{hashing}"
        );
    }

    #[test]
    fn dropping_the_pipeline_abandons_the_current_job() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), "a.csv", 200_000, 0);
        let mut p = Pipeline::start(1).unwrap();
        let mut j = job(a);
        j.batch_rows = 10;
        let mut t = p.submit(j).unwrap();
        assert!(matches!(
            p.next(&mut t).unwrap(),
            Some(Piece::Opened { .. })
        ));
        let started = std::time::Instant::now();
        drop(p);
        // Reading the whole file in batches of 10 rows would take far longer than this.
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }
}

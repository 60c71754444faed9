//! File-system notifications. The `notify` thread only records the names it saw (plain Rust
//! state) and writes a byte to a pipe; the worker's main loop waits on that pipe with
//! WaitLatchOrSocket. No PostgreSQL call ever happens on that thread.

use ecommerce_events::is_temporary_name;
use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{Event, EventKind, RecursiveMode, Watcher as _};
use std::collections::HashSet;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// What the notification thread saw since the last look.
#[derive(Default)]
pub struct Inbox {
    /// Names of entries created, written, renamed or removed.
    pub names: HashSet<String>,
    /// Events were lost (queue overflow, watcher error): only a full scan is safe.
    pub rescan: bool,
}

pub struct Watcher {
    _inner: notify::RecommendedWatcher,
    read_end: OwnedFd,
    inbox: Arc<Mutex<Inbox>>,
    pub dir: PathBuf,
    /// The folder's device and inode when the watch began: another folder created at the same
    /// path (deleted and made again, a volume mounted over it) is not watched by this one.
    pub identity: (u64, u64),
    /// The watched folder was removed, moved or unmounted (its inode may be reused by a new
    /// folder at the same path, so the identity alone cannot tell).
    lost: Arc<AtomicBool>,
}

/// Events that may mean a file to ingest appeared or grew. Our own reads, deletes and moves
/// out of the folder are ignored, so ingesting never wakes the worker again.
fn interesting(ev: &Event) -> bool {
    let kind_ok = match ev.kind {
        EventKind::Create(_) => true,
        EventKind::Modify(ModifyKind::Name(RenameMode::From)) => false,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Modify(_) => true,
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        _ => false,
    };
    kind_ok
        && ev.paths.iter().any(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| !is_temporary_name(n))
        })
}

/// Blocks every signal in the calling thread until dropped (threads spawned meanwhile keep
/// the full mask).
pub(super) struct BlockAllSignals(libc::sigset_t);

impl BlockAllSignals {
    pub(super) fn new() -> Self {
        // SAFETY: sigset_t is plain data (zeroed, then filled); pthread_sigmask only changes the
        // calling thread's mask and saves the old one for `drop`.
        unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut old);
            BlockAllSignals(old)
        }
    }
}

impl Drop for BlockAllSignals {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved by `new` on the same thread.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut()) };
    }
}

/// Why a folder cannot be watched (the worker then polls every trigger interval).
#[derive(Debug)]
pub enum WatchError {
    /// The pipe that wakes the worker could not be made.
    Pipe(std::io::Error),
    /// The folder cannot be looked at.
    Folder(std::io::Error),
    /// inotify refused (no more watches, an unsupported file system...).
    Notify(notify::Error),
}

impl std::fmt::Display for WatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WatchError::Pipe(e) => write!(f, "pipe2: {e}"),
            WatchError::Folder(e) => e.fmt(f),
            WatchError::Notify(e) => e.fmt(f),
        }
    }
}

impl Watcher {
    pub fn new(dir: &Path) -> Result<Watcher, WatchError> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: pipe2 writes two descriptors into the array it is given.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(WatchError::Pipe(std::io::Error::last_os_error()));
        }
        // SAFETY: both descriptors were just created and are owned by nothing else.
        let read_end = unsafe { OwnedFd::from_raw_fd(fds[0]) };
        let write_end = unsafe { OwnedFd::from_raw_fd(fds[1]) };
        let md = std::fs::metadata(dir).map_err(WatchError::Folder)?;
        let identity = (md.dev(), md.ino());
        let inbox = Arc::new(Mutex::new(Inbox::default()));
        let seen = Arc::clone(&inbox);
        let watched = dir.to_path_buf();
        let lost = Arc::new(AtomicBool::new(false));
        let lost_seen = Arc::clone(&lost);
        // The notification thread must never run a signal handler (those call PostgreSQL):
        // it is created with every signal blocked, and inherits that mask.
        let blocked = BlockAllSignals::new();
        let inner = notify::recommended_watcher(move |res: notify::Result<Event>| {
            let wake = match &res {
                Ok(ev) => {
                    let mut inbox = seen.lock().unwrap_or_else(|p| p.into_inner());
                    // The folder itself removed, moved or unmounted: the watch is gone with it.
                    // (Not its opening or reading: listing it must not wake the worker again.)
                    let folder_gone = matches!(
                        ev.kind,
                        EventKind::Remove(_)
                            | EventKind::Modify(ModifyKind::Name(_))
                            | EventKind::Other
                    ) && ev.paths.contains(&watched);
                    if folder_gone {
                        lost_seen.store(true, Ordering::Relaxed);
                    }
                    if ev.need_rescan() || folder_gone {
                        inbox.rescan = true;
                    }
                    for p in &ev.paths {
                        match p.file_name().map(|n| n.to_str()) {
                            Some(Some(n)) => {
                                inbox.names.insert(n.to_string());
                            }
                            // Not UTF-8: only a full listing can report it (as refused).
                            Some(None) => inbox.rescan = true,
                            None => {}
                        }
                    }
                    ev.need_rescan() || interesting(ev) || folder_gone
                }
                Err(_) => {
                    seen.lock().unwrap_or_else(|p| p.into_inner()).rescan = true;
                    true
                }
            };
            if wake {
                // A full pipe already means "wake up": ignore EAGAIN.
                // SAFETY: writes one byte from a static buffer to the pipe this closure owns.
                unsafe { libc::write(write_end.as_raw_fd(), b"!".as_ptr().cast(), 1) };
            }
        })
        .map_err(WatchError::Notify);
        drop(blocked);
        let mut inner = inner?;
        inner
            .watch(dir, RecursiveMode::NonRecursive)
            .map_err(WatchError::Notify)?;
        Ok(Watcher {
            _inner: inner,
            read_end,
            inbox,
            dir: dir.to_path_buf(),
            identity,
            lost,
        })
    }

    /// The watched folder itself went away: this watch hears nothing any more.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }

    pub fn fd(&self) -> RawFd {
        self.read_end.as_raw_fd()
    }

    /// Takes what the notification thread collected.
    pub fn take_inbox(&self) -> Inbox {
        std::mem::take(&mut *self.inbox.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Empties the pipe; true if any notification had arrived.
    pub fn drain(&self) -> bool {
        let mut any = false;
        let mut buf = [0u8; 256];
        loop {
            // SAFETY: reads into a local buffer of the length given, from our own pipe.
            let n = unsafe { libc::read(self.fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                return any;
            }
            any = true;
        }
    }
}

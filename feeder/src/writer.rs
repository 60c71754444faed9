//! Atomic file publication: each file is written under a dot-prefixed temporary name the worker
//! ignores, fsynced, renamed into place without ever replacing an existing file, and the folder
//! is fsynced. A reader never sees a partial `*.csv`.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The output folder, checked writable.
pub struct OutputDir {
    path: PathBuf,
    dir: File,
    pid: u32,
}

/// Final name of a file: `events_<UTC time of its first event, ms>Z_<sequence>.csv`. Names sort
/// by creation: the time never decreases within a run, later runs start later, and the
/// sequence orders files with the same time.
pub fn file_name(time_us: i64, seq: u64) -> String {
    let t = chrono::DateTime::from_timestamp_micros(time_us).expect("timestamp in range");
    format!("events_{}Z_{seq:06}.csv", t.format("%Y%m%dT%H%M%S%.3f"))
}

fn c_path(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// Renames `from` to `to` unless `to` exists (then `ErrorKind::AlreadyExists`).
/// `renameat2(RENAME_NOREPLACE)`; where the file system lacks it, `link` + `unlink`.
pub fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    let (cf, ct) = (c_path(from)?, c_path(to)?);
    // SAFETY: both are valid NUL-terminated paths; AT_FDCWD resolves them as given.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            cf.as_ptr(),
            libc::AT_FDCWD,
            ct.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EINVAL) | Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP) => {
            fs::hard_link(from, to)?; // fails with AlreadyExists, never replaces
            fs::remove_file(from)
        }
        _ => Err(err),
    }
}

impl OutputDir {
    /// Creates the folder if missing and proves it writable by creating and removing a
    /// temporary file, before any event is generated.
    pub fn prepare(path: &Path) -> Result<Self, String> {
        let shown = path.display();
        fs::create_dir_all(path)
            .map_err(|e| format!("cannot create the output folder {shown}: {e}"))?;
        let pid = std::process::id();
        let probe = path.join(format!(".feeder_probe_{pid}.tmp"));
        let _ = fs::remove_file(&probe);
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&probe)
            .and_then(|mut f| f.write_all(b"probe"))
            .map_err(|e| format!("cannot write to the output folder {shown}: {e}"))?;
        fs::remove_file(&probe)
            .map_err(|e| format!("cannot remove files in the output folder {shown}: {e}"))?;
        let dir =
            File::open(path).map_err(|e| format!("cannot open the output folder {shown}: {e}"))?;
        Ok(OutputDir {
            path: path.to_path_buf(),
            dir,
            pid,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Starts a file under a temporary name (never an existing one).
    pub fn begin(&self, time_us: i64, seq: u64) -> io::Result<PendingFile> {
        let final_name = file_name(time_us, seq);
        let tmp = self.path.join(format!(".{final_name}.{}.tmp", self.pid));
        let file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        Ok(PendingFile {
            tmp: Some(tmp),
            file,
            time_us,
            bytes: 0,
        })
    }
}

/// A file being written under its temporary name. Dropped without `commit`, it is removed.
pub struct PendingFile {
    tmp: Option<PathBuf>,
    file: File,
    time_us: i64,
    bytes: u64,
}

/// A published file.
#[derive(Debug, Clone)]
pub struct Published {
    pub name: String,
    pub seq: u64,
    pub bytes: u64,
}

impl PendingFile {
    pub fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file.write_all(buf)?;
        self.bytes += buf.len() as u64;
        Ok(())
    }

    /// Fsyncs the data, renames it into place under the first free name from sequence `seq`
    /// on, and fsyncs the folder.
    pub fn commit(mut self, dir: &OutputDir, mut seq: u64) -> io::Result<Published> {
        self.file.sync_all()?;
        let tmp = self.tmp.clone().expect("not yet committed");
        loop {
            let name = file_name(self.time_us, seq);
            match rename_no_replace(&tmp, &dir.path.join(&name)) {
                Ok(()) => {
                    self.tmp = None;
                    dir.dir.sync_all()?;
                    return Ok(Published {
                        name,
                        seq,
                        bytes: self.bytes,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => seq += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// Removes the temporary file.
    pub fn discard(self) {
        drop(self)
    }
}

impl Drop for PendingFile {
    fn drop(&mut self) {
        if let Some(tmp) = self.tmp.take() {
            let _ = fs::remove_file(tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_by_time_then_sequence() {
        let a = file_name(1_714_566_600_000_000, 1);
        assert_eq!(a, "events_20240501T123000.000Z_000001.csv");
        let b = file_name(1_714_566_600_000_000, 2);
        let c = file_name(1_714_566_600_001_000, 1);
        assert!(a < b && b < c);
        assert!(!ecommerce_events::is_temporary_name(&a));
        assert!(ecommerce_events::is_temporary_name(&format!(".{a}.1.tmp")));
    }

    #[test]
    fn never_overwrites() {
        let d = tempfile::tempdir().unwrap();
        let out = OutputDir::prepare(d.path()).unwrap();
        let mut f1 = out.begin(0, 1).unwrap();
        f1.write_all(b"first").unwrap();
        let p1 = f1.commit(&out, 1).unwrap();
        let mut f2 = out.begin(0, 1).unwrap();
        f2.write_all(b"second").unwrap();
        let p2 = f2.commit(&out, 1).unwrap();
        assert_eq!(p1.seq, 1);
        assert_eq!(p2.seq, 2);
        assert_eq!(fs::read(d.path().join(&p1.name)).unwrap(), b"first");
        assert_eq!(fs::read(d.path().join(&p2.name)).unwrap(), b"second");
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 2);
    }

    #[test]
    fn discarded_files_leave_nothing() {
        let d = tempfile::tempdir().unwrap();
        let out = OutputDir::prepare(d.path().join("new/sub").as_path()).unwrap();
        let mut f = out.begin(0, 1).unwrap();
        f.write_all(b"partial").unwrap();
        f.discard();
        assert_eq!(fs::read_dir(out.path()).unwrap().count(), 0);
    }

    #[test]
    fn link_fallback_never_overwrites() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        fs::write(&a, "a").unwrap();
        fs::write(&b, "b").unwrap();
        let err = rename_no_replace(&a, &b).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&b).unwrap(), b"b");
    }
}

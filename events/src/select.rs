//! Which files of the input folder are candidates, and in what order.

use crate::reader::file_kind;
use crate::schema::is_temporary_name;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// A regular file in the input folder that matches the pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub name: String,
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    pub inode: u64,
}

/// An entry that matches the pattern but will never be read, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub name: String,
    pub reason: String,
}

#[derive(Debug, Default)]
pub struct Listing {
    /// Oldest first (modification time, then name).
    pub files: Vec<Candidate>,
    pub skipped: Vec<Skipped>,
}

/// A compiled `file_pattern` (shell syntax: `*`, `?`, `[abc]`).
#[derive(Debug, Clone)]
pub struct FilePattern(glob::Pattern);

impl FilePattern {
    pub fn new(p: &str) -> Result<Self, String> {
        if p.contains('/') {
            return Err(
                "a file pattern names files inside the input folder; it may not contain '/'".into(),
            );
        }
        glob::Pattern::new(p)
            .map(FilePattern)
            .map_err(|e| format!("invalid file pattern {p:?}: {e}"))
    }
    pub fn matches(&self, name: &str) -> bool {
        self.0.matches_with(
            name,
            glob::MatchOptions {
                case_sensitive: true,
                require_literal_separator: true,
                require_literal_leading_dot: true,
            },
        )
    }
}

/// True if `name` is a plain name inside a folder: no separator, not `.` or `..`.
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !name.contains('\0')
}

/// What one directory entry is, for the worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file matching the pattern.
    File(Candidate),
    /// Matches the pattern but will never be read (symlink, FIFO, directory...).
    Refused(Skipped),
    /// Not for us (temporary name, other pattern) or gone.
    Ignored,
}

/// Classifies `dir/name` with `lstat` (a symlink is reported as such, never followed).
pub fn classify(dir: &Path, name: &str, pattern: &FilePattern) -> EntryKind {
    if is_temporary_name(name) || !is_plain_name(name) || !pattern.matches(name) {
        return EntryKind::Ignored;
    }
    let md = match fs::symlink_metadata(dir.join(name)) {
        Ok(m) => m,
        Err(_) => return EntryKind::Ignored, // removed between listing and stat
    };
    let ft = md.file_type();
    if !ft.is_file() {
        return EntryKind::Refused(Skipped {
            name: name.to_string(),
            reason: format!("not a regular file ({}); never read", file_kind(&ft)),
        });
    }
    EntryKind::File(Candidate {
        name: name.to_string(),
        size: md.len(),
        mtime_ns: md.mtime() * 1_000_000_000 + md.mtime_nsec(),
        inode: md.ino(),
    })
}

/// Orders files oldest first (modification time, then name).
pub fn sort_oldest_first(files: &mut [Candidate]) {
    files.sort_by(|a, b| {
        a.mtime_ns
            .cmp(&b.mtime_ns)
            .then_with(|| a.name.cmp(&b.name))
    });
}

/// Lists `dir` (not recursively). Temporary names are ignored silently; symlinks and
/// non-regular entries that match the pattern are reported in `skipped`, never followed.
pub fn list_dir(dir: &Path, pattern: &FilePattern) -> io::Result<Listing> {
    let mut out = Listing::default();
    for entry in fs::read_dir(dir)? {
        let Ok(entry) = entry else { continue };
        let os_name = entry.file_name();
        let Some(name) = os_name.to_str() else {
            let shown = os_name.to_string_lossy().into_owned();
            if pattern.matches(&shown) {
                out.skipped.push(Skipped {
                    name: shown,
                    reason: "the file name is not valid UTF-8".into(),
                });
            }
            continue;
        };
        match classify(dir, name, pattern) {
            EntryKind::File(c) => out.files.push(c),
            EntryKind::Refused(s) => out.skipped.push(s),
            EntryKind::Ignored => {}
        }
    }
    sort_oldest_first(&mut out.files);
    Ok(out)
}

/// Modification time of a directory (nanoseconds): it changes whenever an entry is added,
/// removed or renamed, so an unchanged value means no new file appeared.
pub fn dir_mtime_ns(dir: &Path) -> io::Result<i64> {
    let md = fs::metadata(dir)?;
    Ok(md.mtime() * 1_000_000_000 + md.mtime_nsec())
}

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

/// Lists `dir` (not recursively). Temporary names are ignored silently; symlinks and
/// non-regular entries that match the pattern are reported in `skipped`, never followed.
pub fn list_dir(dir: &Path, pattern: &FilePattern) -> io::Result<Listing> {
    let mut out = Listing::default();
    for entry in fs::read_dir(dir)? {
        let entry = match entry {
            Ok(e) => e,
            Err(_) => continue,
        };
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
        if is_temporary_name(name) || !is_plain_name(name) || !pattern.matches(name) {
            continue;
        }
        // lstat: a symlink is reported as such, never followed.
        let md = match fs::symlink_metadata(entry.path()) {
            Ok(m) => m,
            Err(_) => continue, // removed between listing and stat
        };
        let ft = md.file_type();
        if !ft.is_file() {
            out.skipped.push(Skipped {
                name: name.to_string(),
                reason: format!("not a regular file ({}); never read", file_kind(&ft)),
            });
            continue;
        }
        out.files.push(Candidate {
            name: name.to_string(),
            size: md.len(),
            mtime_ns: md.mtime() * 1_000_000_000 + md.mtime_nsec(),
            inode: md.ino(),
        });
    }
    out.files.sort_by(|a, b| {
        a.mtime_ns
            .cmp(&b.mtime_ns)
            .then_with(|| a.name.cmp(&b.name))
    });
    Ok(out)
}

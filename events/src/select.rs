//! Which files of the input folder are candidates, and in what order.

use crate::reader::file_kind;
use crate::schema::is_temporary_name;
use std::fmt;
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
    /// Device of the file system holding it (`st_dev`): with `inode`, which file this is.
    pub dev: u64,
    /// Status-change time (`st_ctime`), nanoseconds since the Unix epoch. Any write, truncation
    /// or metadata change sets it to now, and unlike the modification time no one can set it
    /// back: a file rewritten in place with its old mtime restored still shows a new ctime.
    pub ctime_ns: i64,
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

/// A compiled `file_pattern` (shell syntax: `*`, `?`, `[abc]`); several patterns separated by
/// commas match a name that any of them matches (`*.csv,*.csv.gz`).
#[derive(Debug, Clone)]
pub struct FilePattern(Vec<glob::Pattern>);

/// Why a file pattern is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatternError {
    /// It contains a '/': patterns name files inside the input folder.
    Slash,
    /// Not valid shell pattern syntax (an unclosed `[`, ...): near character `position`.
    Syntax {
        pattern: String,
        position: usize,
        reason: &'static str,
    },
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PatternError::Slash => f.write_str(
                "a file pattern names files inside the input folder; it may not contain '/'",
            ),
            // The words of glob's own message, as before this error was typed.
            PatternError::Syntax {
                pattern,
                position,
                reason,
            } => write!(
                f,
                "invalid file pattern {pattern:?}: Pattern syntax error near position \
                 {position}: {reason}"
            ),
        }
    }
}

impl std::error::Error for PatternError {}

impl FilePattern {
    pub fn new(p: &str) -> Result<Self, PatternError> {
        if p.contains('/') {
            return Err(PatternError::Slash);
        }
        p.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|one| {
                glob::Pattern::new(one).map_err(|e| PatternError::Syntax {
                    pattern: one.to_string(),
                    position: e.pos,
                    reason: e.msg,
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(FilePattern)
    }
    pub fn matches(&self, name: &str) -> bool {
        let opts = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            require_literal_leading_dot: true,
        };
        self.0.iter().any(|p| p.matches_with(name, opts))
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
        dev: md.dev(),
        ctime_ns: md.ctime() * 1_000_000_000 + md.ctime_nsec(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn candidate(dir: &Path, name: &str) -> Candidate {
        match classify(dir, name, &FilePattern::new("*.csv").unwrap()) {
            EntryKind::File(c) => c,
            other => panic!("{other:?}"),
        }
    }

    /// Waits until the file system clock (as seen in a new file's ctime) passes `ns`: file
    /// times advance in ticks, and a change within the same tick would keep the same time.
    fn after_tick(dir: &Path, ns: i64) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let probe = dir.join("probe.tmp");
        loop {
            fs::write(&probe, b"x").unwrap();
            let md = fs::metadata(&probe).unwrap();
            if md.ctime() * 1_000_000_000 + md.ctime_nsec() > ns {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the file system clock does not move"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn identity_fields_come_from_lstat() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.csv");
        fs::write(&p, b"abc").unwrap();
        let c = candidate(d.path(), "a.csv");
        let md = fs::symlink_metadata(&p).unwrap();
        assert_eq!(c.size, 3);
        assert_eq!(c.inode, md.ino());
        assert_eq!(c.dev, md.dev());
        assert_eq!(c.ctime_ns, md.ctime() * 1_000_000_000 + md.ctime_nsec());
        assert!(c.ctime_ns > 0);
    }

    #[test]
    fn a_file_rewritten_in_place_keeps_its_inode_and_gets_a_new_ctime() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.csv");
        fs::write(&p, b"first content").unwrap();
        let before = candidate(d.path(), "a.csv");
        after_tick(d.path(), before.ctime_ns);
        // Same size, and the modification time put back: only the ctime tells.
        fs::write(&p, b"other content").unwrap();
        let mtime = filetime::FileTime::from_unix_time(
            before.mtime_ns.div_euclid(1_000_000_000),
            before.mtime_ns.rem_euclid(1_000_000_000) as u32,
        );
        filetime::set_file_mtime(&p, mtime).unwrap();
        let after = candidate(d.path(), "a.csv");
        assert_eq!((after.inode, after.dev), (before.inode, before.dev));
        assert_eq!((after.size, after.mtime_ns), (before.size, before.mtime_ns));
        assert!(after.ctime_ns > before.ctime_ns, "{before:?} {after:?}");
    }

    #[test]
    fn a_file_replaced_by_rename_has_another_inode() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.csv");
        fs::write(&p, b"first").unwrap();
        let before = candidate(d.path(), "a.csv");
        let tmp = d.path().join(".a.csv.tmp");
        fs::write(&tmp, b"second").unwrap();
        fs::rename(&tmp, &p).unwrap();
        let after = candidate(d.path(), "a.csv");
        assert_eq!(after.dev, before.dev);
        assert_ne!(after.inode, before.inode);
    }

    #[test]
    fn sorting_ignores_the_identity_fields() {
        let c = |name: &str, mtime_ns, inode, ctime_ns| Candidate {
            name: name.into(),
            size: 1,
            mtime_ns,
            inode,
            dev: 1,
            ctime_ns,
        };
        let mut files = vec![c("b", 5, 1, 1), c("a", 5, 2, 9), c("c", 1, 3, 100)];
        sort_oldest_first(&mut files);
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["c", "a", "b"]);
    }

    #[test]
    fn pattern_errors_are_typed_with_the_same_words() {
        for p in ["in/*.csv", "/tmp/*.csv", "../*.csv"] {
            let e = FilePattern::new(p).unwrap_err();
            assert_eq!(e, PatternError::Slash, "{p}");
            assert_eq!(
                e.to_string(),
                "a file pattern names files inside the input folder; it may not contain '/'"
            );
        }
        let e = FilePattern::new("a[").unwrap_err();
        let glob_error = glob::Pattern::new("a[").unwrap_err();
        assert_eq!(
            e,
            PatternError::Syntax {
                pattern: "a[".into(),
                position: glob_error.pos,
                reason: glob_error.msg,
            }
        );
        // Word for word what the String error said.
        assert_eq!(
            e.to_string(),
            format!("invalid file pattern \"a[\": {glob_error}")
        );
    }
}

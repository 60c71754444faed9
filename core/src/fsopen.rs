//! Opening an input file without following a symlink and without blocking on a FIFO, refusing
//! anything that is not a regular file (the same rule as the events reader's `open_regular`).

use std::fs::File;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// Opens `path` read-only with `O_NOFOLLOW | O_NONBLOCK` and checks it is a regular file.
/// A symlink, directory, FIFO, socket or device fails with an `io::Error` of kind
/// `InvalidInput` whose text says what it is ("not a regular file (FIFO); never read").
pub fn open_regular(path: &Path) -> io::Result<File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                not_regular("symbolic link")
            } else {
                e
            }
        })?;
    let ft = file.metadata()?.file_type();
    if !ft.is_file() {
        return Err(not_regular(file_kind(&ft)));
    }
    Ok(file)
}

/// Opens `path` as [`open_regular`] does, then checks where the open file really is (the
/// kernel's path of the descriptor, `/proc/self/fd/N`): inside one of `roots` (canonical
/// folders). Checked on the open descriptor, so a folder on `path` replaced by a symbolic link
/// after an earlier check of the folder cannot lead the read out of the roots. Outside: an
/// error of kind `PermissionDenied` saying where the file really is.
pub fn open_regular_within(path: &Path, roots: &[PathBuf]) -> io::Result<File> {
    let file = open_regular(path)?;
    let real = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
    if roots.iter().any(|r| real.starts_with(r)) {
        return Ok(file);
    }
    Err(io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!(
            "{} is {} once opened, outside ecommerce_ingest.allowed_roots: never read",
            crate::shown::excerpt(&path.display().to_string(), 300),
            crate::shown::excerpt(&real.display().to_string(), 300)
        ),
    ))
}

fn not_regular(kind: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("not a regular file ({kind}); never read"),
    )
}

/// What kind of file system entry `ft` is, for messages.
pub fn file_kind(ft: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_dir() {
        "directory"
    } else if ft.is_symlink() {
        "symbolic link"
    } else if ft.is_fifo() {
        "FIFO"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_block_device() || ft.is_char_device() {
        "device"
    } else {
        "regular file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_read_within_the_roots_only_where_it_really_is() {
        let d = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(d.path()).unwrap();
        let root = base.join("root");
        let outside = base.join("outside");
        std::fs::create_dir_all(root.join("in")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(root.join("in/a.csv"), "a\n").unwrap();
        std::fs::write(outside.join("a.csv"), "secret\n").unwrap();
        let roots = vec![root.clone()];
        assert!(open_regular_within(&root.join("in/a.csv"), &roots).is_ok());
        // The folder swapped for a symbolic link out of the root: the same path is refused.
        std::fs::rename(root.join("in"), base.join("moved")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("in")).unwrap();
        let e = open_regular_within(&root.join("in/a.csv"), &roots).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        let text = e.to_string();
        assert!(
            text.contains(&outside.join("a.csv").display().to_string())
                && text.contains("outside ecommerce_ingest.allowed_roots"),
            "{text}"
        );
        // Without roots (a superuser's pipeline), it is opened.
        assert!(open_regular(&root.join("in/a.csv")).is_ok());
        // A root that is a prefix by name only does not count.
        let twin = vec![base.join("outsid")];
        assert!(open_regular_within(&outside.join("a.csv"), &twin).is_err());
    }
}

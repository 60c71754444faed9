//! Opening an input file without following a symlink and without blocking on a FIFO, refusing
//! anything that is not a regular file (the same rule as the events reader's `open_regular`).

use std::fs::File;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

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

//! Moving files out of the input folder once ingested (archive) or refused (failed), or deleting
//! them. Every action is idempotent: a crash after the commit repeats it at the next scan.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Moves `dir_in/name` into `dest_dir`, never overwriting: an existing name gets a `.N` suffix.
pub fn move_into(src: &Path, dest_dir: &Path, name: &str) -> io::Result<PathBuf> {
    fs::create_dir_all(dest_dir)?;
    let mut target = dest_dir.join(name);
    let mut n = 1;
    while fs::symlink_metadata(&target).is_ok() {
        target = dest_dir.join(format!("{name}.{n}"));
        n += 1;
    }
    match fs::rename(src, &target) {
        Ok(()) => Ok(target),
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            // Another file system: copy, flush, then remove the original.
            let tmp = dest_dir.join(format!(".{name}.part"));
            fs::copy(src, &tmp)?;
            fs::File::open(&tmp)?.sync_all()?;
            fs::rename(&tmp, &target)?;
            fs::remove_file(src)?;
            Ok(target)
        }
        Err(e) => Err(e),
    }
}

pub fn delete(src: &Path) -> io::Result<()> {
    match fs::remove_file(src) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// True if both paths are the same existing folder (same device and inode: also through a
/// symbolic link or a bind mount).
pub fn same_dir(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (fs::metadata(a), fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

//! Moving files out of the input folder once ingested (archive) or refused (failed), or deleting
//! them. Every action is idempotent: a crash after the commit repeats it at the next scan.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// The folder `dir`, opened, once its real path is checked to be `dir` itself (a canonical
/// path: the one the folder checks accepted). Whatever is done through the returned handle
/// happens in that very folder, even if a symbolic link replaces a part of its path meanwhile.
fn open_checked_dir(dir: &Path) -> io::Result<fs::File> {
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(dir)?;
    let real = fs::read_link(format!("/proc/self/fd/{}", f.as_raw_fd()))?;
    if real != dir {
        return Err(io::Error::other(format!(
            "the folder {} is now {} (a symbolic link or a move since it was checked): nothing is moved there",
            dir.display(),
            real.display()
        )));
    }
    Ok(f)
}

fn c_name(name: &str) -> io::Result<CString> {
    CString::new(std::ffi::OsStr::new(name).as_bytes())
        .map_err(|_| io::Error::other("a NUL in a file name"))
}

/// `renameat2(from_dir/from, to_dir/to, RENAME_NOREPLACE)`.
fn rename_noreplace(
    from_dir: libc::c_int,
    from: &CString,
    to_dir: libc::c_int,
    to: &CString,
) -> io::Result<()> {
    // SAFETY: both names are NUL-terminated C strings that outlive the call; the directory
    // handles are open (or AT_FDCWD).
    let rc = unsafe {
        libc::renameat2(
            from_dir,
            from.as_ptr(),
            to_dir,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Moves `src` into `dest_dir` (canonical: as the folder checks accepted it), never
/// overwriting: an existing name gets a `.N` suffix. The move goes through the folder opened
/// and checked here, never through its path again, so a symbolic link swapped in after the
/// check cannot send the file anywhere else.
pub fn move_into(src: &Path, dest_dir: &Path, name: &str) -> io::Result<PathBuf> {
    fs::create_dir_all(dest_dir)?;
    let dir = open_checked_dir(dest_dir)?;
    let dfd = dir.as_raw_fd();
    let from = CString::new(src.as_os_str().as_bytes())
        .map_err(|_| io::Error::other("a NUL in a path"))?;
    let mut n = 0;
    loop {
        let target_name = if n == 0 {
            name.to_string()
        } else {
            format!("{name}.{n}")
        };
        let to = c_name(&target_name)?;
        match rename_noreplace(libc::AT_FDCWD, &from, dfd, &to) {
            Ok(()) => return Ok(dest_dir.join(target_name)),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => n += 1,
            Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
                // Another file system: copy into a new file of the folder, flush, name it,
                // then remove the original.
                let tmp = c_name(&format!(".{name}.part"))?;
                // SAFETY: a NUL-terminated name relative to the open folder handle.
                let fd = unsafe {
                    libc::openat(
                        dfd,
                        tmp.as_ptr(),
                        libc::O_WRONLY
                            | libc::O_CREAT
                            | libc::O_TRUNC
                            | libc::O_NOFOLLOW
                            | libc::O_CLOEXEC,
                        0o600,
                    )
                };
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                // SAFETY: `fd` was just opened and is owned by this File from here on.
                let mut out =
                    unsafe { <fs::File as std::os::unix::io::FromRawFd>::from_raw_fd(fd) };
                io::copy(&mut fs::File::open(src)?, &mut out)?;
                out.sync_all()?;
                loop {
                    let target_name = if n == 0 {
                        name.to_string()
                    } else {
                        format!("{name}.{n}")
                    };
                    match rename_noreplace(dfd, &tmp, dfd, &c_name(&target_name)?) {
                        Ok(()) => {
                            fs::remove_file(src)?;
                            return Ok(dest_dir.join(target_name));
                        }
                        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => n += 1,
                        Err(e) => return Err(e),
                    }
                }
            }
            Err(e) => return Err(e),
        }
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

//! A small tmpfs a test mounts to fill a disk on purpose, and always unmounts (a Drop guard,
//! so a failing test leaves no mount behind).

use e2e::postgres_folder;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

static SEQ: AtomicUsize = AtomicUsize::new(0);

pub(super) struct Tmpfs {
    dir: PathBuf,
}

fn mount(args: &[&str], dir: &Path) {
    let out = Command::new("mount")
        .args(args)
        .arg(dir)
        .output()
        .expect("run mount");
    assert!(
        out.status.success(),
        "mount {args:?} {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Tmpfs {
    /// A tmpfs of `size` (as mount's `size=`, e.g. `64m`) on a new folder under /tmp, owned by
    /// the postgres OS user.
    pub(super) fn mount(what: &str, size: &str) -> Tmpfs {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let dir = PathBuf::from(format!("/tmp/e2e-{what}-{}-{n}", std::process::id()));
        fs::create_dir_all(&dir).expect("create the mount point");
        mount(
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ],
            &dir,
        );
        let t = Tmpfs { dir };
        postgres_folder(&t.dir);
        t
    }

    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    /// `mount -o remount,<opts>`: `ro`, `rw`, `size=…`.
    pub(super) fn remount(&self, opts: &str) {
        mount(&["-o", &format!("remount,{opts}")], &self.dir);
    }

    /// Fills the file system: writes `filler` (as root, outside every folder the server uses)
    /// until the disk is full. Returns its path; removing it frees the space.
    pub(super) fn fill(&self) -> PathBuf {
        let path = self.dir.join("filler");
        let mut f = fs::File::create(&path).expect("create the filler");
        let block = vec![0x5a_u8; 64 * 1024];
        loop {
            match f.write(&block) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("{}: {e}", path.display()),
            }
        }
        // The last partial block: byte by byte, so that not even one byte is left.
        while f.write(&block[..1]).is_ok_and(|n| n == 1) {}
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a server that still has a file open there does not keep the mount alive.
        let _ = Command::new("umount").arg("-l").arg(&self.dir).output();
        let _ = fs::remove_dir(&self.dir);
    }
}

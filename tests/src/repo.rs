//! The repository the harness runs from: its root, running its scripts and programs, and the
//! previous release that `scripts/previous-release.sh` builds for the upgrade tests.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The previous release, as `scripts/previous-release.sh` builds it.
pub struct PreviousRelease {
    /// Its version, e.g. `0.1.0`.
    pub version: String,
    /// The folder of its `ecommerce_ingest.so` (for
    /// [`ClusterOptions::library_dir`](crate::ClusterOptions::library_dir)).
    pub library_dir: PathBuf,
    /// Its install script `ecommerce_ingest--<version>.sql`, as pgrx generated it.
    pub install_script: PathBuf,
}

/// The previous release built by `scripts/previous-release.sh` (under `target/previous/`);
/// panics saying to run the script when it is missing.
pub fn previous_release() -> PreviousRelease {
    let root = repo_root().join("target/previous");
    let hint = "run scripts/previous-release.sh (it builds the previous release and installs its SQL script)";
    let version = fs::read_to_string(root.join("version"))
        .unwrap_or_else(|e| panic!("{}: {e}: {hint}", root.join("version").display()))
        .trim()
        .to_string();
    let dir = root.join(&version);
    let p = PreviousRelease {
        library_dir: dir.join("lib"),
        install_script: dir.join(format!("ecommerce_ingest--{version}.sql")),
        version,
    };
    for f in [
        p.library_dir.join("ecommerce_ingest.so"),
        p.install_script.clone(),
    ] {
        assert!(f.is_file(), "{} is missing: {hint}", f.display());
    }
    p
}

/// Runs `cmd`; panics with its output unless it succeeds.
pub(crate) fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

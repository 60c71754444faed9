//! The server's own folders (data directory, WAL, tablespaces, configuration), which the
//! worker never reads, moves or deletes files in, and the check of the configured folders
//! against them (the rules are in `ecommerce_events::folders`).

use crate::settings::Settings;
use ecommerce_events::folders::{self, FolderError, FolderRole, Folders, Protected};
use std::path::{Path, PathBuf};

/// The folders of the server that the worker must never touch.
pub fn protected_folders(tablespaces: &[(String, PathBuf)]) -> Vec<Protected> {
    let data = crate::settings::data_dir();
    let mut out = vec![
        Protected::DataDirectory(folders::canonical(&data)),
        Protected::Wal(folders::canonical(&data.join("pg_wal"))),
    ];
    for (name, path) in tablespaces {
        out.push(Protected::Tablespace {
            name: name.clone(),
            path: folders::canonical(path),
        });
    }
    for setting in ["config_file", "hba_file", "ident_file"] {
        if let Some(file) = crate::settings::server_setting(setting) {
            if let Some(dir) = Path::new(&file).parent() {
                let dir = folders::canonical(&crate::settings::resolve(&dir.to_string_lossy()));
                let p = Protected::Configuration(dir);
                if !out.contains(&p) {
                    out.push(p);
                }
            }
        }
    }
    out
}

/// The configured folders may be used (see `ecommerce_events::folders`).
pub fn check_folders(st: &Settings, tablespaces: &[(String, PathBuf)]) -> Result<(), FolderError> {
    if st.input_unset {
        return Err(FolderError::NotSet(FolderRole::Input));
    }
    let f = Folders {
        input: st.input_dir.clone(),
        archive: st.archive_dir.clone(),
        failed: st.failed_dir.clone(),
    };
    folders::check_folders(&f, &protected_folders(tablespaces))
}

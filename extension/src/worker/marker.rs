//! Remembers, outside the extension's tables, which installation of the extension last ingested
//! files from the input folder. DROP EXTENSION drops the ledger with the tables; a new
//! installation next to the same files would ingest them all again. With this marker the worker
//! notices and starts paused instead (see `recreated`).

use std::io::Write;
use std::path::{Path, PathBuf};

/// The installation that ingested from a folder: database and extension oids, and the folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    pub database: u32,
    pub extension: u32,
    pub input_dir: PathBuf,
}

const FILE: &str = "ecommerce_ingest.marker";

fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE)
}

/// The marker in the data directory, if there is a readable one.
pub fn read(data_dir: &Path) -> Option<Marker> {
    let text = std::fs::read_to_string(path(data_dir)).ok()?;
    let mut lines = text.lines();
    let mut ids = lines.next()?.split_whitespace();
    let database = ids.next()?.parse().ok()?;
    let extension = ids.next()?.parse().ok()?;
    let input_dir = PathBuf::from(lines.next()?);
    Some(Marker {
        database,
        extension,
        input_dir,
    })
}

/// Writes the marker (to a temporary name, flushed, then renamed into place).
pub fn write(data_dir: &Path, m: &Marker) -> std::io::Result<()> {
    let tmp = data_dir.join(format!("{FILE}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    writeln!(f, "{} {}", m.database, m.extension)?;
    writeln!(f, "{}", m.input_dir.display())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path(data_dir))
}

/// True when another installation of the extension ingested from this folder before, the
/// current one has an empty ledger, and the folder holds files: they may be the files ingested
/// before, whose record went with DROP EXTENSION (or DROP DATABASE).
pub fn recreated(before: Option<&Marker>, now: &Marker, ledger_empty: bool, files: usize) -> bool {
    match before {
        Some(b) => {
            ledger_empty
                && files > 0
                && b.input_dir == now.input_dir
                && (b.database, b.extension) != (now.database, now.extension)
        }
        None => false,
    }
}

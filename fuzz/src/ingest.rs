//! What the `ingest_core` targets (`rows`, `options`) share: how a `rows` input is split into
//! settings and file bytes, the file written under the name the settings give it (the suffix
//! chooses the decompressor), an independent decompression of it, and owned copies of records.
//! See docs/fuzzing.md.
//!
//! A `rows` input is [`ROWS_PREFIX`] setting bytes followed by the file's (uncompressed) bytes:
//!
//! | byte | meaning |
//! | --- | --- |
//! | 0 | bits 0–1 format (0, 3 csv; 1 tsv; 2 ndjson); bit 2 `"header": false`; bit 3 `"encoding": "LATIN1"`; bits 4–5 packing (0 plain; 1 gzip, 2 zstd, compressed here; 3 the bytes as they are, named as compressed); bit 6 the compression given by the `"compression"` option, not by the name's suffix; bit 7 a large record cap |
//! | 1 | bits 0–3 `"delimiter"` ([`DELIMITERS`], 0: the format's default); bit 7 packing 3 claims zstd, not gzip |
//! | 2 | bits 0–3 `"quote"` ([`QUOTES`], 0: default, 1: null, no quoting); bits 4–7 `"escape"` ([`ESCAPES`], 0: default) |
//! | 3 | bits 0–2 `"null"` ([`NULLS`], 0: default) |
//! | 4, 5 | record cap (`max_record_bytes`), u16 little-endian: 1 + v % 1024, or with bit 7 of byte 0 (v + 1) × 16 (up to 1 MiB) |
//!
//! Settings that the options would refuse together (quote equal to the delimiter, a null
//! string holding the delimiter, an escape without quoting) are dropped, so every input's
//! options parse.

use ingest_core::rows::{Record, RowOutcome};
use ingest_core::{ColumnKind, TargetColumn};
use serde_json::{Map, Value};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Setting bytes before the file of a `rows` input.
pub const ROWS_PREFIX: usize = 6;

/// `"delimiter"` choices (`None`: the key is left out).
pub const DELIMITERS: [Option<u8>; 16] = [
    None,
    Some(b','),
    Some(b';'),
    Some(b'\t'),
    Some(b'|'),
    Some(b' '),
    Some(b'"'),
    Some(b'\''),
    Some(b'\\'),
    Some(b'a'),
    Some(b'N'),
    Some(0),
    Some(b','),
    Some(b'\t'),
    Some(b'\x7f'),
    Some(b'{'),
];

/// `"quote"` choices: 0 leaves the key out, 1 is null (no quoting).
pub const QUOTES: [Option<u8>; 8] = [
    None,
    None,
    Some(b'"'),
    Some(b'\''),
    Some(b'|'),
    Some(b'\\'),
    Some(b'$'),
    Some(b','),
];

/// `"escape"` choices (0 leaves the key out).
pub const ESCAPES: [Option<u8>; 8] = [
    None,
    Some(b'\\'),
    Some(b'"'),
    Some(b'\''),
    Some(b'$'),
    Some(b'|'),
    Some(b'"'),
    Some(b'\\'),
];

/// `"null"` choices (`None`: the key is left out).
pub const NULLS: [Option<&str>; 8] = [
    None,
    Some(""),
    Some("NULL"),
    Some("\\N"),
    Some("N"),
    Some("a b"),
    Some("\u{e9}"),
    Some("\""),
];

/// How the file is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packing {
    Plain,
    /// Compressed here: the reader must give back exactly the file's bytes.
    Gzip,
    Zstd,
    /// The bytes as they are, claimed to be gzip (or zstd): mostly garbage to the decoder.
    RawAsGzip,
    RawAsZstd,
}

/// The table's columns every `rows` input is read into: a required one, plain ones, an array,
/// a json one and a generated one (a file column that maps to it fails the mapping).
pub fn target_columns() -> Vec<TargetColumn> {
    let c = |name: &str, kind, required, insertable| TargetColumn {
        name: name.into(),
        kind,
        required,
        insertable,
    };
    vec![
        c("id", ColumnKind::Other, true, true),
        c("name", ColumnKind::Other, false, true),
        c("price", ColumnKind::Other, false, true),
        c("tags", ColumnKind::Array, false, true),
        c("doc", ColumnKind::Json, false, true),
        c("total", ColumnKind::Other, false, false),
    ]
}

pub struct RowsInput<'a> {
    /// "csv", "tsv" or "ndjson".
    pub format: &'static str,
    pub options: Map<String, Value>,
    pub packing: Packing,
    /// The compression comes from the `"compression"` option (the name has no suffix for it;
    /// a plain file is named `.gz` with `"compression": "none"`).
    pub forced: bool,
    pub max_record: u64,
    /// The file's bytes before packing.
    pub body: &'a [u8],
}

impl<'a> RowsInput<'a> {
    pub fn parse(data: &'a [u8]) -> Option<Self> {
        if data.len() < ROWS_PREFIX {
            return None;
        }
        let flags = data[0];
        let format = ["csv", "tsv", "ndjson", "csv"][(flags & 3) as usize];
        let tsv = format == "tsv";
        let ndjson = format == "ndjson";
        let packing = match (flags >> 4) & 3 {
            0 => Packing::Plain,
            1 => Packing::Gzip,
            2 => Packing::Zstd,
            _ if data[1] & 0x80 != 0 => Packing::RawAsZstd,
            _ => Packing::RawAsGzip,
        };
        let forced = flags & 0x40 != 0;
        let v = u16::from_le_bytes([data[4], data[5]]) as u64;
        let max_record = if flags & 0x80 != 0 {
            (v + 1) * 16
        } else {
            1 + v % 1024
        };
        let mut o = Map::new();
        let s = |b: u8| Value::String((b as char).to_string());
        if flags & 8 != 0 {
            o.insert("encoding".into(), "LATIN1".into());
        }
        if forced {
            let c = match packing {
                Packing::Plain => "none",
                Packing::Gzip | Packing::RawAsGzip => "gzip",
                Packing::Zstd | Packing::RawAsZstd => "zstd",
            };
            o.insert("compression".into(), c.into());
        }
        if !ndjson {
            if flags & 4 != 0 {
                o.insert("header".into(), false.into());
            }
            let delimiter = DELIMITERS[(data[1] & 15) as usize];
            let delim = delimiter.unwrap_or(if tsv { b'\t' } else { b',' });
            if let Some(d) = delimiter {
                o.insert("delimiter".into(), s(d));
            }
            let q = (data[2] & 7) as usize;
            let mut quote = if q == 0 {
                (!tsv).then_some(b'"')
            } else {
                QUOTES[q]
            };
            if quote == Some(delim) {
                // Refused together: no quoting instead.
                quote = None;
                o.insert("quote".into(), Value::Null);
            } else if q == 1 {
                o.insert("quote".into(), Value::Null);
            } else if let Some(c) = QUOTES[q] {
                o.insert("quote".into(), s(c));
            }
            if let (Some(_), Some(e)) = (quote, ESCAPES[(data[2] >> 4 & 7) as usize]) {
                o.insert("escape".into(), s(e));
            }
            if let Some(n) = NULLS[(data[3] & 7) as usize] {
                if !n.as_bytes().contains(&delim) {
                    o.insert("null".into(), n.into());
                }
            }
        }
        Some(RowsInput {
            format,
            options: o,
            packing,
            forced,
            max_record,
            body: &data[ROWS_PREFIX..],
        })
    }

    pub fn options_json(&self) -> String {
        Value::Object(self.options.clone()).to_string()
    }

    /// The file's name: the format's suffix, then `.gz` or `.zst` when the name says the
    /// compression.
    pub fn file_name(&self) -> String {
        let claimed = match (self.packing, self.forced) {
            (Packing::Plain, false) => "",
            // `"compression": "none"` wins over the name.
            (Packing::Plain, true) => ".gz",
            (_, true) => "",
            (Packing::Gzip | Packing::RawAsGzip, false) => ".gz",
            (Packing::Zstd | Packing::RawAsZstd, false) => ".zst",
        };
        format!("in.{}{claimed}", self.format)
    }

    /// The bytes written to the file.
    pub fn stored(&self) -> Vec<u8> {
        match self.packing {
            Packing::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(self.body).unwrap();
                e.finish().unwrap()
            }
            Packing::Zstd => zstd::stream::encode_all(self.body, 1).unwrap(),
            _ => self.body.to_vec(),
        }
    }

    /// The decompressed bytes the reader should see, and whether the whole stream decodes
    /// (false: the decoder fails after the bytes returned). Plain and compressed-here files are
    /// the body itself; the raw bytes go through the same decoders as the reader's, read in
    /// one plain pass.
    pub fn expected(&self, stored: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::new();
        let ok = match self.packing {
            Packing::Plain | Packing::Gzip | Packing::Zstd => {
                out.extend_from_slice(self.body);
                true
            }
            Packing::RawAsGzip => flate2::read::MultiGzDecoder::new(stored)
                .read_to_end(&mut out)
                .is_ok(),
            Packing::RawAsZstd => match zstd::stream::read::Decoder::new(stored) {
                Ok(mut d) => d.read_to_end(&mut out).is_ok(),
                Err(_) => false,
            },
        };
        (out, ok)
    }
}

/// A folder this process writes the `rows` files into, by name: in `$FUZZ_SCRATCH_DIR`, else
/// `/dev/shm`, else the temporary folder.
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    pub fn new(target: &str) -> ScratchDir {
        let root = std::env::var_os("FUZZ_SCRATCH_DIR")
            .map(PathBuf::from)
            .or_else(|| Some(PathBuf::from("/dev/shm")).filter(|d| d.is_dir()))
            .unwrap_or_else(std::env::temp_dir);
        let dir = root.join(format!("ingest-fuzz-{target}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch folder");
        ScratchDir(dir)
    }

    /// Writes `bytes` as `name` (a handful of names, each rewritten) and returns its path.
    pub fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, bytes).expect("writing the scratch file");
        p
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

/// What a record came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Out {
    Valid {
        columns: Vec<String>,
        text: Vec<u8>,
    },
    Rejected {
        column: Option<String>,
        reason: String,
    },
}

/// An owned copy of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedRecord {
    pub line: u64,
    pub start: u64,
    pub end: u64,
    pub terminated: bool,
    pub raw: Vec<u8>,
    pub out: Out,
}

impl OwnedRecord {
    pub fn of(r: &Record<'_>) -> OwnedRecord {
        OwnedRecord {
            line: r.line,
            start: r.start,
            end: r.end,
            terminated: r.terminated,
            raw: r.raw.to_vec(),
            out: match &r.outcome {
                RowOutcome::Valid { columns, text } => Out::Valid {
                    columns: columns.to_vec(),
                    text: text.to_vec(),
                },
                RowOutcome::Rejected { column, reason } => Out::Rejected {
                    column: column.clone(),
                    reason: reason.clone(),
                },
            },
        }
    }

    /// Rejected for breaking the record cap.
    pub fn overlong(&self) -> bool {
        matches!(&self.out, Out::Rejected { column: None, reason }
            if reason.starts_with("the record is ") && reason.contains("more than the maximum"))
    }
}

/// A message shown to a person stays short and on one line, whatever the input held.
pub fn check_message(what: &str, msg: &str) {
    assert!(msg.len() <= 4096, "{what}: {} bytes: {msg:?}", msg.len());
    assert!(
        !msg.contains(['\n', '\r']),
        "{what}: not on one line: {msg:?}"
    );
}

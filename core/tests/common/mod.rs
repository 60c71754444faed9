//! Helpers shared by the integration tests.
#![allow(dead_code)]

use ingest_core::rows::RowReader;
use ingest_core::textcopy::decode_line;
use ingest_core::*;
use std::path::{Path, PathBuf};

pub fn col(name: &str) -> TargetColumn {
    TargetColumn {
        name: name.into(),
        kind: ColumnKind::Other,
        required: false,
        insertable: true,
    }
}

pub fn cols(names: &[&str]) -> Vec<TargetColumn> {
    names.iter().map(|n| col(n)).collect()
}

pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

pub fn gz(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

pub fn zst(bytes: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(bytes, 3).unwrap()
}

/// One record as seen by a test.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub line: u64,
    pub start: u64,
    pub end: u64,
    pub terminated: bool,
    pub raw: Vec<u8>,
    /// Ok((columns, values)) or Err(reason).
    pub outcome: Result<(Vec<String>, Vec<Option<String>>), String>,
}

pub fn s(v: &[Option<&str>]) -> Vec<Option<String>> {
    v.iter().map(|x| x.map(String::from)).collect()
}

pub fn drain(r: &mut RowReader) -> std::io::Result<Vec<Row>> {
    let mut out = Vec::new();
    while let Some(rec) = r.next_record()? {
        let outcome = match rec.outcome {
            RowOutcome::Valid { columns, text } => Ok((
                columns.to_vec(),
                decode_line(text)
                    .into_iter()
                    .map(|v| v.map(|b| String::from_utf8(b).unwrap()))
                    .collect(),
            )),
            RowOutcome::Rejected { reason, .. } => Err(reason),
        };
        out.push(Row {
            line: rec.line,
            start: rec.start,
            end: rec.end,
            terminated: rec.terminated,
            raw: rec.raw.to_vec(),
            outcome,
        });
    }
    Ok(out)
}

pub fn open(
    path: &Path,
    opts: &PipelineOptions,
    target: &[TargetColumn],
) -> Result<RowReader, OpenError> {
    RowReader::open(path, opts, target, None, None, MAX_RECORD_BYTES_DEFAULT)
}

pub fn read(path: &Path, format: &str, options: &str, target: &[TargetColumn]) -> Vec<Row> {
    let opts = parse_options(format, options).unwrap();
    let mut r = open(path, &opts, target).unwrap();
    drain(&mut r).unwrap()
}

pub fn values(rows: &[Row]) -> Vec<Vec<Option<String>>> {
    rows.iter()
        .map(|r| r.outcome.clone().expect("valid row").1)
        .collect()
}

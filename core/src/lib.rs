//! Format-generic file reading for ecommerce_ingest pipelines: CSV/TSV/NDJSON readers with
//! exact lines and decompressed byte offsets, resume checked by a prefix hash, decompression
//! (gzip, zstd), column mapping and COPY text encoding. No PostgreSQL here.

pub mod compression;
pub mod csv;
pub mod fsopen;
pub mod mapping;
pub mod options;
pub mod policy;
pub mod rows;
pub mod share;
pub mod shown;
pub mod source;
pub mod staging;
pub mod textcopy;

pub use compression::Compression;
pub use fsopen::{open_regular, open_regular_within};
pub use mapping::{
    ndjson_columns, resolve, ColumnKind, MappingError, NdjsonColumns, Resolved, TargetColumn,
};
pub use options::{
    default_patterns, merge_options, parse_options, ColumnMapping, CompressionChoice, CsvOptions,
    Encoding, Format, OptionError, PipelineOptions, PipelineSettings, ProcessedAction,
};
pub use rows::{OpenError, Record, Resume, RowOutcome, RowReader, MAX_RECORD_BYTES_DEFAULT};
pub use share::{share_of, Share};

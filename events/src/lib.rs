//! The e-commerce event contract shared by the feeder and the ingestion worker:
//! the schema, CSV parsing and validation, and input-file selection. Free of PostgreSQL.

mod feed;
pub mod folders;
pub mod generic;
pub mod hash;
pub mod header;
pub mod ledger;
pub mod pgcopy;
pub mod pipeline;
pub mod plan;
pub mod reader;
pub mod schema;
pub mod select;
pub mod shown;
pub mod validate;

pub use hash::{Changed, PrefixHasher};
pub use header::{HeaderError, HeaderMap, NotText};
pub use reader::{
    EventReader, OpenError, Outcome, RawSource, Record, Resume, MAX_RECORD_BYTES_DEFAULT,
    RAW_TEXT_CAP,
};
pub use schema::{
    header_line, is_temporary_name, Column, DeviceType, Event, EventType, Price, COLUMNS,
};
pub use select::{
    classify, dir_mtime_ns, list_dir, sort_oldest_first, Candidate, EntryKind, FilePattern,
    Listing, PatternError, Skipped,
};
pub use validate::{parse_price, parse_timestamp, validate, RowError, ValidRow};

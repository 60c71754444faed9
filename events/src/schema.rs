//! The one definition of an event: its columns, their limits and their text form.
//! The feeder writes with it; the worker validates with it.

use serde::Serialize;
use std::fmt;

/// The required columns, in the order the feeder writes them.
pub const COLUMNS: [&str; 9] = [
    "user_id",
    "event_type",
    "product_id",
    "product_name",
    "product_category",
    "price",
    "event_timestamp",
    "session_id",
    "device_type",
];

/// Index of each column in [`COLUMNS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Column {
    UserId = 0,
    EventType = 1,
    ProductId = 2,
    ProductName = 3,
    ProductCategory = 4,
    Price = 5,
    EventTimestamp = 6,
    SessionId = 7,
    DeviceType = 8,
}

impl Column {
    pub const ALL: [Column; 9] = [
        Column::UserId,
        Column::EventType,
        Column::ProductId,
        Column::ProductName,
        Column::ProductCategory,
        Column::Price,
        Column::EventTimestamp,
        Column::SessionId,
        Column::DeviceType,
    ];

    pub fn name(self) -> &'static str {
        COLUMNS[self as usize]
    }

    /// Maximum length in characters for the free-text columns (the `varchar(n)` of the table).
    pub fn max_chars(self) -> Option<usize> {
        match self {
            Column::UserId | Column::ProductId => Some(50),
            Column::ProductName => Some(200),
            Column::ProductCategory | Column::SessionId => Some(100),
            _ => None,
        }
    }
}

/// Largest price allowed is strictly below this many whole units (`numeric(10,2)`).
pub const PRICE_LIMIT_UNITS: i64 = 100_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    View,
    Purchase,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::View => "view",
            EventType::Purchase => "purchase",
        }
    }
    pub fn parse(s: &[u8]) -> Option<Self> {
        match s {
            b"view" => Some(EventType::View),
            b"purchase" => Some(EventType::Purchase),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceType {
    Mobile,
    Desktop,
    Tablet,
}

impl DeviceType {
    pub const ALL: [DeviceType; 3] = [DeviceType::Mobile, DeviceType::Desktop, DeviceType::Tablet];
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceType::Mobile => "mobile",
            DeviceType::Desktop => "desktop",
            DeviceType::Tablet => "tablet",
        }
    }
    pub fn parse(s: &[u8]) -> Option<Self> {
        match s {
            b"mobile" => Some(DeviceType::Mobile),
            b"desktop" => Some(DeviceType::Desktop),
            b"tablet" => Some(DeviceType::Tablet),
            _ => None,
        }
    }
}

/// A price in cents; printed as `19.99`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Price(pub i64);

impl Price {
    pub fn cents(self) -> i64 {
        self.0
    }
}

impl fmt::Display for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

impl Serialize for Price {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// An owned event, as a producer writes it. Field order is the file's column order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    pub user_id: String,
    pub event_type: EventType,
    pub product_id: String,
    pub product_name: String,
    pub product_category: String,
    pub price: Price,
    /// Written as RFC 3339 with microseconds and `Z`.
    #[serde(serialize_with = "ser_ts")]
    pub event_timestamp: chrono::DateTime<chrono::Utc>,
    pub session_id: String,
    pub device_type: DeviceType,
}

fn ser_ts<S: serde::Serializer>(
    t: &chrono::DateTime<chrono::Utc>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_str(&t.format("%Y-%m-%dT%H:%M:%S%.6fZ"))
}

/// The header line every producer should write (columns in contract order).
pub fn header_line() -> String {
    COLUMNS.join(",")
}

/// True for names a producer uses while a file is being written; the worker ignores them.
pub fn is_temporary_name(name: &str) -> bool {
    name.starts_with('.') || name.ends_with(".tmp") || name.ends_with(".part")
}

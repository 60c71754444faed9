//! Contract-breaking rows, injected on purpose to exercise the rejects path. Each kind breaks
//! exactly one rule; the kinds rotate.

use crate::row::{Draft, RowFormatter};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadKind {
    EventType,
    Price,
    PriceDecimals,
    Timestamp,
    Device,
    EmptyUserId,
    LongProductId,
    FieldCount,
}

impl BadKind {
    pub const ALL: [BadKind; 8] = [
        BadKind::EventType,
        BadKind::Price,
        BadKind::PriceDecimals,
        BadKind::Timestamp,
        BadKind::Device,
        BadKind::EmptyUserId,
        BadKind::LongProductId,
        BadKind::FieldCount,
    ];
}

const BAD_EVENT_TYPES: [&str; 3] = ["click", "VIEW", "add_to_cart"];
const BAD_PRICES: [&str; 4] = ["-19.99", "12,50", "$5.00", "abc"];
const BAD_TIMESTAMPS: [&str; 4] = [
    "2024-13-45T25:61:00Z",
    "yesterday",
    "01/05/2024 12:30",
    "2024-05-01T12:30:00.1234567Z",
];
const BAD_DEVICES: [&str; 3] = ["smartwatch", "Mobile", "tv"];

/// Writes bad rows through a `csv::Writer` (so quoting is still right: only the rule breaks).
pub struct BadRows {
    count: u64,
    scratch: Vec<u8>,
}

impl Default for BadRows {
    fn default() -> Self {
        Self::new()
    }
}

impl BadRows {
    pub fn new() -> Self {
        BadRows {
            count: 0,
            scratch: Vec::new(),
        }
    }

    /// Appends a bad row derived from `d` (with its terminator); returns its kind.
    pub fn write(&mut self, out: &mut Vec<u8>, d: &Draft<'_>, fmt: &mut RowFormatter) -> BadKind {
        let kind = BadKind::ALL[(self.count % BadKind::ALL.len() as u64) as usize];
        let variant = (self.count / BadKind::ALL.len() as u64) as usize;
        self.count += 1;

        self.scratch.clear();
        fmt.push_timestamp(&mut self.scratch, d.ts_us);
        let ts = std::str::from_utf8(&self.scratch).expect("ASCII timestamp");
        let user = format!("user_{}", d.user);
        let price = d.product.price.to_string();
        let mut fields: Vec<&str> = vec![
            &user,
            d.event_type.as_str(),
            &d.product.id,
            &d.product.name,
            d.product.category,
            &price,
            ts,
            d.session_id,
            d.device.as_str(),
        ];
        let long_id;
        let three_decimals;
        match kind {
            BadKind::EventType => fields[1] = BAD_EVENT_TYPES[variant % BAD_EVENT_TYPES.len()],
            BadKind::Price => fields[5] = BAD_PRICES[variant % BAD_PRICES.len()],
            BadKind::PriceDecimals => {
                three_decimals = format!("{price}9");
                fields[5] = &three_decimals;
            }
            BadKind::Timestamp => fields[6] = BAD_TIMESTAMPS[variant % BAD_TIMESTAMPS.len()],
            BadKind::Device => fields[8] = BAD_DEVICES[variant % BAD_DEVICES.len()],
            BadKind::EmptyUserId => fields[0] = "",
            BadKind::LongProductId => {
                long_id = format!("{}_{}", d.product.id, "x".repeat(50));
                fields[2] = &long_id;
            }
            BadKind::FieldCount => {
                if variant.is_multiple_of(2) {
                    fields.pop();
                } else {
                    fields.push("extra");
                }
            }
        }
        let mut wtr = csv::WriterBuilder::new()
            .has_headers(false)
            .flexible(true)
            .buffer_capacity(1024)
            .from_writer(out);
        wtr.write_record(&fields).expect("writing to memory");
        wtr.flush().expect("writing to memory");
        kind
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::product;
    use crate::row::header_bytes;
    use ecommerce_events::{DeviceType, EventReader, EventType, Outcome};
    use std::io::Write;

    #[test]
    fn every_kind_is_rejected_by_the_contract_reader() {
        let products: Vec<_> = (0..50).map(product).collect();
        let mut fmt = RowFormatter::new();
        let mut bad = BadRows::new();
        let mut buf = header_bytes();
        let n = BadKind::ALL.len() * 12;
        for i in 0..n {
            let d = Draft {
                user: i as u32,
                event_type: EventType::View,
                product: &products[i % products.len()],
                ts_us: 1_714_566_600_000_000 + i as i64,
                session_id: "sess_1",
                device: DeviceType::Tablet,
            };
            bad.write(&mut buf, &d, &mut fmt);
        }
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&buf).unwrap();
        f.flush().unwrap();
        let mut rdr = EventReader::open(f.path(), None).unwrap();
        let mut rejected = 0;
        while let Some(rec) = rdr.next_record().unwrap() {
            match rec.outcome {
                Outcome::Valid(v) => panic!("line {} accepted: {v:?}", rec.line),
                Outcome::Rejected { .. } => rejected += 1,
            }
        }
        assert_eq!(rejected, n);
    }
}

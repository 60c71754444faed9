//! Formats valid rows into a reused byte buffer, byte-for-byte what `csv::Writer` writes when it
//! serializes the contract's `Event` (the tests below prove it), without a `String` per event.

use crate::catalog::{render_fields, Product};
#[cfg(test)]
use ecommerce_events::Event;
use ecommerce_events::{DeviceType, EventType, COLUMNS};

/// The header line, as `csv::Writer` writes it when serializing `Event` (with terminator).
pub fn header_bytes() -> Vec<u8> {
    let mut v = render_fields(&COLUMNS).into_vec();
    v.push(b'\n');
    v
}

/// One valid event, by reference to the catalogue and the session.
#[derive(Debug, Clone, Copy)]
pub struct Draft<'a> {
    pub user: u32,
    pub event_type: EventType,
    pub product: &'a Product,
    /// Microseconds since the Unix epoch (1970 to year 9999).
    pub ts_us: i64,
    pub session_id: &'a str,
    pub device: DeviceType,
}

impl Draft<'_> {
    /// The same event as the contract's owned type.
    #[cfg(test)]
    pub fn to_event(self) -> Event {
        Event {
            user_id: format!("user_{}", self.user),
            event_type: self.event_type,
            product_id: self.product.id.clone(),
            product_name: self.product.name.clone(),
            product_category: self.product.category.to_string(),
            price: self.product.price,
            event_timestamp: chrono::DateTime::from_timestamp_micros(self.ts_us)
                .expect("timestamp in range"),
            session_id: self.session_id.to_string(),
            device_type: self.device,
        }
    }
}

/// Writes rows; remembers the formatted date and time of the last second it saw.
#[derive(Default)]
pub struct RowFormatter {
    cached_sec: Option<i64>,
    /// `YYYY-MM-DDTHH:MM:SS`
    cached: [u8; 19],
}

impl RowFormatter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one row with its `\n` terminator.
    pub fn write(&mut self, out: &mut Vec<u8>, d: &Draft<'_>) {
        out.extend_from_slice(b"user_");
        push_u32(out, d.user);
        out.push(b',');
        out.extend_from_slice(d.event_type.as_str().as_bytes());
        out.push(b',');
        out.extend_from_slice(&d.product.csv);
        out.push(b',');
        self.push_timestamp(out, d.ts_us);
        out.push(b',');
        out.extend_from_slice(d.session_id.as_bytes());
        out.push(b',');
        out.extend_from_slice(d.device.as_str().as_bytes());
        out.push(b'\n');
    }

    /// `2024-05-01T12:30:00.000000Z`, as the `Event` serializer writes it.
    pub fn push_timestamp(&mut self, out: &mut Vec<u8>, us: i64) {
        let secs = us.div_euclid(1_000_000);
        let micros = us.rem_euclid(1_000_000) as u32;
        if self.cached_sec != Some(secs) {
            self.cached = format_second(secs);
            self.cached_sec = Some(secs);
        }
        out.extend_from_slice(&self.cached);
        out.push(b'.');
        push_padded(out, micros, 6);
        out.push(b'Z');
    }
}

fn push_u32(out: &mut Vec<u8>, mut n: u32) {
    let mut tmp = [0u8; 10];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

fn push_padded(out: &mut Vec<u8>, mut n: u32, width: usize) {
    let mut tmp = [b'0'; 10];
    for i in (0..width).rev() {
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.extend_from_slice(&tmp[..width]);
}

fn put2(dst: &mut [u8], v: u32) {
    dst[0] = b'0' + (v / 10) as u8;
    dst[1] = b'0' + (v % 10) as u8;
}

/// `YYYY-MM-DDTHH:MM:SS` of a second since the Unix epoch (years 0 to 9999).
fn format_second(secs: i64) -> [u8; 19] {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400) as u32;
    let (y, m, d) = civil_from_days(days);
    let mut b = *b"0000-00-00T00:00:00";
    let y = y.clamp(0, 9999) as u32;
    put2(&mut b[0..2], y / 100);
    put2(&mut b[2..4], y % 100);
    put2(&mut b[5..7], m);
    put2(&mut b[8..10], d);
    put2(&mut b[11..13], sod / 3600);
    put2(&mut b[14..16], sod / 60 % 60);
    put2(&mut b[17..19], sod % 60);
    b
}

/// Gregorian date of a day number since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::product;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn serialized(events: &[Event]) -> Vec<u8> {
        let mut w = csv::Writer::from_writer(Vec::new());
        for e in events {
            w.serialize(e).unwrap();
        }
        w.into_inner().unwrap()
    }

    #[test]
    fn rows_are_exactly_what_csv_writer_serializes() {
        let mut rng = ChaCha8Rng::seed_from_u64(42);
        let products: Vec<Product> = (0..3_000).map(product).collect();
        let sessions = ["sess_0123456789abcdef", "s", "sess_ffffffffffffffff"];
        let mut fmt = RowFormatter::new();
        let mut fast = header_bytes();
        let mut events = Vec::new();
        let mut ts: i64 = 0;
        for i in 0..20_000u32 {
            // Whole range of the clock, and runs of events within one second.
            ts = if i % 3 == 0 {
                rng.random_range(0..253_402_300_799_999_999i64)
            } else {
                ts + rng.random_range(0..700_000i64)
            };
            let d = Draft {
                user: if i % 100 == 0 {
                    u32::MAX
                } else {
                    rng.random_range(0..100_000)
                },
                event_type: if rng.random_bool(0.1) {
                    EventType::Purchase
                } else {
                    EventType::View
                },
                product: &products[rng.random_range(0..products.len() as u32) as usize],
                ts_us: ts.min(253_402_300_799_999_999),
                session_id: sessions[(i % 3) as usize],
                device: DeviceType::ALL[(i % 3) as usize],
            };
            fmt.write(&mut fast, &d);
            events.push(d.to_event());
        }
        let reference = serialized(&events);
        assert!(fast == reference, "fast rows differ from csv::Writer");
        // Quoting was exercised.
        assert!(reference.windows(2).any(|w| w == b"\"\""));
    }

    #[test]
    fn header_is_what_serializing_writes() {
        let e = Draft {
            user: 1,
            event_type: EventType::View,
            product: &product(0),
            ts_us: 0,
            session_id: "x",
            device: DeviceType::Mobile,
        }
        .to_event();
        let all = serialized(&[e]);
        let header = header_bytes();
        assert_eq!(&all[..header.len()], &header[..]);
        assert_eq!(
            std::str::from_utf8(&header).unwrap().trim_end(),
            ecommerce_events::header_line()
        );
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_844), (2024, 5, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(&format_second(1_714_566_600), b"2024-05-01T12:30:00");
    }
}

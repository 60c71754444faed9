//! Rows of events: sessions over the catalogue, timestamped by the clock, formatted into a byte
//! buffer; now and then replaced by a contract-breaking row.

use crate::badrows::BadRows;
use crate::catalog::Catalogue;
use crate::clock::FileTimes;
use crate::row::{Draft, RowFormatter};
use crate::sessions::Sessions;
use ecommerce_events::EventType;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// What was written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Valid events (views + purchases).
    pub events: u64,
    pub views: u64,
    pub purchases: u64,
    pub bad_rows: u64,
}

impl Counts {
    pub fn rows(&self) -> u64 {
        self.events + self.bad_rows
    }
    pub fn add(&mut self, o: &Counts) {
        self.events += o.events;
        self.views += o.views;
        self.purchases += o.purchases;
        self.bad_rows += o.bad_rows;
    }
}

pub struct Generator {
    rng: ChaCha8Rng,
    catalogue: Catalogue,
    sessions: Sessions,
    fmt: RowFormatter,
    bad: BadRows,
    bad_row_ratio: f64,
}

impl Generator {
    pub fn new(
        seed: u64,
        users: u32,
        products: u32,
        conversion_rate: f64,
        bad_row_ratio: f64,
    ) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let catalogue = Catalogue::new(products, &mut rng);
        let sessions = Sessions::new(users, conversion_rate, &mut rng);
        Generator {
            rng,
            catalogue,
            sessions,
            fmt: RowFormatter::new(),
            bad: BadRows::new(),
            bad_row_ratio,
        }
    }

    /// Appends row `i` of a file (with its terminator) to `out`.
    pub fn row(&mut self, out: &mut Vec<u8>, times: &FileTimes, i: u64, counts: &mut Counts) {
        let bad = self.bad_row_ratio > 0.0 && self.rng.random_bool(self.bad_row_ratio);
        let step = if bad {
            self.sessions
                .next_unrecorded(&self.catalogue, &mut self.rng)
        } else {
            self.sessions.next(&self.catalogue, &mut self.rng)
        };
        let ts_us = times.at(i, &mut self.rng);
        let session = self.sessions.get(step.slot);
        let draft = Draft {
            user: session.user,
            event_type: step.event_type,
            product: self.catalogue.get(step.product),
            ts_us,
            session_id: &session.id,
            device: session.device,
        };
        if bad {
            self.bad.write(out, &draft, &mut self.fmt);
            counts.bad_rows += 1;
        } else {
            self.fmt.write(out, &draft);
            counts.events += 1;
            match step.event_type {
                EventType::View => counts.views += 1,
                EventType::Purchase => counts.purchases += 1,
            }
        }
    }
}

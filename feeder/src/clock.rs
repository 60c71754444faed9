//! Event time: a simulated clock (from --start-time, advancing by the file span per file, so a
//! run is reproducible) or the real clock (UTC now). Wall-clock pacing is separate (pacing.rs).

use rand::Rng;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Clock {
    simulated: bool,
    /// Microseconds since the Unix epoch: no event of a later file is earlier than this.
    cursor_us: i64,
    span_us: i64,
}

/// The time slots of one file's rows: row `i` happens in `[start + i*step, start + (i+1)*step)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileTimes {
    pub start_us: i64,
    pub step_us: i64,
}

impl FileTimes {
    /// Timestamp of row `i`: a random instant within its slot, so timestamps never decrease.
    pub fn at(&self, i: u64, rng: &mut impl Rng) -> i64 {
        let base = self.start_us + i as i64 * self.step_us;
        if self.step_us > 1 {
            base + rng.random_range(0..self.step_us as u64) as i64
        } else {
            base
        }
    }
}

fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

impl Clock {
    /// `start`: simulated clock; `None`: real clock. `span`: simulated time one file covers.
    pub fn new(start: Option<chrono::DateTime<chrono::Utc>>, span: Duration) -> Self {
        Clock {
            simulated: start.is_some(),
            cursor_us: start.map(|t| t.timestamp_micros()).unwrap_or_else(now_us),
            span_us: span.as_micros().min(i64::MAX as u128) as i64,
        }
    }

    /// Times for the next file of `rows` rows, and advances the clock past it.
    /// Simulated: the file covers `span` (at least one microsecond per row). Real: the rows
    /// happen now, one microsecond apart.
    pub fn next_file(&mut self, rows: u64) -> FileTimes {
        let rows = rows.max(1) as i64;
        if self.simulated {
            let step_us = (self.span_us / rows).max(1);
            let t = FileTimes {
                start_us: self.cursor_us,
                step_us,
            };
            self.cursor_us += (rows * step_us).max(self.span_us);
            t
        } else {
            let t = FileTimes {
                start_us: now_us().max(self.cursor_us),
                step_us: 1,
            };
            self.cursor_us = t.start_us + rows;
            t
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn simulated_clock_advances_by_the_span() {
        let start = chrono::DateTime::from_timestamp(1_714_566_600, 0).unwrap();
        let mut c = Clock::new(Some(start), Duration::from_secs(5));
        let a = c.next_file(10);
        let b = c.next_file(10);
        assert_eq!(a.start_us, 1_714_566_600_000_000);
        assert_eq!(a.step_us, 500_000);
        assert_eq!(b.start_us, a.start_us + 5_000_000);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let ts: Vec<i64> = (0..10).map(|i| a.at(i, &mut rng)).collect();
        assert!(ts.windows(2).all(|w| w[0] <= w[1]));
        assert!(*ts.last().unwrap() < b.start_us);
    }

    #[test]
    fn zero_span_still_moves_forward() {
        let start = chrono::DateTime::from_timestamp(0, 0).unwrap();
        let mut c = Clock::new(Some(start), Duration::ZERO);
        let a = c.next_file(3);
        let b = c.next_file(3);
        assert_eq!((a.start_us, a.step_us, b.start_us), (0, 1, 3));
    }
}

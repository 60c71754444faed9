//! Wall-clock pacing between files, and the stop request (Ctrl-C) that interrupts any wait.

use crate::cli::Pacing;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Set once by Ctrl-C (or SIGTERM); wakes a waiting pacer at once.
#[derive(Clone, Default)]
pub struct Stop(Arc<StopInner>);

#[derive(Default)]
struct StopInner {
    flag: AtomicBool,
    lock: Mutex<()>,
    cond: Condvar,
}

impl Stop {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn request(&self) {
        let _g = self.0.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.0.flag.store(true, Ordering::SeqCst);
        self.0.cond.notify_all();
    }

    pub fn requested(&self) -> bool {
        self.0.flag.load(Ordering::Relaxed)
    }

    /// Sleeps up to `d`; returns early (true) if a stop is requested.
    pub fn wait(&self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        let mut g = self.0.lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if self.0.flag.load(Ordering::SeqCst) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            g = self
                .0
                .cond
                .wait_timeout(g, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// Decides when the next file is due: one file every interval after the previous one was due
/// (no drift), never catching up in a burst after falling behind.
pub struct Pacer {
    interval: Option<Duration>,
    next_due: Instant,
}

impl Pacer {
    pub fn new(pacing: Pacing) -> Self {
        Pacer {
            interval: match pacing {
                Pacing::Burst => None,
                Pacing::Every(d) if d.is_zero() => None,
                Pacing::Every(d) => Some(d),
            },
            next_due: Instant::now(),
        }
    }

    /// Waits until the next file is due, calling `tick` at least every `tick_every`.
    /// Returns false if a stop was requested meanwhile.
    pub fn wait_next(&mut self, stop: &Stop, tick_every: Duration, mut tick: impl FnMut()) -> bool {
        let Some(interval) = self.interval else {
            return !stop.requested();
        };
        self.next_due += interval;
        let now = Instant::now();
        if self.next_due < now {
            self.next_due = now;
        }
        loop {
            let now = Instant::now();
            if now >= self.next_due {
                return !stop.requested();
            }
            if stop.wait((self.next_due - now).min(tick_every)) {
                return false;
            }
            tick();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_interrupts_a_wait() {
        let stop = Stop::new();
        let s2 = stop.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            s2.request();
        });
        let started = Instant::now();
        let mut p = Pacer::new(Pacing::Every(Duration::from_secs(60)));
        assert!(!p.wait_next(&stop, Duration::from_secs(1), || {}));
        assert!(started.elapsed() < Duration::from_secs(30));
        t.join().unwrap();
    }

    #[test]
    fn burst_never_waits() {
        let stop = Stop::new();
        let mut p = Pacer::new(Pacing::Burst);
        assert!(p.wait_next(&stop, Duration::from_secs(1), || panic!("no tick")));
    }
}

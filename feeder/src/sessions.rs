//! Browsing sessions: one user, one device, one `session_id`; several views, sometimes a
//! purchase of a product viewed earlier in the same session. Several sessions are open at once
//! and their events interleave.

use crate::catalog::Catalogue;
use ecommerce_events::{DeviceType, EventType};
use rand::Rng;

/// Sessions open at the same time (fewer if there are fewer users).
const CONCURRENT_SESSIONS: u32 = 32;
/// Views per session: 1 + a geometric number with this continuation probability (mean ~5).
const MORE_VIEWS: f64 = 0.8;
const MAX_VIEWS: u32 = 40;

#[derive(Debug, Clone)]
pub struct Session {
    pub user: u32,
    pub device: DeviceType,
    pub id: String,
    viewed: Vec<u32>,
    views_left: u32,
    pending_purchase: Option<u32>,
}

impl Session {
    fn start(users: u32, rng: &mut impl Rng) -> Self {
        let user = rng.random_range(1..=users);
        // Device mix: mobile 60%, desktop 30%, tablet 10%.
        let device = match rng.random_range(0..10u32) {
            0..=5 => DeviceType::Mobile,
            6..=8 => DeviceType::Desktop,
            _ => DeviceType::Tablet,
        };
        let id = format!("sess_{:016x}", rng.random::<u64>());
        let mut views = 1;
        while views < MAX_VIEWS && rng.random_bool(MORE_VIEWS) {
            views += 1;
        }
        Session {
            user,
            device,
            id,
            viewed: Vec::with_capacity(views as usize),
            views_left: views,
            pending_purchase: None,
        }
    }

    fn done(&self) -> bool {
        self.views_left == 0 && self.pending_purchase.is_none()
    }
}

/// What happens next in a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub slot: usize,
    pub event_type: EventType,
    pub product: u32,
}

pub struct Sessions {
    open: Vec<Session>,
    users: u32,
    conversion_rate: f64,
}

impl Sessions {
    pub fn new(users: u32, conversion_rate: f64, rng: &mut impl Rng) -> Self {
        let open = (0..CONCURRENT_SESSIONS.min(users))
            .map(|_| Session::start(users, rng))
            .collect();
        Sessions {
            open,
            users,
            conversion_rate,
        }
    }

    pub fn get(&self, slot: usize) -> &Session {
        &self.open[slot]
    }

    /// An open session, chosen at random; a finished one is replaced by a new session first.
    fn pick(&mut self, rng: &mut impl Rng) -> usize {
        let slot = rng.random_range(0..self.open.len() as u32) as usize;
        if self.open[slot].done() {
            self.open[slot] = Session::start(self.users, rng);
        }
        slot
    }

    /// The next event of some session, recorded in its history.
    pub fn next(&mut self, catalogue: &Catalogue, rng: &mut impl Rng) -> Step {
        let slot = self.pick(rng);
        let conversion_rate = self.conversion_rate;
        let s = &mut self.open[slot];
        if let Some(product) = s.pending_purchase.take() {
            return Step {
                slot,
                event_type: EventType::Purchase,
                product,
            };
        }
        let product = catalogue.sample(rng);
        s.viewed.push(product);
        s.views_left -= 1;
        if conversion_rate > 0.0 && rng.random_bool(conversion_rate) {
            // Usually the product just viewed, sometimes one viewed earlier in the session.
            let bought = if s.viewed.len() > 1 && rng.random_bool(0.3) {
                s.viewed[rng.random_range(0..s.viewed.len() as u32) as usize]
            } else {
                product
            };
            s.pending_purchase = Some(bought);
        }
        Step {
            slot,
            event_type: EventType::View,
            product,
        }
    }

    /// A session and product for a row that will be made invalid: the session's history is
    /// left alone, so no later purchase refers to a view that was rejected.
    pub fn next_unrecorded(&mut self, catalogue: &Catalogue, rng: &mut impl Rng) -> Step {
        let slot = self.pick(rng);
        Step {
            slot,
            event_type: EventType::View,
            product: catalogue.sample(rng),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use std::collections::{HashMap, HashSet};

    #[test]
    fn purchases_follow_views_of_the_same_session() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let cat = Catalogue::new(100, &mut rng);
        let mut s = Sessions::new(50, 0.2, &mut rng);
        let mut viewed: HashMap<String, HashSet<u32>> = HashMap::new();
        let mut owner: HashMap<String, (u32, DeviceType)> = HashMap::new();
        let (mut views, mut purchases) = (0, 0);
        for _ in 0..50_000 {
            let step = s.next(&cat, &mut rng);
            let sess = s.get(step.slot);
            let o = owner
                .entry(sess.id.clone())
                .or_insert((sess.user, sess.device));
            assert_eq!(*o, (sess.user, sess.device));
            let v = viewed.entry(sess.id.clone()).or_default();
            match step.event_type {
                EventType::View => {
                    v.insert(step.product);
                    views += 1;
                }
                EventType::Purchase => {
                    assert!(v.contains(&step.product));
                    purchases += 1;
                }
            }
        }
        let rate = purchases as f64 / views as f64;
        assert!((0.15..0.25).contains(&rate), "conversion {rate}");
        assert!(owner.len() > 1_000, "sessions end and new ones start");
    }

    #[test]
    fn device_mix() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut n = [0u32; 3];
        for _ in 0..30_000 {
            match Session::start(10, &mut rng).device {
                DeviceType::Mobile => n[0] += 1,
                DeviceType::Desktop => n[1] += 1,
                DeviceType::Tablet => n[2] += 1,
            }
        }
        assert!((17_000..19_000).contains(&n[0]), "{n:?}");
        assert!((8_000..10_000).contains(&n[1]), "{n:?}");
        assert!((2_500..3_500).contains(&n[2]), "{n:?}");
    }
}

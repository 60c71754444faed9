//! Which of a pipeline's workers owns a file: a deterministic split of file names.
//!
//! A pipeline with N workers gives each file to exactly one of them, by a stable hash of its
//! name: worker k plans, ingests, archives and accounts for the files whose share is k, and
//! never looks at the others. No coordination is needed while N stays the same; while N changes
//! (workers starting and stopping), two workers may briefly both think they own a file, and the
//! claim each ingesting transaction takes on the file (a transaction-level advisory lock, then
//! the ledger row read under it) decides: the other skips the file. A whole file (every chunk of
//! it) belongs to one worker.

/// Most workers one pipeline may have.
pub const MAX_WORKERS: u32 = 8;

/// One worker's part of a pipeline's files: worker `index` of `of`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Share {
    pub index: u32,
    pub of: u32,
}

impl Default for Share {
    fn default() -> Share {
        Share::ALL
    }
}

impl Share {
    /// The only worker of a pipeline (all files).
    pub const ALL: Share = Share { index: 0, of: 1 };

    /// Worker `index` of `of` workers (`of` at least 1).
    pub fn new(index: u32, of: u32) -> Share {
        Share {
            index,
            of: of.max(1),
        }
    }

    /// This worker owns the file named `name`.
    pub fn owns(self, name: &str) -> bool {
        self.of <= 1 || share_of(name, self.of) == self.index
    }

    /// This worker is one too many (the pipeline now has fewer workers): it stops.
    pub fn surplus(self) -> bool {
        self.index >= self.of
    }
}

/// The worker (0-based, below `workers`) that owns the file named `name`: FNV-1a of the name,
/// so the split is the same in every process, every build and every release.
pub fn share_of(name: &str, workers: u32) -> u32 {
    if workers <= 1 {
        return 0;
    }
    (file_key(name) % u64::from(workers)) as u32
}

/// A stable 64-bit key of a file name (FNV-1a), also the key of the file's claim.
pub fn file_key(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_worker_owns_everything() {
        for n in ["a.csv", "", "events_000001.csv"] {
            assert!(Share::ALL.owns(n));
            assert_eq!(share_of(n, 1), 0);
            assert_eq!(share_of(n, 0), 0);
        }
    }

    #[test]
    fn every_file_has_exactly_one_owner() {
        for of in 1..=MAX_WORKERS {
            for i in 0..500 {
                let name = format!("events_{i:06}.csv");
                let owners = (0..of).filter(|&k| Share::new(k, of).owns(&name)).count();
                assert_eq!(owners, 1, "{name} with {of} workers");
            }
        }
    }

    #[test]
    fn the_split_is_even_for_sequential_names() {
        // The feeder's and most producers' names differ only in a counter.
        let of = 4;
        let mut counts = [0usize; 4];
        for i in 0..10_000 {
            counts[share_of(&format!("events_{i:06}.csv"), of) as usize] += 1;
        }
        for c in counts {
            assert!((2_200..=2_800).contains(&c), "uneven split: {counts:?}");
        }
    }

    #[test]
    fn the_split_is_stable() {
        // Fixed values: a change of the hash would move files between running workers of
        // different builds (the claims keep that safe, but it must not happen by accident).
        assert_eq!(file_key(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(file_key("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(
            share_of("events_000001.csv", 4),
            share_of("events_000001.csv", 4)
        );
    }

    #[test]
    fn surplus_workers_stop() {
        assert!(Share::new(3, 2).surplus());
        assert!(!Share::new(1, 2).surplus());
        assert_eq!(Share::new(0, 0).of, 1);
    }
}

//! Lowest-free allocation of VIP indices and backend slots.
//!
//! Lowest-free keeps the maps dense and makes allocation deterministic for a
//! given history, which keeps tests and map dumps readable. The pools are
//! rebuilt from the model for every operation, so they can never drift from
//! what the state actually uses; a slot released by an operation is
//! therefore not reusable within that same operation (it may still be named
//! by the old ring until publication completes).

/// A set of `u32` ids in `first..capacity` with lowest-free allocation.
#[derive(Clone, Debug)]
pub struct Pool {
    used: Vec<u64>,
    first: u32,
    capacity: u32,
    in_use: u32,
}

impl Pool {
    /// An empty pool handing out `first..capacity`.
    pub fn new(first: u32, capacity: u32) -> Self {
        Self {
            used: vec![0; (capacity as usize).div_ceil(64)],
            first,
            capacity,
            in_use: 0,
        }
    }

    /// Ids that can still be allocated.
    pub fn free(&self) -> u32 {
        self.capacity.saturating_sub(self.first) - self.in_use
    }

    /// Whether `id` is in use. Ids outside the pool's range read as in use,
    /// so they are never handed out.
    pub fn is_used(&self, id: u32) -> bool {
        if id < self.first || id >= self.capacity {
            return true;
        }
        self.used[id as usize / 64] & (1 << (id % 64)) != 0
    }

    /// Marks `id` used; false if it was used already or is out of range.
    pub fn mark(&mut self, id: u32) -> bool {
        if self.is_used(id) {
            return false;
        }
        self.used[id as usize / 64] |= 1 << (id % 64);
        self.in_use += 1;
        true
    }

    /// Allocates the lowest free id.
    pub fn alloc(&mut self) -> Option<u32> {
        let start_word = self.first as usize / 64;
        for (w, word) in self.used.iter().enumerate().skip(start_word) {
            if *word == u64::MAX {
                continue;
            }
            let mut free = !*word;
            if w == start_word {
                // Ids below `first` in the first word are not ours.
                free &= u64::MAX << (self.first % 64);
            }
            if free == 0 {
                continue;
            }
            let id = (w * 64) as u32 + free.trailing_zeros();
            if id >= self.capacity {
                return None;
            }
            self.mark(id);
            return Some(id);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_free_first_never_below_first() {
        let mut p = Pool::new(1, 130);
        assert_eq!(p.free(), 129);
        assert_eq!(p.alloc(), Some(1));
        assert_eq!(p.alloc(), Some(2));
        assert!(p.mark(4));
        assert!(!p.mark(4));
        assert!(!p.mark(0), "0 is reserved");
        assert!(!p.mark(130), "out of range");
        assert_eq!(p.alloc(), Some(3));
        assert_eq!(p.alloc(), Some(5));
        for id in 6..130 {
            assert!(p.mark(id));
        }
        assert_eq!(p.free(), 0);
        assert_eq!(p.alloc(), None);
    }

    #[test]
    fn exact_word_capacity() {
        let mut p = Pool::new(0, 64);
        for i in 0..64 {
            assert_eq!(p.alloc(), Some(i));
        }
        assert_eq!(p.alloc(), None);
    }
}

//! The session's only source of randomness: a PRNG seeded by the caller, so runs replay exactly.

/// A deterministic pseudo-random generator seeded by the caller.
#[derive(Clone, Debug)]
pub struct Rng(fastrand::Rng);

impl Rng {
    /// A generator whose whole output is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(fastrand::Rng::with_seed(seed))
    }

    /// A uniformly distributed value in `0..=max`.
    pub fn up_to(&mut self, max: u64) -> u64 {
        self.0.u64(0..=max)
    }

    /// A uniformly distributed 64-bit value.
    pub fn next_u64(&mut self) -> u64 {
        self.0.u64(..)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        let xs: Vec<u64> = (0..32).map(|_| a.up_to(1000)).collect();
        let ys: Vec<u64> = (0..32).map(|_| b.up_to(1000)).collect();
        assert_eq!(xs, ys);
        assert!(xs.iter().all(|&x| x <= 1000));
        let mut c = Rng::new(8);
        let zs: Vec<u64> = (0..32).map(|_| c.up_to(1000)).collect();
        assert_ne!(xs, zs);
    }

    #[test]
    fn up_to_zero_is_zero() {
        let mut r = Rng::new(1);
        assert_eq!(r.up_to(0), 0);
    }
}

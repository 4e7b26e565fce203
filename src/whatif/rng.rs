//! Random numbers for the engine: a key in, an independent stream out.
//!
//! Every draw comes from a [`Stream`] keyed by (seed, replication, entity,
//! purpose) — never from one global generator — so the same seed and inputs
//! give bit-identical results on any number of threads, and a baseline and
//! a scenario draw the same numbers for the same entity and purpose (common
//! random numbers: a change to one machine leaves the other machines' draws
//! untouched until they interact). Entities are keyed by a hash of their
//! id, so adding a machine does not shift anyone else's stream.
//!
//! The generator is SplitMix64 (Steele, Lea, Flood 2014): one 64-bit word
//! of state, statistically strong for simulation, and cheap to seed.

/// What a stream is drawn for; part of its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Processing times.
    Process,
    /// Running time to the next stop of one mode.
    StopBetween(u8),
    /// Duration of a stop of one mode.
    StopDuration(u8),
    /// Scrap and rework decisions.
    Quality,
    /// Interarrival times of an arrival stream.
    Arrival,
    /// Setup times.
    Setup,
}

impl Purpose {
    fn code(self) -> u64 {
        match self {
            Purpose::Process => 1,
            Purpose::StopBetween(m) => 0x100 | u64::from(m),
            Purpose::StopDuration(m) => 0x200 | u64::from(m),
            Purpose::Quality => 3,
            Purpose::Arrival => 4,
            Purpose::Setup => 5,
        }
    }
}

/// A stable 64-bit key of an entity id (FNV-1a): the same id gives the same
/// key in every run and every build.
pub fn entity_key(id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One independent stream of uniform numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream(u64);

impl Stream {
    /// The stream of `purpose` for `entity` in `replication` under `seed`.
    pub fn new(seed: u64, replication: u32, entity: u64, purpose: Purpose) -> Self {
        let mut s = mix(seed ^ 0x6A09_E667_F3BC_C908);
        s = mix(s ^ u64::from(replication).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        s = mix(s ^ entity);
        s = mix(s ^ purpose.code().wrapping_mul(0xD1B5_4A32_D192_ED03));
        Self(s)
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in (0, 1): never exactly 0, so `ln` is always finite.
    #[inline]
    pub fn open01(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    #[inline]
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.open01() < p
    }

    /// A standard normal deviate (Box–Muller, one of the pair).
    #[inline]
    pub fn normal(&mut self) -> f64 {
        let u1 = self.open01();
        let u2 = self.open01();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_keyed_and_repeatable() {
        let a: Vec<u64> = {
            let mut s = Stream::new(1, 0, entity_key("M1"), Purpose::Process);
            (0..4).map(|_| s.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let mut s = Stream::new(1, 0, entity_key("M1"), Purpose::Process);
            (0..4).map(|_| s.next_u64()).collect()
        };
        assert_eq!(a, b);
        for other in [
            Stream::new(2, 0, entity_key("M1"), Purpose::Process),
            Stream::new(1, 1, entity_key("M1"), Purpose::Process),
            Stream::new(1, 0, entity_key("M2"), Purpose::Process),
            Stream::new(1, 0, entity_key("M1"), Purpose::Quality),
        ] {
            let mut o = other;
            assert_ne!(a[0], o.next_u64());
        }
        let mut s = Stream::new(9, 3, 4, Purpose::Arrival);
        let mean = (0..100_000).map(|_| s.open01()).sum::<f64>() / 100_000.0;
        assert!((mean - 0.5).abs() < 0.01, "{mean}");
    }
}

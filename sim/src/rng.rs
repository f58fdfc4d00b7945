//! Every random stream of a run, derived by name from one root seed: the scenario's `seed`.
//!
//! # Derivation
//!
//! The stream named `name` with index `index` is the ChaCha8 keystream whose
//!
//! - **key** is the root seed expanded to 32 bytes, as `ChaCha8Rng::seed_from_u64(root)` expands
//!   it (rand_core's PCG32 expansion), and whose
//! - **stream number** (ChaCha's 64-bit nonce) is [`stream_id`]`(name, index)`: the 64-bit FNV-1a
//!   hash of the name's UTF-8 bytes followed by the index's 8 little-endian bytes.
//!
//! Every stream of a run shares the key and differs in the nonce, so distinct names or indexes
//! give independent keystreams (up to a collision of the 64-bit hash, about one in 2⁶⁴ per pair).
//! The hash is written out here, not taken from `std`'s hasher (whose keys are random per process)
//! nor from any map's order, so a name means the same stream on every machine and every run, and
//! adding a stream leaves the draws of the others as they were.
//!
//! # The streams of the simulator
//!
//! | name | index | what draws from it |
//! |---|---|---|
//! | [`AGENT`] | the agent's index | an open agent's arrivals; a closed agent's requests' retry jitter |
//! | [`REQUEST`] | the request's tag (agent index × 2³² + its sequence number) | an open agent's request's retry jitter |
//! | [`RETRY_JITTER`] | 0 | the jitter of tollgate's retry policy, outside the layer |
//! | [`PROVIDER`] | 0 | the mock provider's seed: the stream's first `u64` (its latency jitter and overload draws) |
//!
//! ```
//! use tollgate_core::rand_core::Rng;
//! use tollgate_sim::rng::{stream, AGENT};
//!
//! let mut a = stream(7, AGENT, 3);
//! let mut again = stream(7, AGENT, 3);
//! assert_eq!(a.next_u64(), again.next_u64());
//! assert_ne!(stream(7, AGENT, 4).next_u64(), stream(7, AGENT, 3).next_u64());
//! ```

use rand_chacha::ChaCha8Rng;
use tollgate_core::rand_core::{Rng, SeedableRng};

/// The stream of one agent, indexed by the agent's index.
pub const AGENT: &str = "agent";
/// The stream of one request of an open agent, indexed by the request's tag.
pub const REQUEST: &str = "request";
/// The stream of the retry policy's jitter in tollgate's strategies (index 0).
pub const RETRY_JITTER: &str = "retry-jitter";
/// The stream whose first `u64` seeds the mock provider (index 0).
pub const PROVIDER: &str = "provider";

/// The random stream `name`, `index` of the run with root seed `root` (see the module docs).
pub fn stream(root: u64, name: &str, index: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(root);
    rng.set_stream(stream_id(name, index));
    rng
}

/// A seed for a component that takes a `u64`: the first draw of stream `name`, `index`.
pub fn seed(root: u64, name: &str, index: u64) -> u64 {
    stream(root, name, index).next_u64()
}

/// The ChaCha stream number of `name`, `index`: 64-bit FNV-1a over the name's UTF-8 bytes, then
/// the index's 8 little-endian bytes.
pub fn stream_id(name: &str, index: u64) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    name.bytes()
        .chain(index.to_le_bytes())
        .fold(OFFSET, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(PRIME)
        })
}

/// A uniform draw in [0, 1).
pub(crate) fn unit(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// A random stream made on its first draw. Most strategies never draw for a request, and a
/// generator is large to make and to move.
#[derive(Debug)]
pub(crate) struct CallRng {
    root: u64,
    name: &'static str,
    index: u64,
    rng: Option<Box<ChaCha8Rng>>,
}

impl CallRng {
    /// The stream `name`, `index` of root seed `root`, not made yet.
    pub(crate) fn new(root: u64, name: &'static str, index: u64) -> Self {
        CallRng {
            root,
            name,
            index,
            rng: None,
        }
    }

    /// The generator, made now if this is its first draw.
    pub(crate) fn get(&mut self) -> &mut ChaCha8Rng {
        let (root, name, index) = (self.root, self.name, self.index);
        self.rng
            .get_or_insert_with(|| Box::new(stream(root, name, index)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn words(mut rng: ChaCha8Rng, n: usize) -> Vec<u64> {
        (0..n).map(|_| rng.next_u64()).collect()
    }

    /// The derivation is part of the outputs' meaning: a change of hash, key or nonce would
    /// change every run's draws, so it is pinned here.
    #[test]
    fn the_derivation_is_pinned() {
        // FNV-1a 64 of the empty input is its offset basis.
        assert_eq!(
            "".bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
            }),
            0xcbf2_9ce4_8422_2325
        );
        assert_eq!(stream_id(AGENT, 0), 0x9297_b2d9_b31b_9aa6);
        assert_eq!(stream_id(RETRY_JITTER, 0), 0x3f3b_4c9e_98b4_67ea);
        assert_eq!(stream(0, AGENT, 0).next_u64(), 9_322_376_107_144_657_998);
        assert_eq!(seed(1, PROVIDER, 0), 6_055_577_815_379_967_848);
    }

    #[test]
    fn the_same_name_gives_the_same_stream() {
        for (name, index) in [(AGENT, 0), (AGENT, 7), (REQUEST, 1 << 32), (PROVIDER, 0)] {
            assert_eq!(
                words(stream(42, name, index), 256),
                words(stream(42, name, index), 256)
            );
        }
    }

    /// Two streams of one root that differ in name or index look unrelated: no word in common
    /// at the same position, their XOR has half its bits set, and their uniform draws are
    /// uncorrelated.
    #[test]
    fn different_names_give_independent_streams() {
        const N: usize = 4_096;
        let pairs = [
            ((AGENT, 0), (REQUEST, 0)),
            ((AGENT, 0), (AGENT, 1)),
            ((RETRY_JITTER, 0), (PROVIDER, 0)),
            ((AGENT, 1), (REQUEST, 1)),
        ];
        for ((a, i), (b, j)) in pairs {
            let (x, y) = (words(stream(3, a, i), N), words(stream(3, b, j), N));
            assert!(x.iter().zip(&y).all(|(x, y)| x != y), "{a} {i} / {b} {j}");
            let ones: u32 = x.iter().zip(&y).map(|(x, y)| (x ^ y).count_ones()).sum();
            let share = f64::from(ones) / (64 * N) as f64;
            assert!((share - 0.5).abs() < 0.005, "{a} {i} / {b} {j}: {share}");
            let unit = |w: &u64| (w >> 11) as f64 / (1u64 << 53) as f64;
            let (u, v): (Vec<f64>, Vec<f64>) =
                (x.iter().map(unit).collect(), y.iter().map(unit).collect());
            let mean = |s: &[f64]| s.iter().sum::<f64>() / N as f64;
            let (mu, mv) = (mean(&u), mean(&v));
            let cov: f64 = u
                .iter()
                .zip(&v)
                .map(|(a, b)| (a - mu) * (b - mv))
                .sum::<f64>();
            let var = |s: &[f64], m: f64| s.iter().map(|a| (a - m) * (a - m)).sum::<f64>();
            let corr = cov / (var(&u, mu) * var(&v, mv)).sqrt();
            assert!(corr.abs() < 0.05, "{a} {i} / {b} {j}: correlation {corr}");
        }
    }

    proptest! {
        #[test]
        fn distinct_names_or_indexes_give_distinct_streams(
            root in any::<u64>(),
            a in "[a-z-]{0,12}",
            b in "[a-z-]{0,12}",
            i in any::<u64>(),
            j in any::<u64>(),
        ) {
            let first = |name: &str, index| stream(root, name, index).next_u64();
            prop_assert_eq!(first(&a, i), first(&a, i));
            if (&a, i) != (&b, j) {
                prop_assert_ne!(stream_id(&a, i), stream_id(&b, j));
                prop_assert_ne!(first(&a, i), first(&b, j));
            }
        }
    }
}

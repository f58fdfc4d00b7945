//! [`RefillEstimate`]: the rate a provider's limit really refills at for this client, from the
//! `remaining` and `reset` it reports.

use std::time::Duration;

/// The rate, in units per second, at which a provider's limit refills for this client, inferred
/// from what its answers report.
///
/// A provider that limits `ρ` units per period `P` keeps a bucket of one period's worth,
/// `C = ρ·P`, replenished continuously (Anthropic's documented model). An answer reports what
/// remains, `r` (the bucket's content `x`, rounded down), and the time until the bucket is full
/// again, `reset = (C − x) / ρ`. Then `reset = P − x/ρ`, so each answer bounds the rate
///
/// `r / (P − reset) ≤ ρ < (r + 1) / (P − reset)`
///
/// without knowing `C`: when another client takes a share of the key, or the key's real limit is
/// not the one configured, the answers tell the rate that is really left. An answer with a
/// `reset` of a period or more (a bucket in debt) says nothing and is skipped.
///
/// The estimate keeps the bounds of the last [`SAMPLES`](Self::SAMPLES) answers. Once it has at
/// least [`MIN_SAMPLES`](Self::MIN_SAMPLES) and they agree (the largest lower bound is within
/// [`TOLERANCE`](Self::TOLERANCE) of the smallest upper bound), the estimate is trusted, and from
/// then on every answer that agrees with it narrows it further (their intersection), however old
/// the answers that narrowed it: a bucket that is nearly empty, as it is under a client that uses
/// all it may, reports `r` of 0 or 1 and bounds the rate only loosely, so the tight bounds of
/// fuller moments must not be forgotten. The rate is the middle of the bounds: off the truth by
/// at most half the width of what the answers allow. An answer that disagrees with the trusted
/// bounds drops them for those of the last answers, so answers from before and after a change of
/// the real rate disagree and the estimate is not trusted until the samples agree again; so do
/// answers from a provider of another model (a fixed window, where `r / (P − reset)` is what
/// remains over the time elapsed in the window).
///
/// ```
/// use std::time::Duration;
/// use tollgate_core::RefillEstimate;
///
/// // A per-minute bucket that really refills at 70 a minute (told 100), seen at eight fill
/// // levels `x`: `floor(x)` remain, full again in (70 − x) / (70/60) s.
/// let minute = Duration::from_secs(60);
/// let mut e = RefillEstimate::new();
/// for x in [20.0, 35.5, 3.9, 61.0, 12.25, 48.0, 7.5, 30.0] {
///     let reset = Duration::from_secs_f64((70.0 - x) / (70.0 / 60.0));
///     e.observe(f64::floor(x) as u64, reset, minute);
/// }
/// let per_minute = e.rate().unwrap() * 60.0;
/// // Within half the width of the bounds the answers allow: here 70 to 71.1 a minute.
/// assert!((70.0..71.1).contains(&per_minute), "{per_minute}");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RefillEstimate {
    /// `(lower, upper)` bounds of the rate, per second, of the last answers (a ring).
    bounds: [(f64, f64); RefillEstimate::SAMPLES],
    len: usize,
    next: usize,
    /// The trusted bounds: those of the last answers once they agreed, narrowed by every answer
    /// since that agreed with them.
    agreed: Option<(f64, f64)>,
}

impl RefillEstimate {
    /// Answers whose bounds are kept.
    pub const SAMPLES: usize = 16;
    /// Answers needed before the estimate is trusted.
    pub const MIN_SAMPLES: usize = 8;
    /// How far, as a fraction, the largest lower bound may exceed the smallest upper bound
    /// (rounding of the reported times) for the samples to agree.
    pub const TOLERANCE: f64 = 0.01;

    /// An estimate with no samples.
    pub const fn new() -> Self {
        RefillEstimate {
            bounds: [(0.0, 0.0); RefillEstimate::SAMPLES],
            len: 0,
            next: 0,
            agreed: None,
        }
    }

    /// Takes one answer's report: `remaining` units, full again in `until_full`, of a limit per
    /// `period`. Returns the bounds of the rate, per second, it gave, if any.
    pub fn observe(
        &mut self,
        remaining: u64,
        until_full: Duration,
        period: Duration,
    ) -> Option<(f64, f64)> {
        if until_full >= period {
            return None;
        }
        let elapsed = (period - until_full).as_secs_f64();
        let bounds = (
            remaining as f64 / elapsed,
            (remaining as f64 + 1.0) / elapsed,
        );
        if !bounds.1.is_finite() {
            return None;
        }
        self.bounds[self.next] = bounds;
        self.next = (self.next + 1) % Self::SAMPLES;
        self.len = (self.len + 1).min(Self::SAMPLES);
        self.agreed = match self.agreed {
            Some(trusted) => agreeing(trusted, bounds).or_else(|| self.recent()),
            None => self.recent(),
        };
        Some(bounds)
    }

    /// The bounds the last answers agree on, if they are enough.
    fn recent(&self) -> Option<(f64, f64)> {
        if self.len < Self::MIN_SAMPLES {
            return None;
        }
        self.bounds[..self.len]
            .iter()
            .try_fold((0.0, f64::INFINITY), |a, &b| agreeing(a, b))
            .filter(|&(lower, _)| lower > 0.0)
    }

    /// The estimate, per second, once trusted: the middle of the largest lower bound and the
    /// smallest upper bound of the kept samples.
    pub fn rate(&self) -> Option<f64> {
        let (lower, upper) = self.bounds()?;
        Some((lower + upper) / 2.0)
    }

    /// The bounds the kept samples agree on, per second, once trusted: the rate is at least the
    /// first and, unless the samples only just agree, at most the second.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tollgate_core::RefillEstimate;
    /// let mut e = RefillEstimate::new();
    /// for _ in 0..RefillEstimate::MIN_SAMPLES {
    ///     // 10 left, full in 50 s of a minute: between 10 and 11 per 10 s.
    ///     e.observe(10, Duration::from_secs(50), Duration::from_secs(60));
    /// }
    /// assert_eq!(e.bounds(), Some((1.0, 1.1)));
    /// ```
    pub fn bounds(&self) -> Option<(f64, f64)> {
        // Samples that only just agree (lower above upper within the tolerance): both at the
        // lower.
        self.agreed.map(|(lower, upper)| (lower, upper.max(lower)))
    }
}

/// The intersection of two bounds of a rate (the largest lower, the smallest upper, kept as they
/// are so that the tolerance never compounds), if they agree within
/// [`TOLERANCE`](RefillEstimate::TOLERANCE).
fn agreeing(a: (f64, f64), b: (f64, f64)) -> Option<(f64, f64)> {
    let lower = a.0.max(b.0);
    let upper = a.1.min(b.1);
    (lower <= upper * (1.0 + RefillEstimate::TOLERANCE)).then_some((lower, upper))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MINUTE: Duration = Duration::from_secs(60);

    proptest! {
        /// Any states of a continuously refilled bucket of one period's worth give a rate within
        /// the bounds that every report allows.
        #[test]
        fn a_refilled_bucket_tells_its_rate(per_min in 1u64..100_000, fill in prop::collection::vec(0.0f64..1.0, 8..=RefillEstimate::SAMPLES)) {
            let rho = per_min as f64 / 60.0;
            let mut e = RefillEstimate::new();
            let (mut lower, mut upper) = (0.0f64, f64::INFINITY);
            for f in fill {
                let x = per_min as f64 * f;
                let r = x.floor();
                let elapsed = x / rho;
                lower = lower.max(r / elapsed);
                upper = upper.min((r + 1.0) / elapsed);
                let reset = (per_min as f64 - x) / rho;
                e.observe(r as u64, Duration::from_secs_f64(reset), MINUTE);
            }
            prop_assert!(lower <= rho && rho <= upper);
            match e.rate() {
                Some(got) => {
                    prop_assert!(got >= lower * (1.0 - 1e-6) && got <= upper * (1.0 + 1e-6), "{got} outside [{lower}, {upper}]");
                    prop_assert!((got - rho).abs() <= (upper - lower) / 2.0 + 1e-6 * rho);
                }
                // Only when no report remained anything.
                None => prop_assert_eq!(lower, 0.0),
            }
        }
    }

    /// A fixed window (remaining over time elapsed in it) gives samples that disagree.
    #[test]
    fn a_fixed_window_is_not_trusted() {
        let mut e = RefillEstimate::new();
        // 100 a minute, 1.5 used a second: at 5, 10, ... 55 s into the window.
        for s in (5..60).step_by(5) {
            let remaining = 100 - (1.5 * s as f64) as u64;
            e.observe(remaining, Duration::from_secs(60 - s), MINUTE);
        }
        assert_eq!(e.rate(), None);
    }

    #[test]
    fn answers_that_say_nothing_are_skipped() {
        let mut e = RefillEstimate::new();
        assert_eq!(e.observe(5, MINUTE, MINUTE), None);
        assert_eq!(e.observe(5, 2 * MINUTE, MINUTE), None);
        assert_eq!(e.len, 0);
    }

    /// Once trusted, answers from a nearly empty bucket (0 or 1 left: loose bounds) keep the
    /// tight bounds of fuller moments, however many of them come.
    #[test]
    fn loose_answers_that_agree_keep_the_tight_bounds() {
        let rho = 70.0 / 60.0;
        let report = |e: &mut RefillEstimate, x: f64| {
            let reset = Duration::from_secs_f64((70.0 - x) / rho);
            e.observe(x.floor() as u64, reset, MINUTE);
        };
        let mut e = RefillEstimate::new();
        for x in [60.5, 55.2, 48.9, 40.1, 33.3, 25.7, 18.4, 12.6] {
            report(&mut e, x);
        }
        let tight = e.bounds().unwrap();
        assert!(tight.1 - tight.0 < 0.01 * rho, "{tight:?}");
        for i in 0..10 * RefillEstimate::SAMPLES {
            report(&mut e, 0.05 + 1.9 * (i % 7) as f64 / 7.0);
        }
        assert_eq!(e.bounds(), Some(tight));
    }

    /// A change of the real rate: the old samples disagree with the new until they are gone.
    #[test]
    fn a_changed_rate_is_trusted_once_the_old_samples_are_gone() {
        let mut e = RefillEstimate::new();
        // 10 remain of a bucket refilled at 1/s (full in 50 s), then at 2/s (full in 55 s).
        for _ in 0..RefillEstimate::SAMPLES {
            e.observe(10, Duration::from_secs(50), MINUTE);
        }
        // Between 10/10 and 11/10 a second: the middle.
        assert!((e.rate().unwrap() - 1.05).abs() < 1e-9);
        for i in 0..RefillEstimate::SAMPLES {
            e.observe(10, Duration::from_secs(55), MINUTE);
            if i + 1 < RefillEstimate::SAMPLES {
                assert_eq!(e.rate(), None, "after {} new samples", i + 1);
            }
        }
        assert!((e.rate().unwrap() - 2.1).abs() < 1e-9);
    }
}

//! Over-throttling: the provider capacity the client left unused while it held demand back,
//! counted window by window and never above the demand it held back in that window.

use std::time::Duration;

/// One request held back by the client from `from` to `until` (`request` numbers it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Held {
    pub(super) request: usize,
    pub(super) from: Duration,
    pub(super) until: Duration,
}

/// The window over-throttling is counted in: the period of the provider's limits, over which its
/// bucket keeps capacity unused a moment ago for the next (a client sending in bursts inside a
/// window wastes nothing).
pub(super) const WINDOW: Duration = Duration::from_secs(60);

/// The window of `WINDOW` that holds `d`.
pub(super) fn window_of(d: Duration) -> usize {
    (d.as_nanos() / WINDOW.as_nanos()) as usize
}

/// Over-throttling of a run of `windows` windows of [`WINDOW`] against a provider of real
/// capacity `per_second` requests per second.
///
/// `held` are the spans the client held requests back, each request's spans in time order, and
/// `held_union` their union (sorted, disjoint); `ok_while_held[w]` counts the successful attempts
/// of window `w` that arrived inside `held_union`. In window `w`, the provider's capacity over
/// the held time is `c_w = per_second × |held_union ∩ w|`; of it, `c_w − ok_w` went unused, but
/// no more than `n_w`, the requests held back at some moment of that window, could have used it:
///
/// `over_throttling = Σ_w min(max(0, c_w − ok_w), n_w) ÷ Σ_w c_w` (0 when nothing was held).
pub(super) fn over_throttling(
    per_second: f64,
    windows: usize,
    held: &[Held],
    held_union: &[(Duration, Duration)],
    ok_while_held: &[u64],
) -> f64 {
    let secs = windows.max(1);
    let slot = |d: Duration| window_of(d).min(secs - 1);
    // Seconds of held time in each window.
    let mut held_time = vec![0.0f64; secs];
    for &(a, b) in held_union {
        let mut at = a;
        while at < b {
            let t = slot(at);
            let end = if t == secs - 1 {
                b
            } else {
                b.min(WINDOW * (t as u32 + 1))
            };
            held_time[t] += (end - at).as_secs_f64();
            at = end;
        }
    }
    // Requests held at some moment of each window, each counted once per window.
    let mut delta = vec![0i64; secs + 1];
    let mut counted_to: Vec<Option<usize>> = Vec::new();
    for h in held.iter().filter(|h| h.until > h.from) {
        if counted_to.len() <= h.request {
            counted_to.resize(h.request + 1, None);
        }
        let last = slot(h.until - Duration::from_nanos(1));
        let first = match counted_to[h.request] {
            Some(c) => slot(h.from).max(c + 1),
            None => slot(h.from),
        };
        if first <= last {
            delta[first] += 1;
            delta[last + 1] -= 1;
            counted_to[h.request] = Some(last);
        }
    }
    let mut unused = 0.0;
    let mut offered = 0.0;
    let mut held_now = 0i64;
    for t in 0..secs {
        held_now += delta[t];
        let capacity = per_second * held_time[t];
        let ok = ok_while_held.get(t).copied().unwrap_or(0) as f64;
        unused += (capacity - ok).max(0.0).min(held_now.max(0) as f64);
        offered += capacity;
    }
    if offered > 0.0 {
        (unused / offered).clamp(0.0, 1.0)
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Request `request` held from window `from` to window `until`.
    fn held(request: usize, from: u32, until: u32) -> Held {
        Held {
            request,
            from: WINDOW * from,
            until: WINDOW * until,
        }
    }

    /// A handful of held-back calls beside a large idle capacity: only what they could have used
    /// counts, not the whole provider.
    #[test]
    fn a_few_held_calls_beside_a_large_idle_capacity_are_barely_over_throttled() {
        // 1 000 requests/s of capacity, 3 requests held back for 10 windows, nothing sent.
        let spans: Vec<Held> = (0..3).map(|i| held(i, 0, 10)).collect();
        let union = vec![(Duration::ZERO, WINDOW * 10)];
        let over = over_throttling(1_000.0, 10, &spans, &union, &[0; 10]);
        // 3 per window could have gone, out of 60 000 per window offered.
        assert!((over - 3.0 / 60_000.0).abs() < 1e-12, "{over}");
        assert!(over < 1e-4);
    }

    /// Demand larger than the capacity: every unused request of capacity counts, as the capacity
    /// less the successes (the definition before the cap).
    #[test]
    fn a_deep_backlog_counts_all_unused_capacity() {
        // 1/s of capacity, 100 requests held for 10 windows, 30 successes in each.
        let spans: Vec<Held> = (0..100).map(|i| held(i, 0, 10)).collect();
        let union = vec![(Duration::ZERO, WINDOW * 10)];
        let over = over_throttling(1.0, 10, &spans, &union, &[30; 10]);
        assert!((over - 0.5).abs() < 1e-9, "{over}");
    }

    /// A request held twice in the same window (queue, then backoff) is one request there.
    #[test]
    fn a_request_counts_once_per_window() {
        let spans = [
            Held {
                request: 0,
                from: Duration::from_millis(100),
                until: Duration::from_millis(200),
            },
            Held {
                request: 0,
                from: Duration::from_millis(500),
                until: Duration::from_millis(1_000),
            },
            Held {
                request: 0,
                from: Duration::from_secs(30),
                until: WINDOW,
            },
        ];
        let union: Vec<_> = spans.iter().map(|h| (h.from, h.until)).collect();
        // 1/s over 30.6 s held: 30.6 offered; one request could have used one.
        let over = over_throttling(1.0, 1, &spans, &union, &[0]);
        assert!((over - 1.0 / 30.6).abs() < 1e-9, "{over}");
    }
}

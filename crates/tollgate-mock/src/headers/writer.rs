//! [`HeaderWriter`]: an answer's rate-limit and retry headers, from two templates made once per
//! provider.

use std::time::Duration;

use http::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};

use super::date::rfc3339;
use super::duration::{ceil_millis, go_duration};
use super::names::{ANTHROPIC, OPENAI, OPENAI_DIMENSIONS, RETRY_AFTER_MS};
use super::number::number;
use crate::config::Config;
use crate::limits::{Dimension, DimensionState, Limiter};

// ===== impl HeaderWriter =====

/// Writes the headers of every answer of one provider.
///
/// Names never change and limits are fixed per provider, so both are put in place once, in two
/// templates (without and with the retry headers); an answer clones one, which needs no hashing of
/// names, and fills in the values that depend on the moment.
#[derive(Debug)]
pub(crate) struct HeaderWriter {
    plain: HeaderMap,
    retry: HeaderMap,
    anthropic: bool,
    openai: bool,
    /// Whether the `limit` and `reset` headers go with each `remaining`.
    limit_and_reset: bool,
    /// Per dimension: whether it is reported (limited).
    reported: [bool; 3],
    /// Unix time of virtual time zero.
    epoch: Duration,
}

impl HeaderWriter {
    pub(crate) fn new(config: &Config) -> Self {
        Self {
            plain: template(config, false),
            retry: template(config, true),
            anthropic: config.anthropic_headers,
            openai: config.openai_headers,
            limit_and_reset: config.limit_and_reset_headers,
            reported: config.reported,
            epoch: Duration::from_secs(config.epoch_unix_secs),
        }
    }

    /// What [`HeaderWriter::write`] reads of `limiter` at `now`: the `remaining` of each reported
    /// dimension, and its time until full when the `reset` headers are on (left at zero
    /// otherwise, as are the dimensions not reported).
    pub(crate) fn states(&self, limiter: &mut Limiter, now: Duration) -> [DimensionState; 3] {
        limiter.advance_to(now);
        let mut states = [DimensionState {
            remaining: 0,
            until_full: Duration::ZERO,
        }; 3];
        if !(self.anthropic || self.openai) {
            return states;
        }
        for dimension in Dimension::ALL {
            if self.reported[dimension as usize] {
                let state = &mut states[dimension as usize];
                state.remaining = limiter.remaining(dimension);
                if self.limit_and_reset {
                    state.until_full = limiter.until_full(dimension, now);
                }
            }
        }
        states
    }

    /// The headers of an answer at virtual time `now`, with `retry-after` when `retry` is set.
    #[cfg(test)]
    pub(crate) fn write(
        &self,
        now: Duration,
        states: &[DimensionState; 3],
        retry: Option<Duration>,
    ) -> HeaderMap {
        self.write_into(None, now, states, retry)
    }

    /// The headers of an answer at virtual time `now`, with `retry-after` when `retry` is set,
    /// written into `spare` when there is one: the headers of an earlier answer of the same kind
    /// ([`HeaderWriter::kind`]), whose storage is reused and whose every value is written over.
    pub(crate) fn write_into(
        &self,
        spare: Option<HeaderMap>,
        now: Duration,
        states: &[DimensionState; 3],
        retry: Option<Duration>,
    ) -> HeaderMap {
        let template = match retry {
            Some(_) => &self.retry,
            None => &self.plain,
        };
        let mut headers = match spare {
            Some(mut spare) => {
                if self.limit_and_reset {
                    // The `limit` values are not written below: they come from the template.
                    for ((_, value), (_, limit)) in spare.iter_mut().zip(template) {
                        value.clone_from(limit);
                    }
                }
                spare
            }
            None => template.clone(),
        };
        // A clone keeps the template's order, which is the order below.
        let mut slots = headers.iter_mut();
        let mut slot = |name: &HeaderName| {
            let (slot_name, value) = slots.next().expect("the template has every header");
            debug_assert_eq!(slot_name, name);
            value
        };
        let full = self.limit_and_reset;
        if self.anthropic {
            let wall_now = self.epoch.saturating_add(now);
            for ([limit, remaining, reset], dimension) in ANTHROPIC.iter().zip(Dimension::ALL) {
                if !self.reported[dimension as usize] {
                    continue;
                }
                let state = states[dimension as usize];
                if full {
                    slot(limit); // already in place
                }
                *slot(remaining) = number(state.remaining);
                if full {
                    let reset_at = wall_now.saturating_add(state.until_full);
                    *slot(reset) = rfc3339(reset_at).value();
                }
            }
        }
        if self.openai {
            for ([limit, remaining, reset], dimension) in OPENAI.iter().zip(OPENAI_DIMENSIONS) {
                if !self.reported[dimension as usize] {
                    continue;
                }
                let state = states[dimension as usize];
                if full {
                    slot(limit); // already in place
                }
                *slot(remaining) = number(state.remaining);
                if full {
                    *slot(reset) = go_duration(state.until_full).value();
                }
            }
        }
        if let Some(wait) = retry {
            // `retry-after` in whole seconds and `retry-after-ms`, both rounded up.
            let ms = ceil_millis(wait);
            *slot(&RETRY_AFTER) = number(ms.div_ceil(1000));
            *slot(&RETRY_AFTER_MS) = number(ms);
        }
        headers
    }
}

impl HeaderWriter {
    /// Which template `headers` has the shape of (the same names in the same order, one value
    /// each): `Some(false)` for an answer without `retry-after`, `Some(true)` with, `None` for
    /// neither.
    pub(crate) fn kind(&self, headers: &HeaderMap) -> Option<bool> {
        let same = |template: &HeaderMap| {
            headers.len() == template.len()
                && headers.keys_len() == template.keys_len()
                && headers.keys().zip(template.keys()).all(|(a, b)| a == b)
        };
        if same(&self.plain) {
            Some(false)
        } else if same(&self.retry) {
            Some(true)
        } else {
            None
        }
    }
}

/// Every header an answer carries, in order, with the limits in place and the other values empty.
fn template(config: &Config, retry: bool) -> HeaderMap {
    // Sized once: 3 Anthropic and 2 OpenAI dimensions of 3 headers (or 1, `remaining` alone),
    // and 2 retry headers at most.
    let full = config.limit_and_reset_headers;
    let per_dimension = if full { 3 } else { 1 };
    let mut headers = HeaderMap::with_capacity(
        per_dimension
            * (3 * usize::from(config.anthropic_headers) + 2 * usize::from(config.openai_headers))
            + 2 * usize::from(retry),
    );
    let mut put = |[limit, remaining, reset]: &[HeaderName; 3], dimension: Dimension| {
        if !config.reported[dimension as usize] {
            return;
        }
        if full {
            headers.insert(
                limit.clone(),
                HeaderValue::from(config.limits.get(dimension)),
            );
        }
        headers.insert(remaining.clone(), HeaderValue::from_static(""));
        if full {
            headers.insert(reset.clone(), HeaderValue::from_static(""));
        }
    };
    if config.anthropic_headers {
        for (names, dimension) in ANTHROPIC.iter().zip(Dimension::ALL) {
            put(names, dimension);
        }
    }
    if config.openai_headers {
        for (names, dimension) in OPENAI.iter().zip(OPENAI_DIMENSIONS) {
            put(names, dimension);
        }
    }
    if retry {
        headers.insert(RETRY_AFTER, HeaderValue::from_static(""));
        headers.insert(RETRY_AFTER_MS.clone(), HeaderValue::from_static(""));
    }
    headers
}

#[cfg(test)]
mod tests;

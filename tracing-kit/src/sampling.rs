//! What the installed sampler will decide for a request, known before any span exists, so that
//! the server layers can skip building spans that would be dropped anyway.
//!
//! [`init`](crate::init) records its sampler here. Until then (or when the application builds
//! its own tracer provider) the decision is "sampled", which keeps the full path.

use std::sync::atomic::{AtomicU8, Ordering};

use crate::init::Sampler;

const UNKNOWN: u8 = 0;
const ALWAYS_ON: u8 = 1;
const ALWAYS_OFF: u8 = 2;
const RATIO: u8 = 3;
const PARENT_ON: u8 = 4;
const PARENT_OFF: u8 = 5;
const PARENT_RATIO: u8 = 6;

static MODE: AtomicU8 = AtomicU8::new(UNKNOWN);

/// Records the sampler [`init`](crate::init) installed.
pub(crate) fn record(sampler: Sampler) {
    let mode = match sampler {
        Sampler::AlwaysOn => ALWAYS_ON,
        Sampler::AlwaysOff => ALWAYS_OFF,
        Sampler::TraceIdRatio(_) => RATIO,
        Sampler::ParentBasedAlwaysOn => PARENT_ON,
        Sampler::ParentBasedAlwaysOff => PARENT_OFF,
        Sampler::ParentBasedTraceIdRatio(_) => PARENT_RATIO,
    };
    MODE.store(mode, Ordering::Relaxed);
}

/// `false` only when the span of a request is certain not to be sampled: the sampler is
/// always-off, or parent-based with a remote parent that is not sampled, or parent-based
/// always-off for a root. `remote_sampled` is the incoming `traceparent`'s sampled flag, if
/// there is a valid one.
#[inline]
#[cfg_attr(
    not(feature = "http"),
    allow(dead_code, reason = "only the HTTP server layer asks")
)]
pub(crate) fn may_sample(remote_sampled: Option<bool>) -> bool {
    match (MODE.load(Ordering::Relaxed), remote_sampled) {
        (ALWAYS_OFF, _) => false,
        (PARENT_ON | PARENT_OFF | PARENT_RATIO, Some(sampled)) => sampled,
        (PARENT_OFF, None) => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions() {
        // One test: the mode is process-wide.
        assert!(
            may_sample(Some(false)),
            "unknown sampler keeps the full path"
        );
        record(Sampler::AlwaysOff);
        assert!(!may_sample(Some(true)));
        record(Sampler::ParentBasedAlwaysOn);
        assert!(!may_sample(Some(false)));
        assert!(may_sample(Some(true)));
        assert!(may_sample(None));
        record(Sampler::ParentBasedAlwaysOff);
        assert!(!may_sample(None));
        record(Sampler::TraceIdRatio(0.5));
        assert!(may_sample(Some(false)));
        MODE.store(UNKNOWN, Ordering::Relaxed);
    }
}

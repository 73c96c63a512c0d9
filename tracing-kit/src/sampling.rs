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

/// Whether the span of a request would be sampled, as far as it can be known before the span
/// exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    not(feature = "http"),
    allow(dead_code, reason = "only the HTTP server layer asks")
)]
pub(crate) enum Decision {
    /// It may be sampled: build the span.
    Maybe,
    /// It will be dropped, whatever encloses the layer.
    Drop,
    /// It will be dropped unless a local span encloses the layer (parent-based always-off
    /// for a request without a remote parent: the enclosing span is then the parent).
    DropUnlessLocalParent,
}

/// The sampling decision for a request whose incoming `traceparent` has this sampled flag
/// (`None` without a valid one). `Drop` only when the span is certain not to be sampled: the
/// sampler is always-off, or parent-based with a remote parent that is not sampled (the
/// remote parent wins over an enclosing span).
#[inline]
#[cfg_attr(
    not(feature = "http"),
    allow(dead_code, reason = "only the HTTP server layer asks")
)]
pub(crate) fn decide(remote_sampled: Option<bool>) -> Decision {
    match (MODE.load(Ordering::Relaxed), remote_sampled) {
        (ALWAYS_OFF, _) | (PARENT_ON | PARENT_OFF | PARENT_RATIO, Some(false)) => Decision::Drop,
        (PARENT_OFF, None) => Decision::DropUnlessLocalParent,
        _ => Decision::Maybe,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions() {
        use Decision::{Drop, DropUnlessLocalParent, Maybe};
        // One test: the mode is process-wide.
        assert_eq!(
            decide(Some(false)),
            Maybe,
            "unknown sampler keeps the full path"
        );
        record(Sampler::AlwaysOff);
        assert_eq!(decide(Some(true)), Drop);
        assert_eq!(decide(None), Drop);
        record(Sampler::ParentBasedAlwaysOn);
        assert_eq!(decide(Some(false)), Drop);
        assert_eq!(decide(Some(true)), Maybe);
        assert_eq!(decide(None), Maybe);
        record(Sampler::ParentBasedAlwaysOff);
        assert_eq!(decide(None), DropUnlessLocalParent);
        assert_eq!(decide(Some(true)), Maybe);
        record(Sampler::ParentBasedTraceIdRatio(0.5));
        assert_eq!(decide(Some(false)), Drop);
        record(Sampler::TraceIdRatio(0.5));
        assert_eq!(decide(Some(false)), Maybe);
        MODE.store(UNKNOWN, Ordering::Relaxed);
    }
}

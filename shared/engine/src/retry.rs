//! Retry timing as a pure function of the policy, the attempt and the failure.

use crate::duration::Duration;
use crate::model::{Jitter, RetryPolicy};
use crate::state::StepError;

/// How long to wait before the next attempt after `attempt` (1-based) failed with `error`,
/// or `None` when the failure is final: not retryable, named in `non_retryable`, or the last
/// attempt. `jitter` is a draw in `[0, 1)`; with full jitter the wait is that share of the
/// exponential interval, so runs failing together do not retry together.
pub fn next_delay(
    policy: &RetryPolicy,
    attempt: u32,
    error: &StepError,
    jitter: f64,
) -> Option<Duration> {
    if !error.retryable
        || attempt >= policy.max_attempts
        || policy.non_retryable.iter().any(|n| n == &error.name)
    {
        return None;
    }
    let exponent = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
    let cap = policy.max_interval.as_millis() as f64;
    let base =
        (policy.initial_interval.as_millis() as f64 * policy.backoff_rate.powi(exponent)).min(cap);
    let ms = match policy.jitter {
        Jitter::None => base,
        Jitter::Full => base * jitter.clamp(0.0, 1.0),
    };
    // Float to integer: `ms` is finite and within [0, cap] here.
    Some(Duration::from_millis(ms.round() as u64))
}

/// A deterministic draw in `[0, 1)` from a seed and the attempt it is for (SplitMix64).
pub fn draw(seed: u64, salt: u64) -> f64 {
    let mut z = seed ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(jitter: Jitter) -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            initial_interval: Duration::from_secs(1),
            backoff_rate: 2.0,
            max_interval: Duration::from_secs(5),
            jitter,
            non_retryable: vec!["InvalidEmail".into()],
        }
    }

    fn err(name: &str, retryable: bool) -> StepError {
        StepError {
            name: name.into(),
            message: String::new(),
            retryable,
        }
    }

    #[test]
    fn exponential_backoff_capped_without_jitter() {
        let p = policy(Jitter::None);
        let timeout = err("Timeout", true);
        for (attempt, expected) in [
            (1, Some(1_000)),
            (2, Some(2_000)),
            (3, Some(4_000)),
            (4, Some(5_000)), // 8 s capped at max_interval
            (5, None),        // the fifth attempt was the last
            (9, None),
        ] {
            assert_eq!(
                next_delay(&p, attempt, &timeout, 0.5).map(Duration::as_millis),
                expected,
                "attempt {attempt}"
            );
        }
    }

    #[test]
    fn full_jitter_scales_the_interval_by_the_draw() {
        let p = policy(Jitter::Full);
        let e = err("Http5xx", true);
        for (attempt, draw, expected) in [
            (1, 0.0, 0),
            (1, 0.5, 500),
            (2, 0.25, 500),
            (3, 0.999, 3_996),
            (4, 0.5, 2_500),
        ] {
            assert_eq!(
                next_delay(&p, attempt, &e, draw).map(Duration::as_millis),
                Some(expected),
                "attempt {attempt} draw {draw}"
            );
        }
    }

    #[test]
    fn terminal_and_listed_errors_are_never_retried() {
        let p = policy(Jitter::None);
        for e in [err("Http404", false), err("InvalidEmail", true)] {
            assert_eq!(next_delay(&p, 1, &e, 0.5), None, "{}", e.name);
        }
    }

    #[test]
    fn draws_are_deterministic_and_spread() {
        assert_eq!(draw(42, 7), draw(42, 7));
        let draws: Vec<f64> = (0..1000).map(|i| draw(42, i)).collect();
        assert!(draws.iter().all(|d| (0.0..1.0).contains(d)));
        let mean = draws.iter().sum::<f64>() / 1000.0;
        assert!((0.45..0.55).contains(&mean), "mean {mean}");
    }
}

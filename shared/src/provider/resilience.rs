//! Retries and fallbacks under one deadline.
//!
//! Each model of a route is tried up to its policy's `attempts`, with full
//! jitter backoff between attempts; a provider's `retry-after-ms` or
//! `Retry-After` wins over the backoff when it fits in the time left, and
//! ends that model's retries when it does not. Failures the request itself
//! caused (400, 401 on the request... anything `Rejected`) are returned at
//! once: no other model would answer differently. Failures of the provider
//! (outage, rate limit, bad key, unreadable answer, a request it cannot take)
//! move on to the next model of a fallback chain. The request's deadline
//! bounds all of it; running out is [`ProviderError::Deadline`].

use std::future::Future;
use std::time::{Duration, Instant};

use http::HeaderMap;

use super::{ProviderError, ResolvedModel};
use crate::config::RetryPolicy;

/// A value and the model that produced it.
#[derive(Debug)]
pub struct Routed<T> {
    /// The answer.
    pub value: T,
    /// The model that answered.
    pub model: ResolvedModel,
    /// Upstream attempts made, over all models.
    pub attempts: u32,
}

/// How long the provider asked to wait: `retry-after-ms` (OpenAI), else
/// `Retry-After` in seconds or as an HTTP date.
pub fn wait_hint(headers: &HeaderMap) -> Option<Duration> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(ms) = text("retry-after-ms").and_then(|v| v.trim().parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    let v = text("retry-after")?.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let at = time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc2822).ok()?;
    let secs = (at - time::OffsetDateTime::now_utc()).as_seconds_f64();
    Some(Duration::from_secs_f64(secs.max(0.0)))
}

/// Whether `e` is worth another attempt on the same model under `p`.
pub fn retryable(e: &ProviderError, p: &RetryPolicy) -> bool {
    match e {
        ProviderError::RateLimited { .. } => p.on_status.contains(&429),
        ProviderError::Unavailable { status, .. } | ProviderError::Rejected { status, .. } => {
            p.on_status.contains(status)
        }
        ProviderError::Connect { .. } => p.on_connect,
        ProviderError::Timeout { .. } => p.on_timeout,
        _ => false,
    }
}

/// Whether `e` is the provider's failure (so another model may answer),
/// rather than the request's own.
pub fn falls_back(e: &ProviderError) -> bool {
    !matches!(
        e,
        ProviderError::Rejected { .. }
            | ProviderError::RejectedField { .. }
            | ProviderError::Deadline
    )
}

fn wait_of(e: &ProviderError) -> Option<Duration> {
    match e {
        ProviderError::RateLimited { wait, .. } | ProviderError::Unavailable { wait, .. } => *wait,
        _ => None,
    }
}

/// Tries `chain` in order with `attempt`, each model per `policy(model)`,
/// until one answers or `deadline` passes.
pub async fn run<T, F, Fut>(
    chain: &[ResolvedModel],
    policy: impl Fn(&ResolvedModel) -> RetryPolicy,
    deadline: Instant,
    mut attempt: F,
) -> Result<Routed<T>, ProviderError>
where
    F: FnMut(ResolvedModel) -> Fut,
    Fut: Future<Output = Result<T, ProviderError>>,
{
    let mut attempts = 0u32;
    let mut last = ProviderError::Deadline;
    for (i, model) in chain.iter().enumerate() {
        if i > 0 {
            crate::metrics::fallback();
        }
        let p = policy(model);
        for n in 0..p.attempts.max(1) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ProviderError::Deadline);
            }
            attempts += 1;
            let result = match tokio::time::timeout(left, attempt(model.clone())).await {
                Ok(r) => r,
                Err(_) => return Err(ProviderError::Deadline),
            };
            let e = match result {
                Ok(value) => {
                    return Ok(Routed {
                        value,
                        model: model.clone(),
                        attempts,
                    });
                }
                Err(e) => e,
            };
            tracing::info!(
                model = %model.id,
                attempt = attempts,
                error = %e,
                "upstream attempt failed"
            );
            if !falls_back(&e) {
                return Err(e);
            }
            let last_try = n + 1 == p.attempts.max(1);
            if !retryable(&e, &p) || last_try {
                last = e;
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let wait = match wait_of(&e) {
                Some(asked) => asked,
                None => crate::retry::backoff(n, p.base_delay.as_millis() as u64).min(p.max_delay),
            };
            if wait >= left {
                // Upstream wants longer than we have: no point waiting for it.
                last = e;
                break;
            }
            crate::metrics::retry();
            tokio::time::sleep(wait).await;
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn model(id: &str) -> ResolvedModel {
        let (provider, upstream) = id.split_once('/').unwrap();
        ResolvedModel {
            id: id.into(),
            provider: provider.into(),
            upstream: upstream.into(),
        }
    }

    fn fast(attempts: u32) -> RetryPolicy {
        RetryPolicy {
            attempts,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
            ..RetryPolicy::default()
        }
    }

    fn unavailable(status: u16) -> ProviderError {
        ProviderError::Unavailable {
            provider: "p".into(),
            status,
            wait: None,
        }
    }

    async fn drive(
        chain: &[&str],
        attempts: u32,
        script: Vec<Result<&'static str, ProviderError>>,
    ) -> (Result<Routed<&'static str>, ProviderError>, Vec<String>) {
        let chain: Vec<ResolvedModel> = chain.iter().map(|m| model(m)).collect();
        let script = Mutex::new(script.into_iter());
        let seen = Mutex::new(Vec::new());
        let out = run(
            &chain,
            |_| fast(attempts),
            Instant::now() + Duration::from_secs(5),
            |m| {
                seen.lock().unwrap().push(m.id);
                let next = script.lock().unwrap().next().unwrap_or(Ok("default"));
                async move { next }
            },
        )
        .await;
        (out, seen.into_inner().unwrap())
    }

    #[tokio::test]
    async fn transient_failures_are_retried_then_fall_back() {
        let (out, seen) = drive(
            &["a/x", "b/y"],
            2,
            vec![Err(unavailable(503)), Err(unavailable(529)), Ok("from b")],
        )
        .await;
        let routed = out.unwrap();
        assert_eq!(routed.value, "from b");
        assert_eq!(routed.model.id, "b/y");
        assert_eq!(routed.attempts, 3);
        assert_eq!(seen, ["a/x", "a/x", "b/y"]);
    }

    #[tokio::test]
    async fn the_requests_own_errors_neither_retry_nor_fall_back() {
        let rejected = ProviderError::Rejected {
            provider: "a".into(),
            status: 400,
        };
        let (out, seen) = drive(&["a/x", "b/y"], 3, vec![Err(rejected)]).await;
        assert!(matches!(
            out,
            Err(ProviderError::Rejected { status: 400, .. })
        ));
        assert_eq!(seen, ["a/x"]);
    }

    #[tokio::test]
    async fn auth_failures_fall_back_without_retrying() {
        let auth = ProviderError::Auth {
            provider: "a".into(),
        };
        let (out, seen) = drive(&["a/x", "b/y"], 3, vec![Err(auth), Ok("b")]).await;
        assert_eq!(out.unwrap().value, "b");
        assert_eq!(seen, ["a/x", "b/y"]);
    }

    #[tokio::test]
    async fn a_wait_longer_than_the_deadline_is_not_waited_for() {
        let chain = [model("a/x")];
        let limited = ProviderError::RateLimited {
            provider: "a".into(),
            retry_after: Some("60".into()),
            wait: Some(Duration::from_secs(60)),
        };
        let calls = Mutex::new(0);
        let started = Instant::now();
        let out: Result<Routed<()>, _> = run(
            &chain,
            |_| fast(5),
            Instant::now() + Duration::from_secs(2),
            |_| {
                *calls.lock().unwrap() += 1;
                let e = match &limited {
                    ProviderError::RateLimited {
                        provider,
                        retry_after,
                        wait,
                    } => ProviderError::RateLimited {
                        provider: provider.clone(),
                        retry_after: retry_after.clone(),
                        wait: *wait,
                    },
                    _ => unreachable!(),
                };
                async move { Err(e) }
            },
        )
        .await;
        assert!(matches!(out, Err(ProviderError::RateLimited { .. })));
        assert_eq!(*calls.lock().unwrap(), 1);
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn the_deadline_cuts_a_hanging_attempt() {
        let chain = [model("a/x"), model("b/y")];
        let out: Result<Routed<()>, _> = run(
            &chain,
            |_| fast(3),
            Instant::now() + Duration::from_millis(50),
            |_| std::future::pending(),
        )
        .await;
        assert!(matches!(out, Err(ProviderError::Deadline)));
    }

    #[test]
    fn wait_hints_read_ms_seconds_and_dates() {
        let mut h = HeaderMap::new();
        assert_eq!(wait_hint(&h), None);
        h.insert("retry-after", "2".parse().unwrap());
        assert_eq!(wait_hint(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after-ms", "150".parse().unwrap());
        assert_eq!(wait_hint(&h), Some(Duration::from_millis(150)));
        let mut h = HeaderMap::new();
        h.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(wait_hint(&h), Some(Duration::ZERO));
        h.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(wait_hint(&h), None);
    }
}

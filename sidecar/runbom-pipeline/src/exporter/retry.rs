//! Retry with capped exponential backoff, as the OTLP exporter specification asks.

use std::{
    future::Future,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use tracing::warn;

use super::error::ExportError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    pub enabled: bool,
    pub initial_interval: Duration,
    pub max_interval: Duration,
    /// Give up once this much time has passed since the first attempt.
    pub max_elapsed_time: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            initial_interval: Duration::from_secs(5),
            max_interval: Duration::from_secs(30),
            max_elapsed_time: Duration::from_mins(5),
        }
    }
}

impl RetryPolicy {
    /// Runs `attempt` until it succeeds, fails for good, or the policy's time runs out;
    /// counts each retry in `retries`.
    pub async fn run<F, Fut>(&self, retries: &AtomicU64, mut attempt: F) -> Result<(), ExportError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(), ExportError>>,
    {
        let start = tokio::time::Instant::now();
        let mut wait = self.initial_interval;
        loop {
            match attempt().await {
                Ok(()) => return Ok(()),
                Err(e) if self.enabled && e.is_retryable() => {
                    // A delay the server asked for (RetryInfo, Retry-After) wins over backoff.
                    let delay = e.retry_delay().unwrap_or(wait);
                    if start.elapsed() + delay > self.max_elapsed_time {
                        return Err(e);
                    }
                    warn!("{e}; retrying in {delay:?}");
                    retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(delay).await;
                    wait = (wait * 2).min(self.max_interval);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;

    use prost::Message as _;

    use super::*;
    use crate::transport::rpc;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            enabled: true,
            initial_interval: Duration::from_millis(100),
            max_interval: Duration::from_secs(1),
            max_elapsed_time: Duration::from_mins(1),
        }
    }

    fn grpc(code: tonic::Code, retry_after: Option<Duration>) -> ExportError {
        let details = retry_after.map_or_else(Vec::new, |d| {
            rpc::Status {
                code: code as i32,
                message: "busy".into(),
                details: vec![rpc::Any {
                    type_url: rpc::RETRY_INFO_TYPE.into(),
                    value: rpc::RetryInfo {
                        retry_delay: Some(rpc::Duration {
                            seconds: i64::try_from(d.as_secs()).unwrap_or(0),
                            nanos: 0,
                        }),
                    }
                    .encode_to_vec(),
                }],
            }
            .encode_to_vec()
        });
        ExportError::Grpc {
            endpoint: "x".into(),
            status: Box::new(tonic::Status::with_details(code, "busy", details.into())),
        }
    }

    /// Runs the policy over errors from `errors` (then success) and returns the attempts made.
    async fn attempts(mut errors: Vec<ExportError>) -> (u32, Result<(), ExportError>) {
        let count = AtomicU32::new(0);
        errors.reverse();
        let errors = std::sync::Mutex::new(errors);
        let result = policy()
            .run(&AtomicU64::new(0), || {
                count.fetch_add(1, Ordering::Relaxed);
                let next = errors.lock().expect("lock").pop();
                async move { next.map_or(Ok(()), Err) }
            })
            .await;
        (count.load(Ordering::Relaxed), result)
    }

    #[tokio::test(start_paused = true)]
    async fn resource_exhausted_is_retried_only_with_retry_info() {
        let (n, result) = attempts(vec![grpc(tonic::Code::ResourceExhausted, None)]).await;
        assert_eq!(n, 1, "no RetryInfo: not retried");
        assert!(result.is_err());

        let start = tokio::time::Instant::now();
        let (n, result) = attempts(vec![grpc(
            tonic::Code::ResourceExhausted,
            Some(Duration::from_secs(7)),
        )])
        .await;
        assert_eq!(n, 2, "with RetryInfo: retried once, then succeeded");
        assert!(result.is_ok());
        assert!(
            start.elapsed() >= Duration::from_secs(7),
            "the server's delay was honoured, not the 100 ms backoff"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_honoured_and_permanent_errors_are_not_retried() {
        let busy = ExportError::HttpStatus {
            url: "u".into(),
            status: 503,
            body: String::new(),
            retry_after: Some(Duration::from_secs(3)),
        };
        let start = tokio::time::Instant::now();
        let (n, result) = attempts(vec![busy]).await;
        assert_eq!(n, 2);
        assert!(result.is_ok());
        assert!(start.elapsed() >= Duration::from_secs(3));

        let bad = ExportError::HttpStatus {
            url: "u".into(),
            status: 400,
            body: "malformed".into(),
            retry_after: None,
        };
        let (n, result) = attempts(vec![bad]).await;
        assert_eq!(n, 1, "400 is permanent");
        assert!(result.is_err());
        let (n, _) = attempts(vec![grpc(tonic::Code::Unavailable, None)]).await;
        assert_eq!(n, 2, "UNAVAILABLE is retried");
    }
}

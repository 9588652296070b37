//! Retry with capped exponential backoff, as the OTLP exporter specification asks.

use std::{
    future::Future,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use tracing::warn;

use super::ExportError;

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
                    if start.elapsed() + wait > self.max_elapsed_time {
                        return Err(e);
                    }
                    warn!("{e}; retrying in {wait:?}");
                    retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(self.max_interval);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

//! A per-container value with a time to live, refreshed by one caller at a time.
//!
//! Used for the Secrets Manager secret (and the runtime settings): many concurrent requests on a
//! cold or expired cache cause one fetch, not one each. When a refresh fails and an older value
//! exists, the older value is served and the next attempt waits a short back-off, so an outage of
//! the source neither fails every request nor hammers the source.

use std::{
    future::Future,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use tokio::sync::Mutex;

/// How long a stale value is served after a failed refresh before the next attempt.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(15);

struct Entry<T> {
    value: Arc<T>,
    fresh_until: Instant,
}

pub struct TtlCache<T> {
    ttl: Duration,
    slot: RwLock<Option<Entry<T>>>,
    refreshing: Mutex<()>,
}

impl<T> TtlCache<T> {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            slot: RwLock::new(None),
            refreshing: Mutex::new(()),
        }
    }

    fn fresh(&self) -> Option<Arc<T>> {
        let slot = self.slot.read().ok()?;
        slot.as_ref()
            .filter(|e| Instant::now() < e.fresh_until)
            .map(|e| e.value.clone())
    }

    fn any(&self) -> Option<Arc<T>> {
        self.slot.read().ok()?.as_ref().map(|e| e.value.clone())
    }

    fn store(&self, value: Arc<T>, fresh_for: Duration) {
        if let Ok(mut slot) = self.slot.write() {
            *slot = Some(Entry {
                value,
                fresh_until: Instant::now() + fresh_for,
            });
        }
    }

    /// The cached value, fetching it first if it is missing or expired.
    pub async fn get_with<F, Fut, E>(&self, fetch: F) -> Result<Arc<T>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: std::fmt::Display,
    {
        if let Some(value) = self.fresh() {
            return Ok(value);
        }
        let _one_at_a_time = self.refreshing.lock().await;
        // Whoever held the lock before us may have refreshed it already.
        if let Some(value) = self.fresh() {
            return Ok(value);
        }
        match fetch().await {
            Ok(value) => {
                let value = Arc::new(value);
                self.store(value.clone(), self.ttl);
                Ok(value)
            }
            Err(error) => match self.any() {
                Some(stale) => {
                    tracing::warn!(%error, "refresh failed; serving the previous value");
                    self.store(stale.clone(), RETRY_AFTER_FAILURE.min(self.ttl));
                    Ok(stale)
                }
                None => Err(error),
            },
        }
    }

    /// Fetches now, whatever the age of the cached value, and reports a failure as such
    /// (readiness wants to know). Still one caller at a time.
    pub async fn refresh_with<F, Fut, E>(&self, fetch: F) -> Result<Arc<T>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let _one_at_a_time = self.refreshing.lock().await;
        let value = Arc::new(fetch().await?);
        self.store(value.clone(), self.ttl);
        Ok(value)
    }

    /// Forgets the value: the next `get_with` fetches.
    pub fn invalidate(&self) {
        if let Ok(mut slot) = self.slot.write() {
            *slot = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn concurrent_misses_fetch_once() {
        let cache = Arc::new(TtlCache::<u32>::new(Duration::from_secs(300)));
        let fetches = Arc::new(AtomicUsize::new(0));
        let callers = (0..32).map(|_| {
            let cache = cache.clone();
            let fetches = fetches.clone();
            tokio::spawn(async move {
                cache
                    .get_with(|| async {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        tokio::task::yield_now().await;
                        Ok::<_, String>(7)
                    })
                    .await
            })
        });
        for caller in futures::future::join_all(callers).await {
            assert_eq!(*caller.unwrap().unwrap(), 7);
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn expired_values_are_fetched_again() {
        let cache = TtlCache::<u32>::new(Duration::ZERO);
        let first = cache
            .get_with(|| async { Ok::<_, String>(1) })
            .await
            .unwrap();
        let second = cache
            .get_with(|| async { Ok::<_, String>(2) })
            .await
            .unwrap();
        assert_eq!((*first, *second), (1, 2));
    }

    #[tokio::test]
    async fn a_failed_refresh_serves_the_stale_value_but_a_cold_failure_is_an_error() {
        let cache = TtlCache::<u32>::new(Duration::ZERO);
        assert!(
            cache
                .get_with(|| async { Err::<u32, _>("down") })
                .await
                .is_err()
        );
        cache
            .get_with(|| async { Ok::<_, String>(1) })
            .await
            .unwrap();
        let stale = cache
            .get_with(|| async { Err::<u32, _>("down") })
            .await
            .unwrap();
        assert_eq!(*stale, 1);
        assert!(
            cache
                .refresh_with(|| async { Err::<u32, _>("down") })
                .await
                .is_err()
        );
    }
}

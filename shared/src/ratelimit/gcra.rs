//! The arithmetic of the limits, in integers (microseconds), with no I/O.
//!
//! Rolling budgets use GCRA, the token bucket written as one number: the theoretical arrival
//! time (TAT) of the next request if requests came at the sustained rate. A request at `now` is
//! admitted when `max(tat, now) + interval - now <= window`; admitting moves the TAT by one
//! interval. A bucket unused for a whole window is full again, and it refills continuously in
//! between. Because the TAT only moves forward and `max(tat, now)` ignores a `now` behind it, a
//! container whose clock is a little behind, or a clock that steps back, never refills a bucket
//! early: it only refills a little late.
//!
//! The hourly quota is a counter per clock hour (the runbook's `UsageRecord` hour buckets).

/// What a check concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allow {
        /// The state to write: the new TAT, or the new count.
        next: i64,
        remaining: u64,
        reset_secs: u64,
    },
    Deny {
        retry_after_secs: u64,
        reset_secs: u64,
    },
}

fn ceil_secs(us: i64) -> u64 {
    (us.max(0) as u64).div_ceil(1_000_000)
}

/// `limit` requests per `window_us`, refilled continuously.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    pub limit: u64,
    pub window_us: i64,
}

impl Gcra {
    pub fn interval_us(&self) -> i64 {
        (self.window_us / self.limit.max(1) as i64).max(1)
    }

    /// The outcome of one request at `now` against the stored TAT (`None`: never used).
    pub fn decide(&self, tat: Option<i64>, now: i64) -> Outcome {
        let interval = self.interval_us();
        let base = tat.map_or(now, |tat| tat.max(now));
        let next = base + interval;
        let used = next - now;
        if self.limit == 0 || used > self.window_us {
            return Outcome::Deny {
                retry_after_secs: ceil_secs(used - self.window_us).max(1),
                reset_secs: ceil_secs(base - now),
            };
        }
        Outcome::Allow {
            next,
            remaining: ((self.window_us - used) / interval) as u64,
            reset_secs: ceil_secs(used),
        }
    }

    /// Requests left now, without spending one (for headers of a denied request).
    pub fn remaining(&self, tat: Option<i64>, now: i64) -> u64 {
        match self.decide(tat, now) {
            Outcome::Allow { remaining, .. } => remaining + 1,
            Outcome::Deny { .. } => 0,
        }
    }
}

/// The clock hour of `now_us`: `(start of the hour in µs, seconds until the next one)`.
pub fn hour_of(now_us: i64) -> (i64, u64) {
    const HOUR: i64 = 3_600_000_000;
    let start = now_us.div_euclid(HOUR) * HOUR;
    (start, ceil_secs(start + HOUR - now_us))
}

/// The hourly counter: admitted while the hour's count is below `limit`.
pub fn decide_count(count: Option<i64>, limit: u64, now_us: i64) -> Outcome {
    let count = count.unwrap_or(0).max(0) as u64;
    let (_, reset_secs) = hour_of(now_us);
    if count >= limit {
        Outcome::Deny {
            retry_after_secs: reset_secs.max(1),
            reset_secs,
        }
    } else {
        Outcome::Allow {
            next: count as i64 + 1,
            remaining: limit - count - 1,
            reset_secs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    fn run(gcra: Gcra, tat: &mut Option<i64>, now: i64, n: usize) -> usize {
        let mut admitted = 0;
        for _ in 0..n {
            if let Outcome::Allow { next, .. } = gcra.decide(*tat, now) {
                *tat = Some(next);
                admitted += 1;
            }
        }
        admitted
    }

    #[test]
    fn a_full_bucket_admits_exactly_the_limit_then_refills_over_the_window() {
        let gcra = Gcra {
            limit: 60,
            window_us: 300 * S,
        };
        let now = 1_700_000_000 * S;
        let mut tat = None;
        assert_eq!(run(gcra, &mut tat, now, 200), 60);
        // Half the window later, half the budget is back.
        assert_eq!(run(gcra, &mut tat, now + 150 * S, 200), 30);
        // A whole window after the last admission, all of it.
        let last = tat.unwrap();
        assert_eq!(run(gcra, &mut tat, last, 200), 60);
    }

    #[test]
    fn headers_count_down_and_denials_say_when_to_retry() {
        let gcra = Gcra {
            limit: 60,
            window_us: 300 * S,
        };
        let now = 1_000 * S;
        let Outcome::Allow {
            next,
            remaining,
            reset_secs,
        } = gcra.decide(None, now)
        else {
            panic!()
        };
        assert_eq!((remaining, reset_secs), (59, 5));
        assert_eq!(gcra.remaining(Some(next), now), 59);
        let full = Some(now + 300 * S);
        let Outcome::Deny {
            retry_after_secs,
            reset_secs,
        } = gcra.decide(full, now)
        else {
            panic!()
        };
        assert_eq!((retry_after_secs, reset_secs), (5, 300));
    }

    #[test]
    fn a_clock_behind_or_stepping_back_never_refills_early() {
        let gcra = Gcra {
            limit: 10,
            window_us: 100 * S,
        };
        let now = 5_000 * S;
        let mut tat = None;
        assert_eq!(run(gcra, &mut tat, now, 10), 10);
        // Another container, 2 s behind: still empty.
        assert_eq!(run(gcra, &mut tat, now - 2 * S, 5), 0);
        // The clock steps back a minute: still empty, and the TAT did not move back.
        let before = tat;
        assert_eq!(run(gcra, &mut tat, now - 60 * S, 5), 0);
        assert_eq!(tat, before);
        // 10 s later (one interval), exactly one more.
        assert_eq!(run(gcra, &mut tat, now + 10 * S, 5), 1);
    }

    #[test]
    fn odd_rates_stay_within_the_limit() {
        for limit in [1u64, 7, 600, 1000, 2000] {
            let gcra = Gcra {
                limit,
                window_us: 3_600 * S,
            };
            let mut tat = None;
            assert_eq!(
                run(gcra, &mut tat, 0, (limit * 2) as usize) as u64,
                limit,
                "{limit}"
            );
        }
        let none = Gcra {
            limit: 0,
            window_us: S,
        };
        assert!(matches!(none.decide(None, 0), Outcome::Deny { .. }));
    }

    #[test]
    fn hourly_counters() {
        let now = 10 * 3_600 * S + 600 * S; // 10:10
        assert_eq!(hour_of(now), (10 * 3_600 * S, 3_000));
        assert_eq!(
            decide_count(None, 2, now),
            Outcome::Allow {
                next: 1,
                remaining: 1,
                reset_secs: 3_000
            }
        );
        assert!(matches!(
            decide_count(Some(2), 2, now),
            Outcome::Deny {
                retry_after_secs: 3_000,
                ..
            }
        ));
    }
}

//! When to try a delivery again: the retry schedule (the spec's ~3 days by default, shrunk to
//! milliseconds in tests), ±20 % jitter, `Retry-After`, the floor after throttling, 410 ⇒
//! disable, and exhaustion. Pure functions of their inputs: the worker injects time and the RNG.
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;

/// Jitter spreads retries so receivers recovering from an outage are not hit by a thundering
/// herd of deliveries that all failed at the same moment.
const JITTER: f64 = 0.2;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("the retry schedule is empty; give delays like `5s,5m,30m`")]
    Empty,
    #[error("retry delay `{0}` is not a whole number followed by ms, s, m, h or d")]
    InvalidStep(String),
    #[error("retry delay `{0}` is too large")]
    TooLarge(String),
}

/// The delays *after* attempt 1, 2, …: `steps[n]` is the wait after attempt `n + 1` failed.
/// After a 429 or a timeout the wait is at least `min_after_throttle`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule {
    steps: Vec<Duration>,
    min_after_throttle: Duration,
}

impl Default for RetrySchedule {
    /// The Standard Webhooks example, ~3 days in all (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h: early retries catch blips, late ones outlast a receiver's day-long outage).
    fn default() -> Self {
        const MIN: u64 = 60;
        const HOUR: u64 = 60 * MIN;
        let steps = [
            5,
            5 * MIN,
            30 * MIN,
            2 * HOUR,
            5 * HOUR,
            10 * HOUR,
            14 * HOUR,
            20 * HOUR,
            24 * HOUR,
        ];
        Self::new(steps.into_iter().map(Duration::from_secs).collect())
    }
}

impl RetrySchedule {
    pub const DEFAULT_MIN_AFTER_THROTTLE: Duration = Duration::from_secs(60);

    /// An empty `steps` means a single attempt and no retries.
    pub fn new(steps: Vec<Duration>) -> Self {
        Self {
            steps,
            min_after_throttle: Self::DEFAULT_MIN_AFTER_THROTTLE,
        }
    }

    /// Tests set this to milliseconds along with the steps.
    pub fn with_min_after_throttle(mut self, floor: Duration) -> Self {
        self.min_after_throttle = floor;
        self
    }

    /// Parses `5s,5m,30m,2h`: whole numbers with `ms`, `s`, `m`, `h` or `d`.
    pub fn parse(s: &str) -> Result<Self, ScheduleError> {
        if s.trim().is_empty() {
            return Err(ScheduleError::Empty);
        }
        s.split(',')
            .map(|step| parse_step(step.trim()))
            .collect::<Result<_, _>>()
            .map(Self::new)
    }

    pub fn steps(&self) -> &[Duration] {
        &self.steps
    }

    pub fn min_after_throttle(&self) -> Duration {
        self.min_after_throttle
    }

    /// The longest scheduled wait; `Retry-After` is clamped to it.
    pub fn max_step(&self) -> Duration {
        self.steps.iter().copied().max().unwrap_or_default()
    }

    /// How many attempts a delivery gets in all: the first plus one per step.
    pub fn max_attempts(&self) -> u32 {
        u32::try_from(self.steps.len()).map_or(u32::MAX, |n| n.saturating_add(1))
    }
}

/// One duration in the schedule's syntax: a whole number and `ms`, `s`, `m`, `h` or `d`.
pub fn parse_step(step: &str) -> Result<Duration, ScheduleError> {
    let invalid = || ScheduleError::InvalidStep(step.to_owned());
    let split = step
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(invalid)?;
    let (number, unit) = step.split_at(split);
    let number: u64 = number.parse().map_err(|_| invalid())?;
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(invalid()),
    };
    number
        .checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| ScheduleError::TooLarge(step.to_owned()))
}

impl std::str::FromStr for RetrySchedule {
    type Err = ScheduleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for RetrySchedule {
    /// The same syntax [`RetrySchedule::parse`] reads, in the largest exact unit.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, step) in self.steps.iter().enumerate() {
            let ms = step.as_millis();
            let (n, unit) = [
                (86_400_000, "d"),
                (3_600_000, "h"),
                (60_000, "m"),
                (1_000, "s"),
            ]
            .into_iter()
            .find(|(per, _)| ms != 0 && ms % per == 0)
            .map_or((ms, "ms"), |(per, unit)| (ms / per, unit));
            write!(f, "{}{n}{unit}", if i == 0 { "" } else { "," })?;
        }
        Ok(())
    }
}

/// What one attempt's result means for the retry policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// Any 2xx.
    Success,
    /// 410: the receiver wants no more deliveries for this subscription.
    Gone,
    /// 429.
    RateLimited,
    /// 503: like any failure, but its `Retry-After` is honoured (a separate variant so the
    /// worker can pass every `Retry-After` it sees and this module decides where it counts).
    Unavailable,
    /// The attempt ran out of time.
    Timeout,
    /// Anything else: other 5xx, other 4xx, 3xx (redirects are not followed), connect errors.
    Failed,
}

impl AttemptOutcome {
    pub fn from_status(status: u16) -> Self {
        match status {
            200..=299 => Self::Success,
            410 => Self::Gone,
            429 => Self::RateLimited,
            503 => Self::Unavailable,
            _ => Self::Failed,
        }
    }
}

/// What the worker does next with a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Delivered.
    Done,
    /// 410: disable the subscription now and never retry (emit `subscription.disabled`).
    Disable,
    /// Try again after this long.
    RetryIn(Duration),
    /// The schedule is used up: the delivery is dead (emit `delivery.exhausted`).
    Exhausted,
}

/// Decides after attempt number `attempts_made` (1 for the first; 0 is read as 1) ended with
/// `outcome`.
///
/// The wait is the scheduled step with ±20 % jitter. On 429/503 a `Retry-After` longer than
/// that is honoured, clamped to the largest step; a shorter one does not shorten our backoff:
/// it says how long the receiver wants us to wait at least, and obeying `Retry-After: 1` would
/// let a throttling receiver burn through three days of schedule in minutes. After a 429 or a
/// timeout the wait is at least the schedule's `min_after_throttle`.
pub fn next_attempt(
    schedule: &RetrySchedule,
    attempts_made: u32,
    outcome: AttemptOutcome,
    retry_after: Option<Duration>,
    rng: &mut impl Rng,
) -> Decision {
    match outcome {
        AttemptOutcome::Success => return Decision::Done,
        AttemptOutcome::Gone => return Decision::Disable,
        _ => {}
    }
    let index = attempts_made.saturating_sub(1) as usize;
    let Some(&step) = schedule.steps.get(index) else {
        return Decision::Exhausted;
    };
    let mut wait = jittered(step, rng);
    if matches!(
        outcome,
        AttemptOutcome::RateLimited | AttemptOutcome::Unavailable
    ) {
        if let Some(asked) = retry_after {
            wait = wait.max(asked.min(schedule.max_step()));
        }
    }
    if matches!(
        outcome,
        AttemptOutcome::RateLimited | AttemptOutcome::Timeout
    ) {
        wait = wait.max(schedule.min_after_throttle);
    }
    Decision::RetryIn(wait)
}

/// `d` give or take 20 %, uniformly: work that failed together does not retry together.
pub fn jittered(d: Duration, rng: &mut impl Rng) -> Duration {
    d.mul_f64(rng.gen_range(1.0 - JITTER..=1.0 + JITTER))
}

/// Reads a `Retry-After` value: delay-seconds or an HTTP date (IMF-fixdate, or the obsolete
/// RFC 850 and asctime forms RFC 9110 says recipients must still accept). A date in the past
/// is zero; anything unreadable is `None`, as if the header were absent.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse().ok().map(Duration::from_secs);
    }
    let date: DateTime<Utc> = httpdate::parse_http_date(value).ok()?.into();
    Some((date - now).to_std().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    const S: Duration = Duration::from_secs(1);

    fn rng(seed: u64) -> StdRng {
        StdRng::seed_from_u64(seed)
    }

    fn wait(decision: Decision) -> Duration {
        match decision {
            Decision::RetryIn(wait) => wait,
            other => panic!("expected a retry, got {other:?}"),
        }
    }

    #[test]
    fn the_default_schedule_is_the_spec_example_with_a_60_second_floor() {
        let schedule = RetrySchedule::default();
        assert_eq!(schedule.to_string(), "5s,5m,30m,2h,5h,10h,14h,20h,1d");
        assert_eq!(schedule.max_step(), 24 * 3600 * S);
        assert_eq!(schedule.max_attempts(), 10);
        assert_eq!(schedule.min_after_throttle(), 60 * S);
    }

    #[test]
    fn schedules_parse_every_unit_and_print_back() {
        let schedule = RetrySchedule::parse(" 10ms, 5s,5m ,2h,1d").unwrap();
        let expected = [10, 5_000, 300_000, 7_200_000, 86_400_000].map(Duration::from_millis);
        assert_eq!(schedule.steps(), expected);
        assert_eq!(schedule.to_string(), "10ms,5s,5m,2h,1d");
        assert_eq!(
            RetrySchedule::parse("1500ms,0s").unwrap().to_string(),
            "1500ms,0ms"
        );
        assert_eq!("5s".parse::<RetrySchedule>().unwrap().steps(), [5 * S]);
    }

    #[test]
    fn malformed_schedules_are_refused_with_the_offending_step() {
        assert_eq!(RetrySchedule::parse(" ").unwrap_err(), ScheduleError::Empty);
        for bad in ["5", "s", "5 s", "5sec", "-5s", "1.5s", "5s,,5m", "5w"] {
            let err = RetrySchedule::parse(bad).unwrap_err();
            assert!(
                matches!(err, ScheduleError::InvalidStep(_)),
                "{bad}: {err:?}"
            );
        }
        let err = RetrySchedule::parse("5s,99999999999999999d").unwrap_err();
        assert_eq!(err, ScheduleError::TooLarge("99999999999999999d".into()));
        assert!(err.to_string().contains("99999999999999999d"));
    }

    #[test]
    fn statuses_map_to_outcomes() {
        for (status, outcome) in [
            (200, AttemptOutcome::Success),
            (204, AttemptOutcome::Success),
            (299, AttemptOutcome::Success),
            (301, AttemptOutcome::Failed),
            (400, AttemptOutcome::Failed),
            (401, AttemptOutcome::Failed),
            (404, AttemptOutcome::Failed),
            (410, AttemptOutcome::Gone),
            (429, AttemptOutcome::RateLimited),
            (500, AttemptOutcome::Failed),
            (503, AttemptOutcome::Unavailable),
        ] {
            assert_eq!(AttemptOutcome::from_status(status), outcome, "{status}");
        }
    }

    #[test]
    fn success_is_done_and_410_disables_at_once_even_with_retries_left() {
        let schedule = RetrySchedule::default();
        for attempts in [1, 5, 10, 11] {
            let mut rng = rng(1);
            let success =
                next_attempt(&schedule, attempts, AttemptOutcome::Success, None, &mut rng);
            assert_eq!(success, Decision::Done);
            let gone = next_attempt(&schedule, attempts, AttemptOutcome::Gone, Some(S), &mut rng);
            assert_eq!(gone, Decision::Disable);
        }
    }

    #[test]
    fn jitter_stays_within_20_percent_of_each_step_over_many_seeds() {
        let schedule = RetrySchedule::default();
        for (i, &step) in schedule.steps().iter().enumerate() {
            let (mut low, mut high) = (Duration::MAX, Duration::ZERO);
            for seed in 0..500 {
                let attempt = i as u32 + 1;
                let decision = next_attempt(
                    &schedule,
                    attempt,
                    AttemptOutcome::Failed,
                    None,
                    &mut rng(seed),
                );
                let waited = wait(decision);
                assert!(
                    waited >= step.mul_f64(0.8) && waited <= step.mul_f64(1.2),
                    "{waited:?}"
                );
                (low, high) = (low.min(waited), high.max(waited));
            }
            // The jitter actually spreads: both ends of the band are reached.
            assert!(
                low < step.mul_f64(0.85) && high > step.mul_f64(1.15),
                "{low:?}..{high:?}"
            );
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_decision() {
        let schedule = RetrySchedule::default();
        let decide =
            |seed| next_attempt(&schedule, 3, AttemptOutcome::Failed, None, &mut rng(seed));
        assert_eq!(decide(42), decide(42));
        assert_ne!(decide(42), decide(43));
    }

    #[test]
    fn other_4xx_and_3xx_are_retried_like_5xx() {
        let schedule = RetrySchedule::parse("10s").unwrap();
        for status in [301, 400, 401, 404, 500, 502] {
            let outcome = AttemptOutcome::from_status(status);
            let decision = next_attempt(&schedule, 1, outcome, None, &mut rng(status.into()));
            assert!(
                wait(decision) >= 8 * S && wait(decision) <= 12 * S,
                "{status}"
            );
        }
    }

    #[test]
    fn the_delivery_is_exhausted_once_every_step_is_used() {
        let schedule = RetrySchedule::parse("1ms,2ms,3ms").unwrap();
        for outcome in [
            AttemptOutcome::Failed,
            AttemptOutcome::RateLimited,
            AttemptOutcome::Timeout,
        ] {
            for attempts in 1..=3 {
                let decision = next_attempt(&schedule, attempts, outcome, Some(S), &mut rng(7));
                assert!(matches!(decision, Decision::RetryIn(_)), "{attempts}");
            }
            let last = next_attempt(&schedule, 4, outcome, Some(S), &mut rng(7));
            assert_eq!(last, Decision::Exhausted);
        }
        let single = RetrySchedule::new(Vec::new());
        let decision = next_attempt(&single, 1, AttemptOutcome::Failed, None, &mut rng(7));
        assert_eq!(decision, Decision::Exhausted);
    }

    #[test]
    fn retry_after_on_429_and_503_lengthens_the_wait_but_is_clamped_to_the_largest_step() {
        let schedule = RetrySchedule::parse("10s,1m,1h")
            .unwrap()
            .with_min_after_throttle(S);
        for outcome in [AttemptOutcome::RateLimited, AttemptOutcome::Unavailable] {
            let asked = |after| {
                wait(next_attempt(
                    &schedule,
                    1,
                    outcome,
                    Some(after),
                    &mut rng(3),
                ))
            };
            assert_eq!(asked(120 * S), 120 * S);
            assert_eq!(asked(7 * 24 * 3600 * S), 3600 * S);
            // A shorter Retry-After does not cut our backoff below the jittered step.
            assert!(asked(S) >= 8 * S);
        }
    }

    #[test]
    fn retry_after_is_ignored_where_it_means_nothing() {
        let schedule = RetrySchedule::parse("10s,1h").unwrap();
        for outcome in [AttemptOutcome::Failed, AttemptOutcome::Timeout] {
            let decision = next_attempt(&schedule, 1, outcome, Some(1800 * S), &mut rng(4));
            assert!(wait(decision) <= 60 * S, "{outcome:?}");
        }
    }

    #[test]
    fn after_a_429_or_a_timeout_the_wait_is_at_least_the_throttle_floor() {
        let schedule = RetrySchedule::parse("5s,5m").unwrap();
        for outcome in [AttemptOutcome::RateLimited, AttemptOutcome::Timeout] {
            let first = wait(next_attempt(&schedule, 1, outcome, None, &mut rng(5)));
            assert_eq!(first, 60 * S, "{outcome:?}");
            // The floor never shortens a longer step.
            let second = wait(next_attempt(&schedule, 2, outcome, None, &mut rng(5)));
            assert!(second >= 240 * S, "{outcome:?}");
        }
        // A 503 or any other failure has no floor.
        for outcome in [AttemptOutcome::Unavailable, AttemptOutcome::Failed] {
            assert!(wait(next_attempt(&schedule, 1, outcome, None, &mut rng(5))) <= 6 * S);
        }
        let fast = RetrySchedule::parse("5ms")
            .unwrap()
            .with_min_after_throttle(Duration::from_millis(20));
        let floored = next_attempt(&fast, 1, AttemptOutcome::Timeout, None, &mut rng(5));
        assert_eq!(floored, Decision::RetryIn(Duration::from_millis(20)));
    }

    #[test]
    fn retry_after_reads_seconds_and_all_three_http_date_forms() {
        let now = DateTime::parse_from_rfc3339("1994-11-06T08:49:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(parse_retry_after("120", now), Some(120 * S));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        for date in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(parse_retry_after(date, now), Some(37 * S), "{date}");
        }
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        for junk in ["", "soon", "-5", "1.5", "99999999999999999999999"] {
            assert_eq!(parse_retry_after(junk, now), None, "{junk:?}");
        }
    }
}

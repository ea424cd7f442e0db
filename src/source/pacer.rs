//! Pacing a loop at a frame rate.

use std::thread;
use std::time::{Duration, Instant};

/// Paces a loop at a fixed frame rate, on absolute deadlines.
///
/// Deadlines are `start + k × period`, not "period after the last wake-up",
/// so sleep overshoot and the caller's work do not accumulate as drift: a
/// 30 fps pacer yields 1800 frames a minute however long each frame took,
/// as long as each took less than a period on average.
///
/// A caller later than a whole period does not get a burst of catch-up
/// frames: [`wait`](Pacer::wait) returns at once, reports how many deadlines
/// went by unserved, and carries on at the next deadline of the same grid.
///
/// Sleeping is right here, unlike in a wait for a condition: the pacer
/// waits for a time, not for an event.
///
/// ```
/// use camux::source::Pacer;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut pacer = Pacer::new(1000.0)?;
/// let mut missed = 0;
/// for _ in 0..5 {
///     missed += pacer.wait(); // first call returns at once, then every 1 ms
/// }
/// # let _ = missed;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Pacer {
    /// `None` when unpaced.
    period: Option<Duration>,
    /// The next deadline; `None` before the first [`Pacer::wait`].
    next: Option<Instant>,
}

impl Pacer {
    /// The longest period accepted: one frame a day.
    pub const MAX_PERIOD: Duration = Duration::from_secs(24 * 60 * 60);

    /// The shortest period accepted: 1 ns (10⁹ frames a second).
    pub const MIN_PERIOD: Duration = Duration::from_nanos(1);

    /// A pacer at `fps` frames a second.
    ///
    /// # Errors
    /// [`PacerError::InvalidRate`] unless `fps` is finite, above 0 and gives
    /// a period between [`MIN_PERIOD`](Self::MIN_PERIOD) and
    /// [`MAX_PERIOD`](Self::MAX_PERIOD).
    ///
    /// ```
    /// use camux::source::Pacer;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// assert_eq!(Pacer::new(25.0)?.period(), Some(std::time::Duration::from_millis(40)));
    /// assert!(Pacer::new(0.0).is_err());
    /// assert!(Pacer::new(f64::NAN).is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(fps: f64) -> Result<Pacer, PacerError> {
        let invalid = PacerError::InvalidRate { fps };
        if !(fps.is_finite() && fps > 0.0) {
            return Err(invalid);
        }
        match Duration::try_from_secs_f64(fps.recip()) {
            Ok(period) if (Self::MIN_PERIOD..=Self::MAX_PERIOD).contains(&period) => Ok(Pacer {
                period: Some(period),
                next: None,
            }),
            _ => Err(invalid),
        }
    }

    /// A pacer that never sleeps: flat-out mode, for benchmarks.
    ///
    /// ```
    /// use camux::source::Pacer;
    /// let mut pacer = Pacer::unpaced();
    /// assert_eq!(pacer.wait(), 0);
    /// assert_eq!(pacer.period(), None);
    /// ```
    pub fn unpaced() -> Pacer {
        Pacer {
            period: None,
            next: None,
        }
    }

    /// The time between deadlines; `None` if unpaced.
    ///
    /// ```
    /// use camux::source::Pacer;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// assert_eq!(Pacer::new(2.0)?.period(), Some(std::time::Duration::from_millis(500)));
    /// # Ok(())
    /// # }
    /// ```
    pub fn period(&self) -> Option<Duration> {
        self.period
    }

    /// Sleeps until the next deadline and returns 0, or, if that deadline
    /// is already more than a period past, returns at once with the number
    /// of deadlines missed.
    ///
    /// The first call returns at once and starts the grid of deadlines.
    /// An unpaced pacer always returns 0 at once.
    ///
    /// ```
    /// use camux::source::Pacer;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut pacer = Pacer::new(1000.0)?;
    /// pacer.wait();
    /// std::thread::sleep(std::time::Duration::from_millis(20));
    /// // At least 19 deadlines went by: a sleep never returns early.
    /// assert!(pacer.wait() > 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn wait(&mut self) -> u64 {
        let (sleep, missed) = self.advance(Instant::now());
        if !sleep.is_zero() {
            thread::sleep(sleep);
        }
        missed
    }

    /// [`wait`](Self::wait) with the sleep done by `sleep`, which returns
    /// true if it was interrupted (a stop request): then `None`, and the
    /// deadline is still taken. For a caller that must stop within a frame
    /// of a 1 fps stream, e.g. by waiting on a channel instead of sleeping.
    ///
    /// ```
    /// use camux::source::Pacer;
    /// use std::time::Duration;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut pacer = Pacer::new(0.5)?;
    /// assert_eq!(pacer.wait_or(|_| unreachable!("the first call does not wait")), Some(0));
    /// let (tx, rx) = std::sync::mpsc::channel::<()>();
    /// drop(tx); // a stop already requested
    /// let stopped = |d: Duration| rx.recv_timeout(d).is_err_and(|e| e == std::sync::mpsc::RecvTimeoutError::Disconnected);
    /// assert_eq!(pacer.wait_or(stopped), None, "interrupted, not a 2 s sleep");
    /// # Ok(())
    /// # }
    /// ```
    pub fn wait_or(&mut self, sleep: impl FnOnce(Duration) -> bool) -> Option<u64> {
        let (d, missed) = self.advance(Instant::now());
        if !d.is_zero() && sleep(d) {
            return None;
        }
        Some(missed)
    }

    /// Moves to the next deadline as seen at `now`; returns how long to
    /// sleep and how many deadlines were missed. Pure, so it is tested
    /// without a clock.
    fn advance(&mut self, now: Instant) -> (Duration, u64) {
        let Some(period) = self.period else {
            return (Duration::ZERO, 0);
        };
        let Some(deadline) = self.next else {
            self.next = Some(now + period);
            return (Duration::ZERO, 0);
        };
        if now < deadline {
            self.next = Some(deadline + period);
            return (deadline - now, 0);
        }
        // Late. Serve this deadline now; the ones after it that have also
        // passed are missed. Re-base on the same grid, at the first deadline
        // still ahead, rather than bursting through the missed ones.
        let late = (now - deadline).as_nanos();
        let period_nanos = period.as_nanos();
        let missed = u64::try_from(late / period_nanos).unwrap_or(u64::MAX);
        // The remainder is below the period, at most a day, so it fits a u64.
        let into_period = u64::try_from(late % period_nanos).unwrap_or(0);
        self.next = Some(now + (period - Duration::from_nanos(into_period)));
        (Duration::ZERO, missed)
    }
}

/// Why a [`Pacer`] cannot be made.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PacerError {
    /// The frame rate is not a finite number of frames a second in range.
    #[error(
        "invalid frame rate {fps}: it must be a finite number of frames per second, \
         from one a day (1/86400) to 1e9"
    )]
    InvalidRate {
        /// The rate given.
        fps: f64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn rejects_bad_rates() {
        for fps in [
            0.0,
            -1.0,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e-9,
            1e10,
        ] {
            let PacerError::InvalidRate { fps: given } = Pacer::new(fps).unwrap_err();
            assert_eq!(given.to_bits(), fps.to_bits());
        }
        assert!(Pacer::new(1.0 / 86_400.0).is_ok());
        assert!(Pacer::new(1e9).is_ok());
        let message = Pacer::new(-3.0).unwrap_err().to_string();
        assert!(message.contains("-3"), "{message}");
    }

    #[test]
    fn on_time_caller_sleeps_to_absolute_deadlines() {
        let mut pacer = Pacer::new(1000.0).unwrap();
        let start = Instant::now();
        assert_eq!(pacer.advance(start), (Duration::ZERO, 0));
        // Work of 0.3 ms, then wait: sleep the rest of the period.
        assert_eq!(pacer.advance(start + MS * 3 / 10), (MS * 7 / 10, 0));
        // A wake-up 0.2 ms late does not shift later deadlines (no drift).
        assert_eq!(pacer.advance(start + MS * 12 / 10), (MS * 8 / 10, 0));
        assert_eq!(pacer.next, Some(start + MS * 3));
    }

    #[test]
    fn slightly_late_caller_catches_up_without_a_miss() {
        let mut pacer = Pacer::new(1000.0).unwrap();
        let start = Instant::now();
        pacer.advance(start);
        // Deadline 1 ms, caller arrives at 1.5 ms: serve at once, keep the grid.
        assert_eq!(pacer.advance(start + MS * 15 / 10), (Duration::ZERO, 0));
        assert_eq!(pacer.next, Some(start + MS * 2));
        assert_eq!(pacer.advance(start + MS * 16 / 10), (MS * 4 / 10, 0));
    }

    #[test]
    fn very_late_caller_counts_misses_and_rebases_on_the_grid() {
        let mut pacer = Pacer::new(1000.0).unwrap();
        let start = Instant::now();
        pacer.advance(start);
        // Deadline 1 ms; the caller comes at 4.25 ms: deadlines 2, 3 and 4 ms
        // went by unserved.
        assert_eq!(pacer.advance(start + MS * 425 / 100), (Duration::ZERO, 3));
        // No burst: the next call waits for the 5 ms deadline.
        assert_eq!(pacer.next, Some(start + MS * 5));
        assert_eq!(pacer.advance(start + MS * 45 / 10), (MS / 2, 0));
    }

    #[test]
    fn exactly_on_a_deadline_is_not_late() {
        let mut pacer = Pacer::new(100.0).unwrap();
        let start = Instant::now();
        pacer.advance(start);
        assert_eq!(pacer.advance(start + MS * 10), (Duration::ZERO, 0));
        assert_eq!(pacer.advance(start + MS * 30), (Duration::ZERO, 1));
        assert_eq!(pacer.next, Some(start + MS * 40));
    }

    #[test]
    fn unpaced_never_sleeps() {
        let mut pacer = Pacer::unpaced();
        let start = Instant::now();
        for i in 0..3 {
            assert_eq!(pacer.advance(start + MS * i), (Duration::ZERO, 0));
        }
        assert_eq!(pacer.wait(), 0);
    }
}

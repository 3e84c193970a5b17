//! The long-running mode (`POLL_INTERVAL`): polls on a fixed cadence until
//! SIGTERM or SIGINT, serving the Prometheus endpoint if asked for.
//!
//! The cadence is the wall of ticks of a [`tokio::time::interval`]: a poll
//! starts on a tick and must end before the next one, so polls never
//! overlap and never drift. After failures the daemon waits more ticks
//! (see [`Backoff`]), and a success brings it back to every tick.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::time::MissedTickBehavior;
use tracing::Instrument;

use crate::cli::EXIT_POLL_FAILED;
use crate::endpoint;
use crate::poll::Poller;
use crate::prometheus::Exposition;

/// The longest a failing Drone is left alone between two tries.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// The most ticks a failing Drone is left alone between two tries.
const MAX_BACKOFF_TICKS: u32 = 8;

/// How many ticks to wait after failures: 1 after the first (the normal
/// cadence), then 2, 4, 8, never more than [`MAX_BACKOFF_TICKS`] ticks or
/// [`MAX_BACKOFF`] (but at least 1 tick). Pure, so that the schedule can be
/// tested without a clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    failures: u32,
    /// Ticks still to skip before the next poll.
    skip: u32,
    cap: u32,
}

impl Backoff {
    /// No failure yet, for polls every `interval`.
    pub fn new(interval: Duration) -> Backoff {
        let by_time = (MAX_BACKOFF.as_secs_f64() / interval.as_secs_f64()) as u32;
        Backoff { failures: 0, skip: 0, cap: by_time.clamp(1, MAX_BACKOFF_TICKS) }
    }

    /// Called on every tick: true when this tick is to be skipped.
    pub fn skip_tick(&mut self) -> bool {
        if self.skip > 0 {
            self.skip -= 1;
            true
        } else {
            false
        }
    }

    /// A poll succeeded: back to every tick.
    pub fn succeeded(&mut self) {
        self.failures = 0;
        self.skip = 0;
    }

    /// A poll failed; returns the number of ticks until the next poll.
    pub fn failed(&mut self) -> u32 {
        self.failures = self.failures.saturating_add(1);
        let wait = 1u32.checked_shl(self.failures - 1).unwrap_or(u32::MAX).min(self.cap);
        self.skip = wait - 1;
        wait
    }

    /// Failed polls in a row.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// Time a poll leaves before the next tick, for its own ending.
fn margin(interval: Duration) -> Duration {
    (interval / 10).min(Duration::from_millis(250))
}

/// SIGTERM and SIGINT, listened for from before the clients are built, so
/// that a signal during start-up (the AWS SDK loading its configuration)
/// still ends the daemon cleanly.
pub struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    /// Starts listening.
    ///
    /// # Errors
    ///
    /// When the runtime cannot register the handlers.
    pub fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Waits `pause`, or less if a signal comes: then its name.
    pub async fn sleep(&mut self, pause: Duration) -> Option<&'static str> {
        tokio::select! {
            _ = self.term.recv() => Some("SIGTERM"),
            _ = self.int.recv() => Some("SIGINT"),
            () = tokio::time::sleep(pause) => None,
        }
    }
}

/// Runs until a signal; the exit status is 0 then, and 1 when the
/// Prometheus endpoint cannot be opened.
pub async fn run(
    poller: Poller,
    interval: Duration,
    endpoint: Option<(std::net::SocketAddr, Arc<Exposition>)>,
    signals: Signals,
) -> ExitCode {
    let Signals { mut term, mut int } = signals;
    let exposition = match endpoint {
        None => None,
        Some((address, exposition)) => match endpoint::bind(address).await {
            Ok(listener) => {
                let bound = listener.local_addr().map_or(address, |a| a);
                tracing::info!(address = %bound, "Prometheus endpoint listening on http://{bound}/metrics");
                tokio::spawn(endpoint::serve(listener, exposition.clone()));
                Some(exposition)
            }
            Err(err) => {
                tracing::error!("{err}");
                return ExitCode::from(EXIT_POLL_FAILED);
            }
        },
    };

    let signal_name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
        () = poll_forever(&poller, interval, exposition.as_deref()) => unreachable!(),
    };
    // The poll in flight, if any, was dropped with the loop: nothing of it
    // is published after this line.
    tracing::info!("{signal_name} received: stopping");
    ExitCode::SUCCESS
}

async fn poll_forever(poller: &Poller, interval: Duration, exposition: Option<&Exposition>) {
    let mut ticks = tokio::time::interval(interval);
    // After a stall (a suspended machine), the next poll is on the next
    // tick of the same grid, not a burst of catch-up polls.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut backoff = Backoff::new(interval);
    let mut n: u64 = 0;
    loop {
        let tick = ticks.tick().await.into_std();
        if backoff.skip_tick() {
            continue;
        }
        n += 1;
        let deadline = tick + interval - margin(interval);
        let started = Instant::now();
        let span = tracing::info_span!("poll", n);
        let result = tokio::time::timeout_at(
            (deadline + margin(interval) / 2).into(),
            poller.poll(deadline).instrument(span.clone()),
        )
        .await;
        let elapsed = started.elapsed();
        let error = match result {
            Ok(polled) => {
                // Protection failing is logged on its own and does not slow
                // the polls down: the queue was read.
                if let Some(err) = &polled.protection_error {
                    let _entered = span.enter();
                    tracing::error!("{err}");
                }
                polled.metrics.err().map(|err| err.to_string())
            }
            Err(_) => Some(format!(
                "the poll did not end within the interval ({} ms) and was stopped; \
                 nothing more of it is published",
                interval.as_millis()
            )),
        };
        if let Some(exposition) = exposition {
            exposition.record_poll(error.is_none(), elapsed, SystemTime::now());
        }
        let _entered = span.enter();
        match error {
            None => {
                if backoff.failures() > 0 {
                    tracing::info!(failures = backoff.failures(), "the poll succeeded again");
                }
                backoff.succeeded();
            }
            Some(err) => {
                let wait = backoff.failed();
                tracing::error!(
                    consecutive_failures = backoff.failures(),
                    next_poll_in_ms = (interval * wait).as_millis() as u64,
                    "{err}"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Which of `ticks` ticks poll, given the outcome of each poll in turn.
    fn schedule(interval: Duration, outcomes: &[bool], ticks: usize) -> Vec<usize> {
        let mut backoff = Backoff::new(interval);
        let mut outcomes = outcomes.iter();
        let mut polled = Vec::new();
        for tick in 0..ticks {
            if backoff.skip_tick() {
                continue;
            }
            polled.push(tick);
            match outcomes.next() {
                Some(true) | None => backoff.succeeded(),
                Some(false) => {
                    backoff.failed();
                }
            }
        }
        polled
    }

    #[test]
    fn failures_double_the_wait_and_a_success_restores_the_cadence() {
        let second = Duration::from_secs(1);
        // ok, fail, fail, fail, ok, ok: waits 1, 2, 4 ticks, then every tick.
        assert_eq!(
            schedule(second, &[true, false, false, false, true, true], 11),
            [0, 1, 2, 4, 8, 9, 10]
        );
        // Endless failures level off at 8 ticks.
        let gaps: Vec<usize> =
            schedule(second, &[false; 20], 80).windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(gaps[..6], [1, 2, 4, 8, 8, 8]);
    }

    #[test]
    fn the_wait_never_exceeds_five_minutes_or_falls_below_one_tick() {
        let mut backoff = Backoff::new(Duration::from_secs(60));
        let waits: Vec<u32> = (0..6).map(|_| backoff.failed()).collect();
        assert_eq!(waits, [1, 2, 4, 5, 5, 5]);
        let mut hourly = Backoff::new(Duration::from_secs(3600));
        assert_eq!((0..3).map(|_| hourly.failed()).collect::<Vec<_>>(), [1, 1, 1]);
        let mut many = Backoff::new(Duration::from_secs(1));
        for _ in 0..100 {
            many.failed();
        }
        assert_eq!(many.failed(), 8);
    }

    #[test]
    fn a_poll_ends_before_the_next_tick() {
        for interval in [1, 15, 60].map(Duration::from_secs) {
            assert!(margin(interval) > Duration::ZERO);
            assert!(margin(interval) + margin(interval) / 2 < interval);
        }
    }
}

//! Replay at a rate (`--rate R`): this thread plays the bag on its recorded receive times
//! divided by R while the inference loop runs on `lookout-infer` with the live policy (queue
//! drops, ages on the bag's clock, hard timeouts by a registered watchdog), as a vehicle would see
//! it. A dead inference thread ends the replay with an error.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::{Replay, ReplayError};

/// The longest stretch of bag time between two messages the player waits for (60 s); longer
/// gaps are played as this.
const MAX_GAP_NS: u64 = 60_000_000_000;
use crate::runtime::RuntimeError;

impl Replay {
    /// Rate: a player (this thread) pushes frames on the bag's clock; the loop runs on
    /// `lookout-infer`; results are written here between frames.
    pub(super) fn run_paced(
        &mut self,
        rate: f64,
        stop: &AtomicBool,
        progress: &mut dyn FnMut(u64),
    ) -> Result<bool, ReplayError> {
        let infer_thread = self.runtime.start(
            &self.options.config.realtime.inference,
            Duration::from_millis(5),
        )?;
        for c in &mut self.cameras {
            c.producer.set_wake(infer_thread.clone());
        }

        let rate = rate.clamp(super::MIN_RATE, super::MAX_RATE);
        let mut interrupted = false;
        let mut failure: Option<ReplayError> = None;
        let mut frames = 0u64;
        let wall_start = Instant::now();
        let mut bag_offset = 0u64; // played time of the bags before this one
        let mut clock = 0u64;
        let mut gaps_skipped = 0u64;
        let bags = std::mem::take(&mut self.bags);
        for bag in &bags {
            let mut first_in_bag: Option<u64> = None;
            // The latest receive time so far, and the bag time not waited for (long gaps).
            let mut high = 0u64;
            let mut skipped_ns = 0u64;
            let damage = bag.for_each_readable(|m| {
                // Each bag plays after the previous one, on its own recorded times; a jump
                // forward of more than MAX_GAP_NS (a bag from a hostile or broken recorder:
                // a receive time of u64::MAX would stall the player for ever) is played as
                // MAX_GAP_NS, counted and logged once.
                let t0 = *first_in_bag.get_or_insert(m.log_time_ns);
                if m.log_time_ns > high {
                    let jump = m.log_time_ns.saturating_sub(high.max(t0));
                    if jump > MAX_GAP_NS {
                        skipped_ns = skipped_ns.saturating_add(jump - MAX_GAP_NS);
                        gaps_skipped += 1;
                        if gaps_skipped == 1 {
                            tracing::warn!(topic = m.topic, jump_s = jump as f64 / 1e9, max_s = MAX_GAP_NS / 1_000_000_000, "the bag's receive times jump forward; a gap is played as at most the maximum (further gaps are counted, not logged)");
                        }
                    }
                    high = m.log_time_ns;
                }
                let played = bag_offset
                    .saturating_add(m.log_time_ns.saturating_sub(t0))
                    .saturating_sub(skipped_ns);
                let wait = Duration::try_from_secs_f64(played as f64 / 1e9 / rate)
                    .unwrap_or(Duration::MAX);
                let due = wall_start.checked_add(wait);
                loop {
                    if stop.load(Ordering::Relaxed) {
                        interrupted = true;
                        return ControlFlow::Break(());
                    }
                    let now = Instant::now();
                    // The bag's clock runs at `rate` towards this message's receive time.
                    let ahead = due.map_or(Duration::MAX, |d| d.saturating_duration_since(now));
                    let bag_now = m.log_time_ns.saturating_sub((ahead.as_secs_f64() * rate * 1e9) as u64);
                    if bag_now > clock || bag_now.saturating_add(1_000_000_000) < clock {
                        clock = bag_now;
                    }
                    self.clock_ns
                        .store(i64::try_from(clock).unwrap_or(i64::MAX), Ordering::Relaxed);
                    if let Err(e) = self
                        .drain(None, None)
                        .and_then(|()| self.emit_diagnostics_until(clock))
                    {
                        failure = Some(e);
                        return ControlFlow::Break(());
                    }
                    // Supervision: a dead inference thread ends the replay (found at join).
                    if self.runtime.first_gone().is_some() {
                        return ControlFlow::Break(());
                    }
                    if due.is_some_and(|d| now >= d) {
                        break;
                    }
                    std::thread::sleep(ahead.min(Duration::from_millis(2)));
                }
                clock = m.log_time_ns;
                self.clock_ns
                    .store(i64::try_from(clock).unwrap_or(i64::MAX), Ordering::Relaxed);
                if let Err(e) = self.copy(&m) {
                    failure = Some(e);
                    return ControlFlow::Break(());
                }
                if let Some(c) = self.cameras.iter().position(|c| c.topic == m.topic) {
                    self.push(c, m.data);
                    frames += 1;
                    progress(frames);
                }
                ControlFlow::Continue(())
            })?;
            self.note_damage(damage);
            bag_offset = bag_offset
                .saturating_add(high.saturating_sub(first_in_bag.unwrap_or(high)))
                .saturating_sub(skipped_ns);
            if failure.is_some() || interrupted {
                break;
            }
        }
        self.bags = bags;
        // Wait until every frame pushed is accounted for (or 30 s), then stop the loop.
        let deadline = Instant::now() + Duration::from_secs(30);
        while failure.is_none()
            && Instant::now() < deadline
            && !self.all_accounted()
            && self.runtime.first_gone().is_none()
        {
            if let Err(e) = self.drain(None, None) {
                failure = Some(e);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        // The loop comes back to the runtime; a thread that died is an error (frames lost).
        let gone = self.runtime.first_gone();
        if let Err(e) = self.runtime.stop(gone) {
            let (thread, reason) = match e {
                RuntimeError::WorkerDied { thread, reason } => (thread, reason),
                other => ("lookout-infer", other.to_string()),
            };
            tracing::error!(thread, reason = %reason, "worker thread died; the replay fails");
            failure.get_or_insert(ReplayError::WorkerDied { thread, reason });
        }
        // The loop has stopped: take every result left.
        if failure.is_none()
            && let Err(e) = self.drain(None, None)
        {
            failure = Some(e);
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(interrupted),
        }
    }

    fn all_accounted(&self) -> bool {
        self.cameras.iter().all(|c| {
            let s = c.counters.snapshot();
            s.settled_in_loop() >= s.received
        }) && self.runtime.results().is_none_or(|r| r.is_empty())
    }
}

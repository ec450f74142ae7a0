//! What the report pages draw, and drawing it: latency histograms per stage, a timeline of
//! results, drops and misses, and the sweep curve. The front ends collect the data
//! ([`Timeline`], bins from [`crate::runtime::deadline::LatencyStats::total_bins`]); [`html`]
//! turns a report into one self-contained HTML page of inline SVG ([`svg`]): no network, no
//! fonts, no scripts but a small self-check the browser test reads.
//!
//! Contract: [`Timeline::new`] allocates its slots once; [`Timeline::record`] and
//! [`Timeline::note_drops`] allocate nothing (when the slots run out, neighbours are merged and
//! each slot covers twice the time). Rendering allocates freely; it runs once, at the end.

pub mod boxes;
pub mod html;
pub mod svg;

use std::time::{Duration, Instant};

use serde::Serialize;

/// Slots a timeline keeps.
pub const TIMELINE_SLOTS: usize = 200;

/// One slot of a [`Timeline`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Slot {
    /// Results taken in the slot.
    pub results: u64,
    /// Mean end-to-end latency of those results, ms.
    pub e2e_mean_ms: f64,
    /// Largest end-to-end latency, ms.
    pub e2e_max_ms: f64,
    /// Results later than their budget.
    pub misses: u64,
    /// Frames dropped during the slot (all cameras, any reason but bad input).
    pub drops: u64,
}

/// Results over time in a fixed number of slots.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Timeline {
    /// Width of a slot, s.
    pub slot_s: f64,
    /// The slots, from the start.
    pub slots: Vec<Slot>,
    #[serde(skip)]
    start: Option<Instant>,
    #[serde(skip)]
    used: usize,
    #[serde(skip)]
    drops_seen: u64,
}

impl Default for Timeline {
    fn default() -> Self {
        Self::new(Duration::from_secs(1))
    }
}

impl Timeline {
    /// An empty timeline whose slots start `slot` wide (they widen as needed).
    pub fn new(slot: Duration) -> Self {
        Self {
            slot_s: slot.as_secs_f64().max(1e-3),
            slots: vec![Slot::default(); TIMELINE_SLOTS],
            start: None,
            used: 0,
            drops_seen: 0,
        }
    }

    /// Sets the time the timeline counts from (else the first record).
    pub fn start_at(&mut self, start: Instant) {
        self.start = Some(start);
    }

    /// The slot of `now`, merging neighbours while `now` is past the last slot.
    fn slot(&mut self, now: Instant) -> &mut Slot {
        let start = *self.start.get_or_insert(now);
        let t = now.saturating_duration_since(start).as_secs_f64();
        let mut i = (t / self.slot_s) as usize;
        while i >= self.slots.len() {
            // Merge pairs: each slot now covers twice the time.
            let n = self.slots.len();
            for k in 0..n / 2 {
                let (a, b) = (self.slots[2 * k], self.slots[2 * k + 1]);
                let results = a.results + b.results;
                self.slots[k] = Slot {
                    results,
                    e2e_mean_ms: if results > 0 {
                        (a.e2e_mean_ms * a.results as f64 + b.e2e_mean_ms * b.results as f64)
                            / results as f64
                    } else {
                        0.0
                    },
                    e2e_max_ms: a.e2e_max_ms.max(b.e2e_max_ms),
                    misses: a.misses + b.misses,
                    drops: a.drops + b.drops,
                };
            }
            for s in &mut self.slots[n / 2..] {
                *s = Slot::default();
            }
            self.slot_s *= 2.0;
            i = (t / self.slot_s) as usize;
        }
        self.used = self.used.max(i + 1);
        &mut self.slots[i]
    }

    /// Records one result taken at `now`, `e2e` after its frame arrived; `missed`: later than
    /// its budget.
    pub fn record(&mut self, now: Instant, e2e: Duration, missed: bool) {
        let ms = e2e.as_secs_f64() * 1e3;
        let s = self.slot(now);
        s.e2e_mean_ms = (s.e2e_mean_ms * s.results as f64 + ms) / (s.results + 1) as f64;
        s.results += 1;
        s.e2e_max_ms = s.e2e_max_ms.max(ms);
        s.misses += u64::from(missed);
    }

    /// Notes the total of drops so far (all cameras) at `now`; the increase since the last
    /// note goes to `now`'s slot.
    pub fn note_drops(&mut self, now: Instant, total: u64) {
        let new = total.saturating_sub(self.drops_seen);
        self.drops_seen = self.drops_seen.max(total);
        if new > 0 {
            self.slot(now).drops += new;
        }
    }

    /// Drops the slots after the last one used (call once, at the end).
    pub fn finish(&mut self) {
        self.slots.truncate(self.used);
    }
}

/// Latency counts of one stage: `(low ms, high ms, count)` per bin.
pub type Bins = Vec<(f64, f64, u64)>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_land_in_their_slot_and_a_long_run_merges_slots() {
        let t0 = Instant::now();
        let mut t = Timeline::new(Duration::from_millis(100));
        t.start_at(t0);
        t.record(
            t0 + Duration::from_millis(50),
            Duration::from_millis(10),
            false,
        );
        t.record(
            t0 + Duration::from_millis(60),
            Duration::from_millis(30),
            true,
        );
        t.note_drops(t0 + Duration::from_millis(150), 2);
        t.note_drops(t0 + Duration::from_millis(160), 2);
        assert_eq!(t.slots[0].results, 2);
        assert_eq!(t.slots[0].e2e_mean_ms, 20.0);
        assert_eq!(t.slots[0].e2e_max_ms, 30.0);
        assert_eq!(t.slots[0].misses, 1);
        assert_eq!(t.slots[1].drops, 2);
        // Past the last slot (200 x 0.1 s): slots widen to 0.2 s, nothing is lost.
        t.record(
            t0 + Duration::from_millis(25_000),
            Duration::from_millis(5),
            false,
        );
        assert_eq!(t.slot_s, 0.2);
        assert_eq!(t.slots[0].results, 2);
        assert_eq!(t.slots[0].drops, 2);
        assert_eq!(t.slots[125].results, 1);
        t.finish();
        assert_eq!(t.slots.len(), 126);
        let total: u64 = t.slots.iter().map(|s| s.results).sum();
        assert_eq!(total, 3);
    }
}

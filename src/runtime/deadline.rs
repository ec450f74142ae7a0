//! Deadlines and latency statistics: every frame's timing, checked against its camera's budget,
//! summarised in streaming percentiles.
//!
//! Two clocks, never mixed:
//! - **Stage durations** (queue wait, pre-processing, inference, post-processing, reception to
//!   publication) are differences of monotonic `Instant`s taken on this machine.
//! - **Frame age** (`now - header.stamp`) is ROS time: the system clock, or `/clock` with
//!   `use_sim_time`. A negative age (a stamp from the future, a bag looping back) is clamped to
//!   zero and, beyond [`FUTURE_STAMP_TOLERANCE`], counted as a clock anomaly; no latency is ever
//!   reported negative.
//!
//! Statistics are HDR histograms (microseconds, 1 µs .. 10 min, 3 significant digits), one per
//! measure over a sliding window (rotated every `window`) and one since start. Recording and
//! reading percentiles allocate nothing; the histograms are allocated in `new()`.
//!
//! Contract: [`DeadlineMonitor`] and [`LatencyStats`] allocate only in `new()`, never block, never
//! fail. Each is owned by one thread (the inference loop or the publisher); other threads see
//! plain-data [`StatsSnapshot`]s.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Largest recorded value, µs (10 minutes); larger values are recorded as this.
const MAX_MICROS: u64 = 600_000_000;

/// What happens to a result that misses its soft deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LatePolicy {
    /// Publish it anyway (the miss is counted).
    Publish,
    /// Do not publish it (counted as a miss and a late drop).
    Drop,
}

/// Percentiles of one measure, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest sample.
    pub max: f64,
}

/// An HDR histogram's recorded buckets, for merging across runs (`lookout-fleet` sums the
/// reports of many replays). Every histogram lookout records has the same layout (1 µs .. 10
/// min, 3 significant digits), so two of them merge exactly by adding the counts of equal
/// bucket values; the merged percentiles are then those of the concatenated samples.
///
/// Percentile rule (the one [`Percentiles`] uses): for quantile `q` of `n` samples, the first
/// bucket, in ascending order, at which the running count reaches `max(1, ceil(q * n))`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SparseHistogram {
    /// Significant decimal digits of the layout (3).
    pub significant_digits: u8,
    /// Largest value the layout records, µs (larger ones are recorded as this).
    pub highest_us: u64,
    /// `[value µs, count]` per non-empty bucket, ascending. The value is the highest one the
    /// bucket holds, which is what the percentiles report.
    pub buckets: Vec<[u64; 2]>,
}

/// Streaming percentiles over a sliding window and since start.
pub struct LatencyStats {
    window: Histogram<u64>,
    previous: Histogram<u64>,
    total: Histogram<u64>,
    scratch: Histogram<u64>,
    window_len: Duration,
    window_started: Option<Instant>,
}

fn histogram() -> Result<Histogram<u64>, hdrhistogram::CreationError> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3)
}

fn percentiles(h: &Histogram<u64>) -> Percentiles {
    if h.is_empty() {
        return Percentiles::default();
    }
    let ms = |us: u64| us as f64 / 1000.0;
    Percentiles {
        count: h.len(),
        p50: ms(h.value_at_quantile(0.5)),
        p90: ms(h.value_at_quantile(0.9)),
        p99: ms(h.value_at_quantile(0.99)),
        p999: ms(h.value_at_quantile(0.999)),
        max: ms(h.max()),
    }
}

fn sparse(h: &Histogram<u64>) -> SparseHistogram {
    SparseHistogram {
        significant_digits: h.sigfig(),
        highest_us: MAX_MICROS,
        buckets: h
            .iter_recorded()
            .map(|v| [v.value_iterated_to(), v.count_at_value()])
            .collect(),
    }
}

impl LatencyStats {
    /// Allocates the histograms. The window statistics cover between one and two `window`s.
    /// Fails only if hdrhistogram rejects the (constant) bounds.
    pub fn new(window: Duration) -> Result<Self, hdrhistogram::CreationError> {
        Ok(Self {
            window: histogram()?,
            previous: histogram()?,
            total: histogram()?,
            scratch: histogram()?,
            window_len: window,
            window_started: None,
        })
    }

    /// Records one duration at time `now`.
    pub fn record(&mut self, now: Instant, value: Duration) {
        self.rotate(now);
        let us = u64::try_from(value.as_micros())
            .unwrap_or(MAX_MICROS)
            .clamp(1, MAX_MICROS);
        // Cannot fail: the value is within the histogram's bounds.
        let _ = self.window.record(us);
        let _ = self.total.record(us);
    }

    /// Starts a new window when the current one is older than the window length.
    pub fn rotate(&mut self, now: Instant) {
        let started = *self.window_started.get_or_insert(now);
        if now.saturating_duration_since(started) >= self.window_len {
            std::mem::swap(&mut self.window, &mut self.previous);
            self.window.reset();
            self.window_started = Some(now);
        }
    }

    /// Percentiles over the sliding window (the current and the previous window together).
    pub fn window(&mut self) -> Percentiles {
        self.scratch.reset();
        // Cannot fail: all histograms share the same bounds, so adding never resizes.
        let _ = self.scratch.add(&self.window);
        let _ = self.scratch.add(&self.previous);
        percentiles(&self.scratch)
    }

    /// Percentiles since start.
    pub fn total(&self) -> Percentiles {
        percentiles(&self.total)
    }

    /// Every non-empty bucket since start (see [`SparseHistogram`]). Allocates the result.
    pub fn total_sparse(&self) -> SparseHistogram {
        sparse(&self.total)
    }

    /// Counts since start in `bins` log-spaced bins from the smallest to the largest value
    /// recorded: `(low ms, high ms, count)`. Empty before any value. Allocates the result.
    pub fn total_bins(&self, bins: usize) -> Vec<(f64, f64, u64)> {
        let h = &self.total;
        if h.is_empty() || bins == 0 {
            return Vec::new();
        }
        let (lo, hi) = (h.min().max(1) as f64, (h.max().max(h.min()) + 1) as f64);
        let ratio = (hi / lo).powf(1.0 / bins as f64);
        let mut out = Vec::with_capacity(bins);
        let mut from = lo;
        for i in 0..bins {
            let to = if i + 1 == bins { hi } else { from * ratio };
            // Integer microseconds [ceil(from), ceil(to)): adjacent bins neither overlap nor
            // leave a gap; a bin narrower than a microsecond holds nothing.
            let (a, b) = (from.ceil() as u64, to.ceil() as u64);
            let count = if b > a { h.count_between(a, b - 1) } else { 0 };
            out.push((from / 1000.0, to / 1000.0, count));
            from = to;
        }
        out
    }
}

/// Deadline settings of one camera.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeadlineSettings {
    /// Soft deadline from reception to publication.
    pub budget: Duration,
    /// Frames older than this (ROS time) when dequeued are dropped; `None`: no limit.
    pub max_age: Option<Duration>,
    /// What happens to late results.
    pub late_policy: LatePolicy,
}

/// What to do with a frame just taken from its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Process it.
    Process,
    /// Drop it unprocessed: older than `max_age`.
    TooOld,
}

/// What to do with a finished result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within budget: publish.
    OnTime,
    /// Over budget; publish (policy `publish`).
    LatePublish,
    /// Over budget; drop (policy `drop`).
    LateDrop,
}

/// How far in the future a stamp may be before it counts as a clock anomaly: with sim time the
/// node's latest `/clock` lags a sim-aware publisher by up to one clock period, and across
/// machines clocks differ by a little.
pub const FUTURE_STAMP_TOLERANCE: Duration = Duration::from_millis(100);

/// Frame age from ROS times (ns): `now - stamp`, clamped at zero. Returns the age and whether
/// the clock was inconsistent (stamp more than [`FUTURE_STAMP_TOLERANCE`] in the future).
pub fn frame_age(now_ros_ns: i64, stamp_ns: i64) -> (Duration, bool) {
    let age = now_ros_ns.saturating_sub(stamp_ns);
    if age < 0 {
        let ahead = Duration::from_nanos(age.unsigned_abs());
        (Duration::ZERO, ahead > FUTURE_STAMP_TOLERANCE)
    } else {
        (Duration::from_nanos(age as u64), false)
    }
}

/// Per-camera admission and deadline decisions (pure logic on given times).
#[derive(Debug, Clone, Copy)]
pub struct DeadlineMonitor {
    settings: DeadlineSettings,
}

impl DeadlineMonitor {
    /// A monitor with `settings`.
    pub fn new(settings: DeadlineSettings) -> Self {
        Self { settings }
    }

    /// The settings.
    pub fn settings(&self) -> &DeadlineSettings {
        &self.settings
    }

    /// Decides whether a frame of age `age` (ROS time, already clamped) is processed.
    pub fn admit(&self, age: Duration) -> Admission {
        match self.settings.max_age {
            Some(max) if age > max => Admission::TooOld,
            _ => Admission::Process,
        }
    }

    /// Decides what happens to a result whose reception-to-now time is `elapsed` (monotonic).
    pub fn verdict(&self, elapsed: Duration) -> Verdict {
        if elapsed <= self.settings.budget {
            Verdict::OnTime
        } else if self.settings.late_policy == LatePolicy::Drop {
            Verdict::LateDrop
        } else {
            Verdict::LatePublish
        }
    }
}

/// Where ROS time comes from.
#[derive(Debug, Clone)]
pub enum RosClock {
    /// The system clock (no `use_sim_time`).
    System,
    /// The latest `/clock` message, ns (0: none received yet), stored by the executor thread.
    Sim(std::sync::Arc<std::sync::atomic::AtomicI64>),
}

impl RosClock {
    /// Current ROS time in ns, or `None` with sim time before the first `/clock`.
    pub fn now_ns(&self) -> Option<i64> {
        match self {
            Self::System => {
                let d = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                Some(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
            }
            Self::Sim(t) => match t.load(std::sync::atomic::Ordering::Relaxed) {
                0 => None,
                ns => Some(ns),
            },
        }
    }
}

/// A plain-data copy of one camera's statistics, sent between threads once a period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct StatsSnapshot {
    /// Queue wait (enqueued -> dequeued), window.
    pub queue: Percentiles,
    /// Pre-processing (incl. decoding), window.
    pub preprocess: Percentiles,
    /// Inference, window.
    pub inference: Percentiles,
    /// Post-processing, window.
    pub postprocess: Percentiles,
    /// Frame age at dequeue (ROS time), window.
    pub age: Percentiles,
    /// Reception to publication, window (publisher side).
    pub e2e: Percentiles,
    /// Reception to publication since start.
    pub e2e_total: Percentiles,
    /// Inference since start.
    pub inference_total: Percentiles,
    /// Pre-processing since start.
    pub preprocess_total: Percentiles,
    /// Post-processing since start.
    pub postprocess_total: Percentiles,
    /// The camera's picture now ([`crate::runtime::input_health`]).
    #[serde(skip)]
    pub input: crate::runtime::input_health::InputHealthSnapshot,
    /// The camera's detections against the drift profile (`frames == 0`: no profile).
    #[serde(skip)]
    pub drift: crate::runtime::drift::DriftSnapshot,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn settings(max_age: Option<u64>, late: LatePolicy) -> DeadlineSettings {
        DeadlineSettings {
            budget: ms(100),
            max_age: max_age.map(ms),
            late_policy: late,
        }
    }

    /// The documented percentile rule, applied to buckets.
    fn quantile_of(buckets: &[[u64; 2]], q: f64) -> u64 {
        let n: u64 = buckets.iter().map(|b| b[1]).sum();
        let target = ((q * n as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for b in buckets {
            seen += b[1];
            if seen >= target {
                return b[0];
            }
        }
        0
    }

    #[test]
    fn sparse_histograms_merge_into_the_histogram_of_the_concatenated_samples() {
        // Two runs with different spreads (µs), and one run over both.
        let a: Vec<u64> = (0..5000u64).map(|i| 900 + (i * 7919) % 40_000).collect();
        let b: Vec<u64> = (0..3000u64)
            .map(|i| 20_000 + (i * 104_729) % 900_000)
            .collect();
        let t0 = Instant::now();
        let run = |samples: &[u64]| {
            let mut s = LatencyStats::new(Duration::from_secs(3600)).unwrap();
            for &us in samples {
                s.record(t0, Duration::from_micros(us));
            }
            s
        };
        let (ha, hb) = (run(&a), run(&b));
        let both = run(&[a.clone(), b.clone()].concat());
        let mut merged = std::collections::BTreeMap::new();
        for [v, c] in ha
            .total_sparse()
            .buckets
            .into_iter()
            .chain(hb.total_sparse().buckets)
        {
            *merged.entry(v).or_insert(0u64) += c;
        }
        let merged: Vec<[u64; 2]> = merged.into_iter().map(|(v, c)| [v, c]).collect();
        let whole = both.total_sparse();
        assert_eq!(merged, whole.buckets);
        assert_eq!(
            (whole.significant_digits, whole.highest_us),
            (3, MAX_MICROS)
        );
        // The rule gives what the report's percentiles say.
        let p = both.total();
        for (q, want) in [(0.5, p.p50), (0.9, p.p90), (0.99, p.p99), (0.999, p.p999)] {
            assert_eq!(quantile_of(&merged, q) as f64 / 1000.0, want, "q {q}");
        }
        assert_eq!(merged.last().unwrap()[0] as f64 / 1000.0, p.max);
        // And within the layout's precision, the exact order statistics of the samples.
        let mut all = [a, b].concat();
        all.sort_unstable();
        let exact = all[(0.99 * all.len() as f64).ceil() as usize - 1];
        let got = quantile_of(&merged, 0.99);
        assert!(
            got >= exact && got <= exact + exact / 1000 + 1,
            "{got} vs {exact}"
        );
    }

    #[test]
    fn budget_splits_on_time_and_late() {
        let m = DeadlineMonitor::new(settings(None, LatePolicy::Publish));
        assert_eq!(m.verdict(ms(100)), Verdict::OnTime);
        assert_eq!(m.verdict(ms(101)), Verdict::LatePublish);
        let d = DeadlineMonitor::new(settings(None, LatePolicy::Drop));
        assert_eq!(d.verdict(ms(250)), Verdict::LateDrop);
    }

    #[test]
    fn max_age_drops_old_frames_only_when_set() {
        let m = DeadlineMonitor::new(settings(Some(200), LatePolicy::Publish));
        assert_eq!(m.admit(ms(199)), Admission::Process);
        assert_eq!(m.admit(ms(201)), Admission::TooOld);
        let open = DeadlineMonitor::new(settings(None, LatePolicy::Publish));
        assert_eq!(open.admit(ms(1_000_000)), Admission::Process);
    }

    #[test]
    fn clock_jumping_backwards_never_gives_a_negative_age() {
        // A bag looping: now is 5 s before the stamp.
        let (age, anomaly) = frame_age(10_000_000_000, 15_000_000_000);
        assert_eq!((age, anomaly), (Duration::ZERO, true));
        // A stamp a few ms ahead (sim clock lag, clock skew): age 0, not an anomaly.
        assert_eq!(
            frame_age(1_000_000_000, 1_020_000_000),
            (Duration::ZERO, false)
        );
        // Forward jump: a large but valid age.
        let (age, anomaly) = frame_age(3_600_000_000_000, 1_000_000_000);
        assert_eq!((age, anomaly), (Duration::from_secs(3599), false));
    }

    #[test]
    fn percentiles_over_window_and_since_start() {
        let t0 = Instant::now();
        let mut s = LatencyStats::new(Duration::from_secs(10)).unwrap();
        for i in 1..=100u64 {
            s.record(t0, ms(i));
        }
        let w = s.window();
        assert_eq!(w.count, 100);
        assert!((w.p50 - 50.0).abs() < 0.5, "{w:?}");
        assert!((w.p99 - 99.0).abs() < 0.5, "{w:?}");
        assert!((w.max - 100.0).abs() < 0.5, "{w:?}");
        // Two windows later the old samples have left the window but not the total.
        s.record(t0 + Duration::from_secs(11), ms(5));
        s.record(t0 + Duration::from_secs(22), ms(7));
        let w = s.window();
        assert_eq!(w.count, 2, "{w:?}");
        assert!((w.max - 7.0).abs() < 0.1);
        assert_eq!(s.total().count, 102);
        assert!((s.total().max - 100.0).abs() < 0.5);
    }

    #[test]
    fn huge_and_zero_durations_are_clamped_not_lost() {
        let t0 = Instant::now();
        let mut s = LatencyStats::new(Duration::from_secs(10)).unwrap();
        s.record(t0, Duration::ZERO);
        s.record(t0, Duration::from_secs(100_000));
        assert_eq!(s.total().count, 2);
        assert!(s.total().max >= 599_000.0);
    }
}

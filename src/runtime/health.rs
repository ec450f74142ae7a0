//! Health of each camera and of the inference engine, as `diagnostic_msgs/DiagnosticStatus`
//! content: a level (OK, WARN, ERROR, STALE), a message that says why, and key/values.
//!
//! The key names are an interface (dashboards, `ros2 topic echo /diagnostics`, alert rules) and
//! are listed in the README. Everything here is a pure function of counters, statistics and
//! times passed in, so the rules are tested with a fake clock.
//!
//! Rules, per camera, over the last diagnostics period (counter increases) and the sliding
//! window (percentiles):
//! - STALE: no frame for `input_timeout_ms` (or none since start after that long).
//! - ERROR: an inference timed out or failed, or the output rate is below
//!   `min_output_rate_hz` while frames arrive.
//! - WARN: window p99 of reception-to-publication over `budget_ms`; deadline misses; frames
//!   dropped (queue full, superseded, too old, late, output); bad input; clock anomalies; an
//!   incompatible publisher on the topic.
//! - OK otherwise. The level is the worst that applies; the message lists every reason.
//!
//! [`Health`] keeps what the rules compare against (the counters one period ago, the latest
//! statistics) for a front end: the live node's executor and bag replay both use it.
//!
//! Contract: allocates (strings); runs once a period on the executor thread, never per frame.

use std::time::{Duration, Instant};

use std::sync::atomic::Ordering;

use crate::config::CameraConfig;
use crate::runtime::counters::{CameraCounters, CounterSnapshot, EngineCounters, process_epoch};
use crate::runtime::deadline::{Percentiles, StatsSnapshot};
use crate::runtime::shadow::health::ShadowRule;

/// `diagnostic_msgs/DiagnosticStatus` levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// OK (0).
    Ok = 0,
    /// WARN (1).
    Warn = 1,
    /// ERROR (2).
    Error = 2,
    /// STALE (3).
    Stale = 3,
}

impl Level {
    /// The byte value of `diagnostic_msgs/DiagnosticStatus.level`.
    pub fn as_byte(self) -> u8 {
        self as u8
    }
}

/// One status: level, message, key/values.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// `name` field (`lookout: camera front`, `lookout: inference engine`).
    pub name: String,
    /// Level.
    pub level: Level,
    /// Why (`OK` when nothing is wrong).
    pub message: String,
    /// Key/values.
    pub values: Vec<(String, String)>,
}

/// What the camera rules look at.
#[derive(Debug, Clone, Copy)]
pub struct CameraInput<'a> {
    /// Camera name.
    pub name: &'a str,
    /// Now (monotonic).
    pub now: Instant,
    /// Node start.
    pub started: Instant,
    /// Counters now.
    pub counters: CounterSnapshot,
    /// Counters one period ago.
    pub previous: CounterSnapshot,
    /// Time since `previous`.
    pub period: Duration,
    /// Last frame arrival.
    pub last_received: Option<Instant>,
    /// Latency statistics.
    pub stats: StatsSnapshot,
    /// Publishers on the topic that cannot match, now.
    pub qos_incompatible: u64,
    /// Soft deadline, ms.
    pub budget_ms: f64,
    /// Stale after this long without a frame.
    pub input_timeout: Duration,
    /// Minimum output rate, Hz (0: off).
    pub min_output_rate_hz: f64,
}

fn fmt_ms(v: f64) -> String {
    format!("{v:.2}")
}

fn push_percentiles(values: &mut Vec<(String, String)>, key: &str, p: &Percentiles, full: bool) {
    values.push((format!("{key}_ms_p50"), fmt_ms(p.p50)));
    if full {
        values.push((format!("{key}_ms_p90"), fmt_ms(p.p90)));
    }
    values.push((format!("{key}_ms_p99"), fmt_ms(p.p99)));
    if full {
        values.push((format!("{key}_ms_p999"), fmt_ms(p.p999)));
    }
    values.push((format!("{key}_ms_max"), fmt_ms(p.max)));
}

/// The status of one camera.
pub fn camera_status(c: &CameraInput<'_>) -> Status {
    let now = c.counters;
    let before = c.previous;
    let d = |a: u64, b: u64| a.saturating_sub(b);
    let secs = c.period.as_secs_f64().max(1e-3);
    let input_rate = d(now.received, before.received) as f64 / secs;
    let output_rate = d(now.published, before.published) as f64 / secs;

    let mut level = Level::Ok;
    let mut reasons: Vec<String> = Vec::new();
    let mut flag = |l: Level, why: String, level: &mut Level| {
        *level = (*level).max(l);
        reasons.push(why);
    };

    let silent_for = match c.last_received {
        Some(t) => c.now.saturating_duration_since(t),
        None => c.now.saturating_duration_since(c.started),
    };
    if silent_for > c.input_timeout {
        let what = if c.last_received.is_some() {
            "no frame for"
        } else {
            "no frame yet after"
        };
        flag(
            Level::Stale,
            format!(
                "{what} {:.1} s (input_timeout_ms {:.0})",
                silent_for.as_secs_f64(),
                c.input_timeout.as_secs_f64() * 1e3
            ),
            &mut level,
        );
    }
    let timeouts = d(now.timeouts, before.timeouts);
    if timeouts > 0 {
        flag(
            Level::Error,
            format!("{timeouts} inference runs over hard_timeout_ms terminated"),
            &mut level,
        );
    }
    let errors = d(now.inference_errors, before.inference_errors);
    if errors > 0 {
        flag(
            Level::Error,
            format!("{errors} inference failures"),
            &mut level,
        );
    }
    if c.min_output_rate_hz > 0.0 && input_rate > 0.0 && output_rate < c.min_output_rate_hz {
        flag(
            Level::Error,
            format!(
                "output rate {output_rate:.1} Hz < minimum {:.1} Hz",
                c.min_output_rate_hz
            ),
            &mut level,
        );
    }
    if c.stats.e2e.count > 0 && c.stats.e2e.p99 > c.budget_ms {
        flag(
            Level::Warn,
            format!(
                "p99 latency {:.1} ms > budget {:.1} ms",
                c.stats.e2e.p99, c.budget_ms
            ),
            &mut level,
        );
    }
    let misses = d(now.deadline_misses, before.deadline_misses);
    if misses > 0 {
        flag(Level::Warn, format!("{misses} deadline misses"), &mut level);
    }
    let dropped = d(now.dropped(), before.dropped());
    if dropped > 0 {
        flag(Level::Warn, format!("{dropped} frames dropped"), &mut level);
    }
    let bad = d(now.bad_input, before.bad_input);
    if bad > 0 {
        flag(Level::Warn, format!("{bad} bad input frames"), &mut level);
    }
    let clock = d(now.clock_anomalies, before.clock_anomalies);
    if clock > 0 {
        flag(
            Level::Warn,
            format!("{clock} frames stamped in the future (clock anomaly)"),
            &mut level,
        );
    }
    let input = &c.stats.input;
    for condition in input.active() {
        let l = if condition.is_error() {
            Level::Error
        } else {
            Level::Warn
        };
        flag(l, input.reason(condition), &mut level);
    }
    for why in c.stats.drift.reasons() {
        flag(Level::Warn, why, &mut level);
    }
    if c.qos_incompatible > 0 {
        flag(
            Level::Warn,
            format!(
                "{} publishers with incompatible QoS or type",
                c.qos_incompatible
            ),
            &mut level,
        );
    }
    // Worst reasons first.
    let message = if reasons.is_empty() {
        "OK".to_string()
    } else {
        reasons.join("; ")
    };

    let mut values: Vec<(String, String)> = vec![
        ("input_rate_hz".into(), format!("{input_rate:.2}")),
        ("output_rate_hz".into(), format!("{output_rate:.2}")),
        ("frames_received".into(), now.received.to_string()),
        ("frames_processed".into(), now.processed.to_string()),
        ("frames_published".into(), now.published.to_string()),
        (
            "dropped_ring_full".into(),
            now.dropped_ring_full.to_string(),
        ),
        (
            "dropped_superseded".into(),
            now.dropped_superseded.to_string(),
        ),
        ("dropped_too_old".into(), now.dropped_too_old.to_string()),
        ("dropped_late".into(), now.dropped_late.to_string()),
        ("dropped_output".into(), now.dropped_output.to_string()),
        ("deadline_misses".into(), now.deadline_misses.to_string()),
        ("timeouts".into(), now.timeouts.to_string()),
        ("bad_inputs".into(), now.bad_input.to_string()),
        ("inference_errors".into(), now.inference_errors.to_string()),
        ("clock_anomalies".into(), now.clock_anomalies.to_string()),
        (
            "qos_incompatible_publishers".into(),
            c.qos_incompatible.to_string(),
        ),
        ("budget_ms".into(), fmt_ms(c.budget_ms)),
        (
            "seconds_since_last_frame".into(),
            format!("{:.2}", silent_for.as_secs_f64()),
        ),
    ];
    if input.last.points > 0 {
        let s = &input.last;
        values.push(("input_brightness".into(), format!("{:.1}", s.brightness)));
        values.push(("input_contrast".into(), format!("{:.1}", s.contrast)));
        values.push(("input_sharpness".into(), format!("{:.3}", s.sharpness)));
        values.push((
            "input_dark_fraction".into(),
            format!("{:.3}", s.dark_fraction),
        ));
        values.push((
            "input_saturated_fraction".into(),
            format!("{:.3}", s.saturated_fraction),
        ));
        values.push((
            "input_same_picture_frames".into(),
            input.same_picture_frames.to_string(),
        ));
        let active: Vec<&str> = input.active().map(|c| c.name()).collect();
        values.push((
            "input_health".into(),
            if active.is_empty() {
                "ok".into()
            } else {
                active.join(",")
            },
        ));
    }
    let drift = &c.stats.drift;
    if drift.frames > 0 {
        values.push(("drift_window_frames".into(), drift.frames.to_string()));
        values.push((
            "drift_detections_per_frame".into(),
            format!("{:.2}", drift.rate),
        ));
        values.push((
            "drift_profile_detections_per_frame".into(),
            format!("{:.2}", drift.profile_rate),
        ));
        values.push(("drift_class_psi".into(), format!("{:.3}", drift.class_psi)));
        values.push(("drift_score_psi".into(), format!("{:.3}", drift.score_psi)));
    }
    push_percentiles(&mut values, "e2e", &c.stats.e2e, true);
    values.push((
        "e2e_ms_p99_since_start".into(),
        fmt_ms(c.stats.e2e_total.p99),
    ));
    values.push((
        "e2e_ms_max_since_start".into(),
        fmt_ms(c.stats.e2e_total.max),
    ));
    push_percentiles(&mut values, "queue", &c.stats.queue, false);
    push_percentiles(&mut values, "preprocess", &c.stats.preprocess, false);
    push_percentiles(&mut values, "inference", &c.stats.inference, false);
    push_percentiles(&mut values, "postprocess", &c.stats.postprocess, false);
    push_percentiles(&mut values, "age", &c.stats.age, false);
    Status {
        name: format!("lookout: camera {}", c.name),
        level,
        message,
        values,
    }
}

/// What the engine rule looks at.
#[derive(Debug, Clone, Copy)]
pub struct EngineInput<'a> {
    /// Provider in use.
    pub execution_provider: &'a str,
    /// Why the first listed provider is not in use; empty when it is.
    pub fallback_reason: &'a str,
    /// Where the input and output tensors live (`cuda_pinned`, `cpu`).
    pub io_memory: &'a str,
    /// Most frames one inference run takes.
    pub max_batch: usize,
    /// Model name.
    pub model: &'a str,
    /// ONNX sha256.
    pub sha256: &'a str,
    /// ONNX Runtime library loaded.
    pub ort_library: &'a str,
    /// Timeouts over all cameras, now and one period ago.
    pub timeouts: (u64, u64),
    /// Inference failures over all cameras, now and one period ago.
    pub errors: (u64, u64),
    /// ONNX Runtime sessions rebuilt after failed runs, now and one period ago.
    pub session_rebuilds: (u64, u64),
    /// Session rebuilds that failed, now and one period ago.
    pub rebuild_failures: (u64, u64),
    /// Inference time (window), the worst camera's.
    pub inference: Percentiles,
    /// The process's resident memory now, MB (0 where the OS does not say).
    pub rss_mb: f64,
}

/// The process's resident set size now, MB: `/proc/self/statm` on Linux, else 0. Allocates (a
/// small read); called once per diagnostics period.
pub fn resident_mb() -> f64 {
    let Ok(statm) = std::fs::read_to_string("/proc/self/statm") else {
        return 0.0;
    };
    let pages: f64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(0) as f64;
    (pages * page / 1048576.0 * 10.0).round() / 10.0
}

/// The status of the inference engine: ERROR when a run timed out or failed in the last period,
/// WARN while it runs on a fall-back execution provider.
pub fn engine_status(e: &EngineInput<'_>) -> Status {
    let timeouts = e.timeouts.0.saturating_sub(e.timeouts.1);
    let errors = e.errors.0.saturating_sub(e.errors.1);
    let mut reasons = Vec::new();
    if timeouts > 0 {
        reasons.push(format!(
            "{timeouts} runs terminated after their hard timeout"
        ));
    }
    if errors > 0 {
        reasons.push(format!("{errors} runs failed"));
    }
    let rebuild_failures = e.rebuild_failures.0.saturating_sub(e.rebuild_failures.1);
    if rebuild_failures > 0 {
        reasons.push(format!(
            "rebuilding the ONNX Runtime session failed {rebuild_failures} times"
        ));
    }
    let mut level = if reasons.is_empty() {
        Level::Ok
    } else {
        Level::Error
    };
    let rebuilds = e.session_rebuilds.0.saturating_sub(e.session_rebuilds.1);
    if rebuilds > 0 {
        reasons.push(format!(
            "ONNX Runtime session rebuilt {rebuilds} times after runs failed in a row"
        ));
        level = level.max(Level::Warn);
    }
    if !e.fallback_reason.is_empty() {
        reasons.push(format!(
            "running on the fall-back execution provider {}",
            e.execution_provider
        ));
        level = level.max(Level::Warn);
    }
    let mut values = vec![
        (
            "execution_provider".to_string(),
            e.execution_provider.to_string(),
        ),
        ("fallback_reason".to_string(), e.fallback_reason.to_string()),
        ("io_memory".to_string(), e.io_memory.to_string()),
        ("max_batch".to_string(), e.max_batch.to_string()),
        ("model".to_string(), e.model.to_string()),
        ("model_sha256".to_string(), e.sha256.to_string()),
        ("ort_library".to_string(), e.ort_library.to_string()),
        ("timeouts".to_string(), e.timeouts.0.to_string()),
        ("inference_errors".to_string(), e.errors.0.to_string()),
        (
            "session_rebuilds".to_string(),
            e.session_rebuilds.0.to_string(),
        ),
        (
            "session_rebuild_failures".to_string(),
            e.rebuild_failures.0.to_string(),
        ),
        ("rss_mb".to_string(), format!("{:.1}", e.rss_mb)),
    ];
    push_percentiles(&mut values, "inference", &e.inference, false);
    Status {
        name: "lookout: inference engine".to_string(),
        level,
        message: if level == Level::Ok {
            format!("OK ({})", e.execution_provider)
        } else {
            reasons.join("; ")
        },
        values,
    }
}

/// The inference engine as /diagnostics describes it.
#[derive(Debug, Clone)]
pub struct EngineInfo {
    /// Provider in use.
    pub execution_provider: &'static str,
    /// Why the first listed provider is not in use; empty when it is.
    pub fallback_reason: String,
    /// Where the input and output tensors live (`cuda_pinned`, `cpu`).
    pub io_memory: &'static str,
    /// Most frames one inference run takes.
    pub max_batch: usize,
    /// Model name.
    pub model: String,
    /// ONNX sha256.
    pub sha256: String,
    /// ONNX Runtime library loaded.
    pub ort_library: String,
}

/// A front end's view of health, turned into statuses once a period: one per camera, in
/// configuration order, then the engine's.
#[derive(Debug)]
pub struct Health {
    started: Instant,
    last_report: Instant,
    previous: Vec<CounterSnapshot>,
    stats: Vec<StatsSnapshot>,
    names: Vec<String>,
    cameras: Vec<CameraConfig>,
    engine: EngineInfo,
    /// Session rebuilds and failed rebuilds at the last report.
    previous_rebuilds: (u64, u64),
    /// The shadow model's rule (None: no shadow model).
    shadow: Option<ShadowRule>,
    /// Incident capture's counters (None: no capture).
    capture: Option<std::sync::Arc<crate::runtime::capture::writer::CaptureCounters>>,
}

impl Health {
    /// The engine now running (after a hot swap: model, sha256, provider).
    pub fn set_engine(&mut self, engine: EngineInfo) {
        self.engine = engine;
    }

    /// Reports incident captures (written, suppressed, failed) in the engine's status.
    pub fn with_capture(
        mut self,
        counters: std::sync::Arc<crate::runtime::capture::writer::CaptureCounters>,
    ) -> Self {
        self.capture = Some(counters);
        self
    }

    /// Reports the shadow model's agreement per camera, and names it in the engine's status.
    pub fn with_shadow(mut self, rule: ShadowRule) -> Self {
        self.shadow = Some(rule);
        self
    }

    /// Starts at `started` with `cameras` (name, settings, counters now).
    pub fn new(
        started: Instant,
        cameras: Vec<(String, CameraConfig, CounterSnapshot)>,
        engine: EngineInfo,
    ) -> Self {
        let mut h = Self {
            started,
            last_report: started,
            previous: Vec::with_capacity(cameras.len()),
            stats: vec![StatsSnapshot::default(); cameras.len()],
            names: Vec::with_capacity(cameras.len()),
            cameras: Vec::with_capacity(cameras.len()),
            engine,
            previous_rebuilds: (0, 0),
            shadow: None,
            capture: None,
        };
        for (name, config, counters) in cameras {
            h.names.push(name);
            h.cameras.push(config);
            h.previous.push(counters);
        }
        h
    }

    /// The latest latency statistics of `camera`.
    pub fn set_stats(&mut self, camera: usize, stats: StatsSnapshot) {
        if let Some(s) = self.stats.get_mut(camera) {
            *s = stats;
        }
    }

    /// The statuses at `now`, from each camera's counters (in configuration order); the period
    /// is the time since the last report.
    pub fn report(
        &mut self,
        now: Instant,
        counters: &[&CameraCounters],
        engine: &EngineCounters,
    ) -> Vec<Status> {
        let period = now.saturating_duration_since(self.last_report);
        self.last_report = now;
        let mut statuses = Vec::with_capacity(counters.len() + 1);
        let (mut timeouts, mut errors) = ((0, 0), (0, 0));
        let mut inference = Percentiles::default();
        let cameras = self.names.iter().zip(&self.cameras).zip(counters);
        for (i, ((name, cam), c)) in cameras.enumerate() {
            let snapshot = c.snapshot();
            let last = c.last_received_ns.load(Ordering::Relaxed);
            let mut status = camera_status(&CameraInput {
                name,
                now,
                started: self.started,
                counters: snapshot,
                previous: self.previous[i],
                period,
                last_received: (last > 0).then(|| process_epoch() + Duration::from_nanos(last)),
                stats: self.stats[i],
                qos_incompatible: c.qos_incompatible.load(Ordering::Relaxed),
                budget_ms: cam.budget_ms,
                input_timeout: Duration::from_secs_f64(cam.input_timeout_ms / 1000.0),
                min_output_rate_hz: cam.min_output_rate_hz,
            });
            if let Some(rule) = &self.shadow {
                rule.annotate_camera(&mut status, &snapshot);
            }
            if self.capture.is_some() {
                status
                    .values
                    .push(("capture_missed".into(), snapshot.capture_missed.to_string()));
            }
            statuses.push(status);
            timeouts.0 += snapshot.timeouts;
            timeouts.1 += self.previous[i].timeouts;
            errors.0 += snapshot.inference_errors;
            errors.1 += self.previous[i].inference_errors;
            if self.stats[i].inference.p99 >= inference.p99 {
                inference = self.stats[i].inference;
            }
            self.previous[i] = snapshot;
        }
        let rebuilds = engine.session_rebuilds.load(Ordering::Relaxed);
        let rebuild_failures = engine.rebuild_failures.load(Ordering::Relaxed);
        let mut status = engine_status(&EngineInput {
            execution_provider: self.engine.execution_provider,
            fallback_reason: &self.engine.fallback_reason,
            io_memory: self.engine.io_memory,
            max_batch: self.engine.max_batch,
            rss_mb: resident_mb(),
            model: &self.engine.model,
            sha256: &self.engine.sha256,
            ort_library: &self.engine.ort_library,
            timeouts,
            errors,
            session_rebuilds: (rebuilds, self.previous_rebuilds.0),
            rebuild_failures: (rebuild_failures, self.previous_rebuilds.1),
            inference,
        });
        if let Some(rule) = &self.shadow {
            rule.annotate_engine(&mut status);
        }
        if let Some(c) = &self.capture {
            let g = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed).to_string();
            status
                .values
                .push(("captures_written".into(), g(&c.written)));
            status
                .values
                .push(("captures_suppressed".into(), g(&c.suppressed)));
            status.values.push(("captures_failed".into(), g(&c.failed)));
        }
        statuses.push(status);
        self.previous_rebuilds = (rebuilds, rebuild_failures);
        statuses
    }
}

#[cfg(test)]
mod tests;

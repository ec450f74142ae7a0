//! What a replay reports (`report.json`, and `lookout replay --json`): per-stage latency
//! percentiles, per-camera counts, throughput, provenance and peak memory. The field names are an
//! interface (scripts/bench_vs_python.sh and CI read them).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::runtime::counters::CounterSnapshot;
use crate::runtime::deadline::{LatencyStats, Percentiles, SparseHistogram, StatsSnapshot};
use crate::runtime::health::EngineInfo;
use crate::runtime::inference::Output;

/// Percentiles of one stage, ms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct PercentilesMs {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
}

impl From<Percentiles> for PercentilesMs {
    fn from(p: Percentiles) -> Self {
        let r = |v: f64| (v * 1000.0).round() / 1000.0;
        Self {
            p50: r(p.p50),
            p90: r(p.p90),
            p99: r(p.p99),
            p999: r(p.p999),
            max: r(p.max),
        }
    }
}

/// Latency of each stage, ms: `e2e` from the frame being handed to its ring (the message read
/// from the bag and deserialized; a compressed frame is then copied into its slot, a raw frame's
/// buffer is handed over whole) to its result being judged for writing; the stages as in the
/// live node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatencyMs {
    /// Handed to the ring to result written.
    pub e2e: PercentilesMs,
    /// Decode (compressed) and letterbox/normalise.
    pub preprocess: PercentilesMs,
    /// ONNX Runtime run.
    pub inference: PercentilesMs,
    /// Decode of the output tensor and NMS.
    pub postprocess: PercentilesMs,
}

/// The stage times of one frame, ms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct StageMs {
    /// Handed to the ring to result written.
    pub e2e: f64,
    /// Decode and pre-processing.
    pub preprocess: f64,
    /// ONNX Runtime run.
    pub inference: f64,
    /// Post-processing.
    pub postprocess: f64,
}

/// Counts and latencies of one camera, or of all of them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Counts {
    /// Image messages read from the bags on the camera topics.
    pub frames_in: u64,
    /// Frames that went through inference.
    pub frames_processed: u64,
    /// Frames with no detections message written for a reason other than bad input: queue
    /// full or superseded, too old, late (`late_results: drop`), hard timeout, inference error.
    pub dropped: u64,
    /// Results later than `budget_ms` after being handed to the ring.
    pub deadline_misses: u64,
    /// Messages that do not deserialize or hold an unusable image.
    pub bad_inputs: u64,
    /// Of `dropped`: runs terminated after `hard_timeout_ms`.
    pub timeouts: u64,
    /// Of `dropped`: inference runs that failed.
    pub inference_errors: u64,
    /// Detections messages written.
    pub messages_written: u64,
    /// Execution provider in use.
    pub execution_provider: String,
    /// sha256 of the ONNX file.
    pub model_sha256: String,
    /// Stage latencies.
    pub latency_ms: LatencyMs,
    /// Frames whose picture had each input-health condition (`dark`, `frozen`, `overexposed`,
    /// `low_contrast`, `blurred`), counted frame by frame whether or not reported yet.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub input_health_frames: BTreeMap<String, u64>,
    /// The detections of the last `monitor.drift.window_frames` frames against the profile
    /// (`monitor.profile`; absent without one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift: Option<DriftReport>,
    /// The shadow model against this one (`shadow.model`; absent without one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowReport>,
}

/// A camera's shadow-model agreement over the whole run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ShadowReport {
    /// Frames both models saw.
    pub frames: u64,
    /// Frames the shadow had no time for.
    pub skipped: u64,
    /// Frames on which they disagreed (a detection of either without a partner).
    pub disagreeing_frames: u64,
    /// Detections both made (same class, IoU at least `shadow.match_iou`).
    pub matched: u64,
    /// Detections of the primary only.
    pub primary_only: u64,
    /// Detections of the shadow only.
    pub shadow_only: u64,
    /// Frames the shadow failed on.
    pub errors: u64,
    /// Shadow results lost because the sink held every buffer.
    pub dropped_output: u64,
}

impl ShadowReport {
    /// From a camera's counters.
    pub fn from_counters(s: &CounterSnapshot) -> Self {
        Self {
            frames: s.shadow_frames,
            skipped: s.shadow_skipped,
            disagreeing_frames: s.shadow_disagreeing,
            matched: s.shadow_matched,
            primary_only: s.shadow_primary_only,
            shadow_only: s.shadow_only,
            errors: s.shadow_errors,
            dropped_output: s.shadow_dropped_output,
        }
    }
}

/// A camera's drift at the end of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DriftReport {
    /// Frames in the window.
    pub window_frames: u64,
    /// Detections per frame in the window.
    pub detections_per_frame: f64,
    /// Detections per frame in the profile.
    pub profile_detections_per_frame: f64,
    /// Population stability index of the class mix.
    pub class_psi: f64,
    /// Population stability index of the scores.
    pub score_psi: f64,
    /// Why the camera is WARN (empty: no drift).
    pub reasons: Vec<String>,
}

/// The replay report (JSON). Its keys are an interface: scripts and CI read them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    /// Image messages read on the camera topics, all cameras.
    pub frames_in: u64,
    /// Frames inferred, all cameras.
    pub frames_processed: u64,
    /// Frames dropped (see [`Counts::dropped`]), all cameras.
    pub dropped: u64,
    /// Deadline misses, all cameras.
    pub deadline_misses: u64,
    /// Bad inputs, all cameras.
    pub bad_inputs: u64,
    /// Execution provider in use.
    pub execution_provider: String,
    /// Why the first listed provider is not in use (each provider tried with its error); empty
    /// when it is.
    pub fallback_reason: String,
    /// Where the input and output tensors lived: `cuda_pinned` or `cpu`.
    pub io_memory: String,
    /// Most frames one inference run took (one per camera at most).
    #[serde(default)]
    pub max_batch: usize,
    /// Inference runs (fewer than frames processed when runs were batched).
    #[serde(default)]
    pub inference_runs: u64,
    /// sha256 of the ONNX file.
    pub model_sha256: String,
    /// ONNX Runtime sessions rebuilt after `engine.rebuild_after_failures` runs in a row failed.
    pub session_rebuilds: u64,
    /// Incident bags written into `capture.dir` (absent without capture).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incident_captures: Option<u64>,
    /// The shadow model's name (`shadow.model`; absent without one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow_model: Option<String>,
    /// The shadow model's ONNX sha256.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow_model_sha256: Option<String>,
    /// Per camera, by name: the same keys.
    pub per_camera: BTreeMap<String, Counts>,
    /// Stage latencies over all cameras.
    pub latency_ms: LatencyMs,
    /// `max_speed`, `rate` or `step`.
    pub mode: String,
    /// The `--rate` factor (1.0 for the other modes).
    pub rate: f64,
    /// Stopped by Ctrl-C / SIGTERM before the end of the bags.
    pub interrupted: bool,
    /// Storage damage met while reading (each damaged file was read up to it; its frames after
    /// it are lost). Not empty: `lookout replay` exits with status 1 after writing the output.
    pub storage_errors: Vec<String>,
    /// Wall time of the replay, s.
    pub wall_s: f64,
    /// Frames processed per wall second.
    pub frames_per_s: f64,
    /// 1000 / mean inference ms: the rate of inference alone.
    pub inference_only_frames_per_s: f64,
    /// Version of the lookout that replayed.
    pub lookout_version: String,
    /// Model name (manifest).
    pub model: String,
    /// Input bags.
    pub input_bags: Vec<String>,
    /// Output bag folder.
    pub output_bag: String,
    /// Messages written to the output bag, all topics.
    pub messages_written: u64,
    /// The first frame's stage times (warm-up makes it no slower than the p99 of the others).
    pub first_frame_ms: StageMs,
    /// Peak resident memory of the process, MB (getrusage).
    pub peak_rss_mb: f64,
    /// The run's detections as a drift profile (every camera; written by `--profile`).
    #[serde(skip)]
    pub profile: Option<crate::runtime::drift::Profile>,
    /// Detections written, per class name, all cameras.
    pub detections_by_class: BTreeMap<String, u64>,
    /// Every non-empty latency bucket per stage (`e2e`, `preprocess`, `inference`,
    /// `postprocess`), all cameras: the exact histograms, so that the reports of many replays
    /// merge into exact percentiles (see [`SparseHistogram`]).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub latency_histograms_us: BTreeMap<String, SparseHistogram>,
    /// Latency counts per stage: `(low ms, high ms, count)` per log-spaced bin.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub histograms_ms: BTreeMap<String, crate::charts::Bins>,
    /// Results, latency, drops and deadline misses over (wall) time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeline: Option<crate::charts::Timeline>,
}

/// Per-stage latency statistics over all cameras since the start, and the first frame's
/// stage times, for a report. Allocates its histograms in [`Totals::new`]; recording allocates
/// nothing.
pub struct Totals {
    first: Option<StageMs>,
    e2e: LatencyStats,
    preprocess: LatencyStats,
    inference: LatencyStats,
    postprocess: LatencyStats,
}

impl Totals {
    /// Empty statistics.
    pub fn new() -> Result<Self, hdrhistogram::CreationError> {
        let w = std::time::Duration::from_secs(3600);
        Ok(Self {
            first: None,
            e2e: LatencyStats::new(w)?,
            preprocess: LatencyStats::new(w)?,
            inference: LatencyStats::new(w)?,
            postprocess: LatencyStats::new(w)?,
        })
    }

    /// Records one result taken at `now`, `e2e` after its frame was received.
    pub fn record(&mut self, out: &Output, e2e: std::time::Duration, now: std::time::Instant) {
        let ms = |d: std::time::Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
        self.first.get_or_insert(StageMs {
            e2e: ms(e2e),
            preprocess: ms(out.times.preprocess),
            inference: ms(out.times.inference),
            postprocess: ms(out.times.postprocess),
        });
        self.e2e.record(now, e2e);
        self.preprocess.record(now, out.times.preprocess);
        self.inference.record(now, out.times.inference);
        self.postprocess.record(now, out.times.postprocess);
    }

    /// Percentiles since the start, per stage.
    pub fn latency(&self) -> LatencyMs {
        LatencyMs {
            e2e: self.e2e.total().into(),
            preprocess: self.preprocess.total().into(),
            inference: self.inference.total().into(),
            postprocess: self.postprocess.total().into(),
        }
    }

    /// The first result's stage times (zero before any).
    pub fn first(&self) -> StageMs {
        self.first.unwrap_or_default()
    }

    /// The exact histogram of each stage (empty before any result).
    pub fn sparse(&self) -> BTreeMap<String, SparseHistogram> {
        if self.e2e.total().count == 0 {
            return BTreeMap::new();
        }
        self.stages()
            .into_iter()
            .map(|(name, s)| (name.to_string(), s.total_sparse()))
            .collect()
    }

    fn stages(&self) -> [(&'static str, &LatencyStats); 4] {
        [
            ("preprocess", &self.preprocess),
            ("inference", &self.inference),
            ("postprocess", &self.postprocess),
            ("e2e", &self.e2e),
        ]
    }

    /// Latency counts per stage in 40 log-spaced bins each (empty before any result).
    pub fn bins(&self) -> BTreeMap<String, crate::charts::Bins> {
        if self.e2e.total().count == 0 {
            return BTreeMap::new();
        }
        self.stages()
            .into_iter()
            .map(|(name, s)| (name.to_string(), s.total_bins(40)))
            .collect()
    }
}

impl Counts {
    /// One camera's counts at the end of a run: its counters, its latency statistics since the
    /// start, the image messages it was given and the detections messages written.
    pub fn from_run(
        frames_in: u64,
        s: &CounterSnapshot,
        stats: &StatsSnapshot,
        written: u64,
        engine: &EngineInfo,
        model_sha256: &str,
    ) -> Self {
        Self {
            frames_in,
            frames_processed: s.processed,
            // Every frame that yields no detections message, bad input aside.
            dropped: s.dropped() + s.timeouts + s.inference_errors,
            deadline_misses: s.deadline_misses,
            bad_inputs: s.bad_input,
            timeouts: s.timeouts,
            inference_errors: s.inference_errors,
            messages_written: written,
            execution_provider: engine.execution_provider.to_string(),
            model_sha256: model_sha256.to_string(),
            latency_ms: LatencyMs {
                e2e: stats.e2e_total.into(),
                preprocess: stats.preprocess_total.into(),
                inference: stats.inference_total.into(),
                postprocess: stats.postprocess_total.into(),
            },
            drift: (stats.drift.frames > 0).then(|| {
                let d = &stats.drift;
                let r3 = |v: f64| (v * 1000.0).round() / 1000.0;
                DriftReport {
                    window_frames: d.frames,
                    detections_per_frame: r3(d.rate),
                    profile_detections_per_frame: r3(d.profile_rate),
                    class_psi: r3(d.class_psi),
                    score_psi: r3(d.score_psi),
                    reasons: d.reasons().collect(),
                }
            }),
            input_health_frames: crate::runtime::input_health::Condition::ALL
                .iter()
                .zip(stats.input.frames_with)
                .filter(|(_, n)| *n > 0)
                .map(|(c, n)| (c.name().to_string(), n))
                .collect(),
            shadow: None,
        }
    }
}

impl Report {
    /// The per-stage percentiles as a table (report pages).
    pub fn latency_table(&self) -> crate::charts::html::Table {
        let l = &self.latency_ms;
        crate::charts::html::Table {
            caption: "Latency, ms".into(),
            header: ["stage", "p50", "p90", "p99", "p99.9", "max"]
                .map(String::from)
                .to_vec(),
            rows: [
                ("pre-processing", l.preprocess),
                ("inference", l.inference),
                ("post-processing", l.postprocess),
                ("end to end", l.e2e),
            ]
            .into_iter()
            .map(|(n, p)| {
                let mut row = vec![n.to_string()];
                row.extend([p.p50, p.p90, p.p99, p.p999, p.max].map(|v| format!("{v:.2}")));
                row
            })
            .collect(),
        }
    }

    /// The report as one self-contained HTML page (`lookout replay --html`): summary, latency
    /// and per-camera tables, latency histograms per stage, and the timeline.
    pub fn html(&self) -> String {
        use crate::charts::html::{Page, Table, page};
        let summary = Table {
            caption: "Summary".into(),
            header: vec![],
            rows: [
                ("input bags", self.input_bags.join(", ")),
                ("output bag", self.output_bag.clone()),
                ("mode", format!("{} (rate {})", self.mode, self.rate)),
                (
                    "model",
                    format!("{} ({})", self.model, self.execution_provider),
                ),
                (
                    "frames in / processed",
                    format!("{} / {}", self.frames_in, self.frames_processed),
                ),
                (
                    "dropped, bad, deadline misses",
                    format!(
                        "{}, {}, {}",
                        self.dropped, self.bad_inputs, self.deadline_misses
                    ),
                ),
                (
                    "speed",
                    format!(
                        "{:.2} frames/s over {:.1} s (inference alone {:.2})",
                        self.frames_per_s, self.wall_s, self.inference_only_frames_per_s
                    ),
                ),
                ("peak memory", format!("{:.1} MB", self.peak_rss_mb)),
                ("storage errors", self.storage_errors.join("; ")),
                ("interrupted", self.interrupted.to_string()),
            ]
            .into_iter()
            .map(|(k, v)| vec![k.to_string(), v])
            .collect(),
        };
        let mut cams = Table {
            caption: "Per camera".into(),
            header: [
                "camera",
                "frames in",
                "processed",
                "dropped",
                "bad",
                "late",
                "timeouts",
                "e2e p50",
                "e2e p99",
            ]
            .map(String::from)
            .to_vec(),
            rows: vec![],
        };
        for (name, c) in &self.per_camera {
            cams.rows.push(vec![
                name.clone(),
                c.frames_in.to_string(),
                c.frames_processed.to_string(),
                c.dropped.to_string(),
                c.bad_inputs.to_string(),
                c.deadline_misses.to_string(),
                c.timeouts.to_string(),
                format!("{:.2}", c.latency_ms.e2e.p50),
                format!("{:.2}", c.latency_ms.e2e.p99),
            ]);
        }
        page(&Page {
            title: format!("lookout replay: {}", self.input_bags.join(", ")),
            tables: vec![summary, self.latency_table(), cams],
            histograms: Some(&self.histograms_ms),
            timeline: self.timeline.as_ref(),
            extra_charts: Vec::new(),
        })
    }

    /// Adds one camera's counts to the totals and the per-camera map.
    pub fn add_camera(&mut self, name: &str, counts: Counts) {
        self.frames_in += counts.frames_in;
        self.frames_processed += counts.frames_processed;
        self.dropped += counts.dropped;
        self.deadline_misses += counts.deadline_misses;
        self.bad_inputs += counts.bad_inputs;
        self.per_camera.insert(name.to_string(), counts);
    }
}

/// Peak resident set size of this process, MB (0 if the OS does not say).
pub fn peak_rss_mb() -> f64 {
    // SAFETY: getrusage writes one `rusage` into the zeroed struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid out-pointer.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0.0;
    }
    (usage.ru_maxrss as f64 / 1024.0 * 10.0).round() / 10.0
}

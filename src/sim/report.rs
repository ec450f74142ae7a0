//! What `lookout sim` reports: the replay report's keys (counts, per-stage percentiles, per
//! camera), plus what only a simulation knows: the offered and achieved rates, drops by
//! reason, CPU use, memory, and the sweep.

use std::collections::BTreeMap;

use serde::Serialize;

use super::sweep::Sweep;
use crate::replay::Report;
use crate::runtime::counters::CounterSnapshot;

/// Frames dropped, by reason (bad input is counted apart, in `bad_inputs`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Drops {
    /// No free slot (FIFO queue full).
    pub ring_full: u64,
    /// Replaced by a newer frame (keep-newest queue).
    pub superseded: u64,
    /// Older than `max_age_ms` when taken.
    pub too_old: u64,
    /// Later than the budget, not published (`late_results: drop`).
    pub late: u64,
    /// Run terminated after `hard_timeout_ms`.
    pub timeouts: u64,
    /// Inference failed.
    pub inference_errors: u64,
    /// The result sink was full.
    pub output: u64,
}

impl From<&CounterSnapshot> for Drops {
    fn from(s: &CounterSnapshot) -> Self {
        Self {
            ring_full: s.dropped_ring_full,
            superseded: s.dropped_superseded,
            too_old: s.dropped_too_old,
            late: s.dropped_late,
            timeouts: s.timeouts,
            inference_errors: s.inference_errors,
            output: s.dropped_output,
        }
    }
}

/// What `--via-ros` measured beyond the in-process keys: end to end is publish (by the
/// simulated driver, over DDS) to receive (by the monitor, over DDS); the stage times are the
/// node's own means (its summary).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ViaRos {
    /// Frames published per camera.
    pub published: BTreeMap<String, u64>,
    /// Detections messages received back per camera.
    pub received: BTreeMap<String, u64>,
    /// Per camera: mean pre-processing, inference and post-processing in the node, ms.
    pub node_stage_means_ms: BTreeMap<String, BTreeMap<String, f64>>,
}

/// One simulation run (or, with a sweep, the run at the peak rate) and the sweep.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SimReport {
    /// The replay report's keys; `mode` is `sim`, `rate` the offered frames per second per
    /// camera.
    #[serde(flatten)]
    pub run: Report,
    /// The source, as given.
    pub source: String,
    /// Cameras simulated.
    pub cameras: usize,
    /// Frames offered per second, per camera.
    pub offered_fps: f64,
    /// Frames processed per second, per camera, by name.
    pub achieved_fps: BTreeMap<String, f64>,
    /// Standard deviation of the emission times, ms.
    pub jitter_ms: f64,
    /// Frames per burst (1: evenly spaced).
    pub burst: u32,
    /// Length of the run, s.
    pub duration_s: f64,
    /// Drops by reason, per camera.
    pub drops: BTreeMap<String, Drops>,
    /// CPU time of the process over the run, % of one core.
    pub cpu_percent: f64,
    /// Resident memory at the end of the run, MB.
    pub rss_mb: f64,
    /// The peak-rate search, with `--sweep`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sweep: Option<Sweep>,
    /// With `--via-ros`: the run went through a ROS 2 graph (end to end includes DDS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via_ros: Option<ViaRos>,
}

impl SimReport {
    /// The report as one self-contained HTML page: summary and per-camera tables, latency
    /// histograms per stage, the timeline, and the sweep curve.
    pub fn html(&self) -> String {
        use crate::charts::html::{Page, Table, page};
        use crate::charts::svg::{Series, chart};
        let r = &self.run;
        let mut tables = vec![Table {
            caption: "Summary".into(),
            header: vec![],
            rows: [
                ("source", self.source.clone()),
                ("cameras", self.cameras.to_string()),
                ("offered, per camera", format!("{} fps", self.offered_fps)),
                (
                    "jitter, burst",
                    format!("{} ms, {}", self.jitter_ms, self.burst),
                ),
                ("duration", format!("{:.1} s", self.duration_s)),
                ("model", format!("{} ({})", r.model, r.execution_provider)),
                (
                    "frames offered / processed",
                    format!("{} / {}", r.frames_in, r.frames_processed),
                ),
                (
                    "dropped, bad, deadline misses",
                    format!("{}, {}, {}", r.dropped, r.bad_inputs, r.deadline_misses),
                ),
                ("CPU", format!("{:.0} % of one core", self.cpu_percent)),
                (
                    "memory",
                    format!("RSS {:.1} MB, peak {:.1} MB", self.rss_mb, r.peak_rss_mb),
                ),
            ]
            .into_iter()
            .map(|(k, v)| vec![k.to_string(), v])
            .collect(),
        }];
        tables.push(r.latency_table());
        let mut cams = Table {
            caption: "Per camera".into(),
            header: [
                "camera",
                "offered",
                "processed",
                "fps out",
                "e2e p50",
                "e2e p99",
                "ring full",
                "superseded",
                "too old",
                "late",
                "timeouts",
                "errors",
            ]
            .map(String::from)
            .to_vec(),
            rows: vec![],
        };
        for (name, c) in &r.per_camera {
            let d = self.drops.get(name).copied().unwrap_or_default();
            let fps = self.achieved_fps.get(name).copied().unwrap_or_default();
            cams.rows.push(vec![
                name.clone(),
                c.frames_in.to_string(),
                c.frames_processed.to_string(),
                format!("{fps:.2}"),
                format!("{:.2}", c.latency_ms.e2e.p50),
                format!("{:.2}", c.latency_ms.e2e.p99),
                d.ring_full.to_string(),
                d.superseded.to_string(),
                d.too_old.to_string(),
                d.late.to_string(),
                d.timeouts.to_string(),
                d.inference_errors.to_string(),
            ]);
        }
        tables.push(cams);
        let mut extra = Vec::new();
        if let Some(s) = &self.sweep {
            let pts = |f: &dyn Fn(&super::sweep::Point) -> f64| -> Vec<(f64, f64)> {
                s.points.iter().map(|p| (p.offered_fps, f(p))).collect()
            };
            extra.push(chart(
                &format!("Sweep: peak {:.2} fps per camera", s.peak_fps),
                "offered fps per camera",
                "fps per camera",
                &[
                    Series::line("achieved", "#2ca02c", pts(&|p| p.achieved_fps)),
                    Series::line("offered", "#999999", pts(&|p| p.offered_fps)),
                ],
                false,
            ));
            extra.push(chart(
                "Sweep: latency and drops",
                "offered fps per camera",
                "ms / %",
                &[
                    Series::line("e2e p50 ms", "#1f77b4", pts(&|p| p.e2e_p50_ms)),
                    Series::line("e2e p99 ms", "#d62728", pts(&|p| p.e2e_p99_ms)),
                    Series::line("dropped %", "#ff7f0e", pts(&|p| p.dropped_percent)),
                ],
                false,
            ));
        }
        page(&Page {
            title: format!("lookout sim: {}", self.source),
            tables,
            histograms: Some(&r.histograms_ms),
            timeline: r.timeline.as_ref(),
            extra_charts: extra,
        })
    }

    /// A table for a terminal.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let r = &self.run;
        let l = &r.latency_ms;
        t += &format!(
            "lookout sim: {} as {} camera(s) at {} fps each for {:.1} s ({}, {})\n",
            self.source,
            self.cameras,
            self.offered_fps,
            self.duration_s,
            r.model,
            r.execution_provider
        );
        t += &format!(
            "frames: {} offered, {} processed, {} dropped, {} bad, {} deadline misses\n",
            r.frames_in, r.frames_processed, r.dropped, r.bad_inputs, r.deadline_misses
        );
        t += &format!(
            "{:<14}{:>9}{:>9}{:>9}{:>9}{:>9}\n",
            "ms", "p50", "p90", "p99", "p99.9", "max"
        );
        for (name, p) in [
            ("pre-process", l.preprocess),
            ("inference", l.inference),
            ("post-process", l.postprocess),
            ("end to end", l.e2e),
        ] {
            t += &format!(
                "{:<14}{:>9.2}{:>9.2}{:>9.2}{:>9.2}{:>9.2}\n",
                name, p.p50, p.p90, p.p99, p.p999, p.max
            );
        }
        if let Some(v) = &self.via_ros {
            t += "via ROS 2: end to end is publish (driver) to receive (monitor), over DDS\n";
            for (name, means) in &v.node_stage_means_ms {
                let m = |k: &str| means.get(k).copied().unwrap_or(0.0);
                t += &format!(
                    "camera {name}: {} published, {} received; in the node (means): pre-process {:.2} ms, inference {:.2} ms, post-process {:.2} ms\n",
                    v.published.get(name).copied().unwrap_or(0),
                    v.received.get(name).copied().unwrap_or(0),
                    m("preprocess"),
                    m("inference"),
                    m("postprocess")
                );
            }
        }
        for (name, fps) in &self.achieved_fps {
            let d = self.drops.get(name).copied().unwrap_or_default();
            t += &format!(
                "camera {name}: {fps:.2} fps out; dropped: ring full {}, superseded {}, too old {}, late {}, timeouts {}, errors {}\n",
                d.ring_full, d.superseded, d.too_old, d.late, d.timeouts, d.inference_errors
            );
            if let Some(s) = r.per_camera.get(name).and_then(|c| c.shadow.as_ref()) {
                t += &format!(
                    "camera {name} shadow ({}): {} frames compared, {} skipped (no time), {} disagreeing\n",
                    r.shadow_model.as_deref().unwrap_or("?"),
                    s.frames,
                    s.skipped,
                    s.disagreeing_frames
                );
            }
        }
        t += &format!(
            "CPU {:.0} % of one core, RSS {:.1} MB (peak {:.1} MB); inference alone: {:.1} fps\n",
            self.cpu_percent, self.rss_mb, r.peak_rss_mb, r.inference_only_frames_per_s
        );
        if let Some(s) = &self.sweep {
            t += &format!(
                "sweep ({}): peak {:.2} fps per camera{}\n",
                s.criteria,
                s.peak_fps,
                if s.interrupted { " (interrupted)" } else { "" }
            );
            t += &format!(
                "{:>10}{:>10}{:>10}{:>10}{:>10}{:>8}\n",
                "offered", "achieved", "p50 ms", "p99 ms", "drop %", "kept"
            );
            for p in &s.points {
                t += &format!(
                    "{:>10.2}{:>10.2}{:>10.2}{:>10.2}{:>10.2}{:>8}\n",
                    p.offered_fps,
                    p.achieved_fps,
                    p.e2e_p50_ms,
                    p.e2e_p99_ms,
                    p.dropped_percent,
                    if p.sustained { "yes" } else { "no" }
                );
            }
        }
        t
    }
}

//! Output drift: whether a camera's detections still look like those of a reference profile.
//!
//! A profile ([`Profile`], JSON) holds, over a set of bags (`lookout replay --profile FILE`, or the
//! fleet run's bags), the frames seen, the detections per class, and the histograms of scores
//! (ten bins of 0.1) and box sizes (box area over image area, eight bins of a factor of four from
//! 1/16384 up). The live node, replay and sim load it (`monitor.profile`) and keep the same counts
//! per camera over a sliding window of `monitor.drift.window_frames` frames (ten blocks, the oldest
//! replaced as a new one starts: the window holds nine tenths to all of it). Once the window holds `min_frames` frames, a camera is WARN
//! when:
//! - its detections per frame fall below the profile's divided by `rate_factor` (`detections
//!   collapsed: 0.1 per frame, profile 5.3`) or rise above it times `rate_factor`;
//! - the population stability index (PSI, the symmetric Kullback-Leibler sum of the binned
//!   fractions) of its class mix or of its score histogram passes `psi_max` (0.25, the usual
//!   "significant shift" mark).
//!
//! Contract: [`DriftMonitor::new`] allocates its blocks; [`DriftMonitor::update`] and
//! [`DriftMonitor::snapshot`] allocate nothing, never block and cannot fail. Loading a profile
//! ([`Profile::load`]) reads a bounded file and fails with the reason.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::core::postprocess::Detection;

/// Score bins (0.1 wide).
pub const SCORE_BINS: usize = 10;
/// Box size bins: area over image area, `[0, 4^-7), [4^-7, 4^-6), ... [4^-1, 1]`.
pub const SIZE_BINS: usize = 8;
/// Blocks of the sliding window.
const BLOCKS: usize = 10;
/// Largest profile file read.
const MAX_PROFILE_BYTES: u64 = 1 << 20;

/// `monitor.drift.*`: when a camera's detections have drifted from the profile.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriftConfig {
    /// Frames in the sliding window compared with the profile.
    #[serde(default = "default_window_frames")]
    pub window_frames: u32,
    /// Frames the window must hold before anything is judged.
    #[serde(default = "default_min_frames")]
    pub min_frames: u32,
    /// Detections per frame this many times below or above the profile's: WARN.
    #[serde(default = "default_rate_factor")]
    pub rate_factor: f64,
    /// Population stability index of the class mix or the scores above this: WARN.
    #[serde(default = "default_psi_max")]
    pub psi_max: f64,
}

fn default_window_frames() -> u32 {
    300
}
fn default_min_frames() -> u32 {
    100
}
fn default_rate_factor() -> f64 {
    3.0
}
fn default_psi_max() -> f64 {
    0.25
}

impl Default for DriftConfig {
    fn default() -> Self {
        Self {
            window_frames: default_window_frames(),
            min_frames: default_min_frames(),
            rate_factor: default_rate_factor(),
            psi_max: default_psi_max(),
        }
    }
}

impl DriftConfig {
    /// Checks the ranges; on error the key (under `monitor.drift.`) and the reason.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !(BLOCKS as u32..=1_000_000).contains(&self.window_frames) {
            return Err(("window_frames", format!("must be within {BLOCKS}..1000000")));
        }
        if !(1..=self.window_frames).contains(&self.min_frames) {
            return Err(("min_frames", "must be within 1..window_frames".into()));
        }
        if !(self.rate_factor.is_finite() && (1.0..=1000.0).contains(&self.rate_factor)) {
            return Err(("rate_factor", "must be within 1..1000".into()));
        }
        if !(self.psi_max.is_finite() && self.psi_max > 0.0 && self.psi_max <= 100.0) {
            return Err(("psi_max", "must be within 0 (excluded)..100".into()));
        }
        Ok(())
    }
}

/// Counts of frames and detections: a profile's, or a window's.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectionCounts {
    /// Frames.
    pub frames: u64,
    /// Detections.
    pub detections: u64,
    /// Detections per class id.
    pub classes: Vec<u64>,
    /// Detections per score bin.
    pub scores: [u64; SCORE_BINS],
    /// Detections per size bin.
    pub sizes: [u64; SIZE_BINS],
}

impl DetectionCounts {
    /// Zero counts for `classes` classes (allocates).
    pub fn new(classes: usize) -> Self {
        Self {
            frames: 0,
            detections: 0,
            classes: vec![0; classes],
            scores: [0; SCORE_BINS],
            sizes: [0; SIZE_BINS],
        }
    }

    /// Adds one frame of `width` x `height` pixels and its detections.
    pub fn add_frame(&mut self, detections: &[Detection], width: u32, height: u32) {
        self.frames += 1;
        let area = f64::from(width.max(1)) * f64::from(height.max(1));
        for d in detections {
            self.detections += 1;
            if let Some(c) = self.classes.get_mut(d.class_id as usize) {
                *c += 1;
            }
            let s = ((d.score.clamp(0.0, 1.0) * SCORE_BINS as f32) as usize).min(SCORE_BINS - 1);
            self.scores[s] += 1;
            let [x1, y1, x2, y2] = d.bbox;
            let box_area = f64::from((x2 - x1).max(0.0)) * f64::from((y2 - y1).max(0.0));
            let fraction = (box_area / area).clamp(1e-12, 1.0);
            // 4^-(SIZE_BINS - 1 - i) <= fraction: bin i.
            let bin = (SIZE_BINS as f64 - 1.0 + fraction.log(4.0))
                .floor()
                .max(0.0) as usize;
            self.sizes[bin.min(SIZE_BINS - 1)] += 1;
        }
    }

    fn add(&mut self, other: &Self) {
        self.frames += other.frames;
        self.detections += other.detections;
        for (a, b) in self.classes.iter_mut().zip(&other.classes) {
            *a += b;
        }
        for (a, b) in self.scores.iter_mut().zip(&other.scores) {
            *a += b;
        }
        for (a, b) in self.sizes.iter_mut().zip(&other.sizes) {
            *a += b;
        }
    }

    fn clear(&mut self) {
        self.frames = 0;
        self.detections = 0;
        self.classes.fill(0);
        self.scores = [0; SCORE_BINS];
        self.sizes = [0; SIZE_BINS];
    }

    /// Detections per frame (0 without frames).
    pub fn rate(&self) -> f64 {
        if self.frames == 0 {
            0.0
        } else {
            self.detections as f64 / self.frames as f64
        }
    }
}

/// Why a profile cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The file cannot be read or parsed.
    #[error("monitor.profile: cannot read {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// It was made with another model.
    #[error(
        "monitor.profile: {path} was made with model {profile_model} (sha256 {profile_sha256}), this node runs {model} (sha256 {sha256})"
    )]
    OtherModel {
        /// The file.
        path: PathBuf,
        /// The profile's model.
        profile_model: String,
        /// The profile's model sha256.
        profile_sha256: String,
        /// The node's model.
        model: String,
        /// The node's model sha256.
        sha256: String,
    },
}

/// A reference profile of a model's detections (the file `--profile` writes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// The lookout that wrote it.
    pub lookout_version: String,
    /// Model name.
    pub model: String,
    /// The ONNX file's sha256.
    pub model_sha256: String,
    /// Frames counted.
    pub frames: u64,
    /// Detections counted.
    pub detections: u64,
    /// Detections per class name (classes with none left out).
    pub classes: BTreeMap<String, u64>,
    /// Detections per score bin (0.1 wide).
    pub score_bins: [u64; SCORE_BINS],
    /// Detections per box size bin (area over image area, factors of four from 1/16384).
    pub size_bins: [u64; SIZE_BINS],
}

impl Profile {
    /// The profile of `counts` for `model` (`class_names` by class id).
    pub fn from_counts(
        counts: &DetectionCounts,
        model: &str,
        model_sha256: &str,
        class_names: &[String],
    ) -> Self {
        Self {
            lookout_version: env!("CARGO_PKG_VERSION").to_string(),
            model: model.to_string(),
            model_sha256: model_sha256.to_string(),
            frames: counts.frames,
            detections: counts.detections,
            classes: counts
                .classes
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(|(id, n)| {
                    let name = class_names.get(id).map_or("?", String::as_str);
                    (name.to_string(), *n)
                })
                .collect(),
            score_bins: counts.scores,
            size_bins: counts.sizes,
        }
    }

    /// Reads the profile at `path` (at most 1 MB) and checks it was made with the model of
    /// `model_sha256`.
    pub fn load(path: &Path, model: &str, model_sha256: &str) -> Result<Self, ProfileError> {
        let read = |reason: String| ProfileError::Read {
            path: path.to_path_buf(),
            reason,
        };
        let len = std::fs::metadata(path)
            .map_err(|e| read(e.to_string()))?
            .len();
        if len > MAX_PROFILE_BYTES {
            return Err(read(format!("{len} bytes, at most {MAX_PROFILE_BYTES}")));
        }
        let text = std::fs::read_to_string(path).map_err(|e| read(e.to_string()))?;
        let p: Profile = serde_json::from_str(&text).map_err(|e| read(e.to_string()))?;
        if p.model_sha256 != model_sha256 {
            return Err(ProfileError::OtherModel {
                path: path.to_path_buf(),
                profile_model: p.model,
                profile_sha256: p.model_sha256,
                model: model.to_string(),
                sha256: model_sha256.to_string(),
            });
        }
        if p.frames == 0 {
            return Err(read("the profile counts no frame".into()));
        }
        Ok(p)
    }

    /// The profile as counts by class id of `class_names` (unknown names are dropped).
    pub fn counts(&self, class_names: &[String]) -> DetectionCounts {
        let mut c = DetectionCounts::new(class_names.len());
        c.frames = self.frames;
        c.detections = self.detections;
        for (name, n) in &self.classes {
            if let Some(id) = class_names.iter().position(|c| c == name) {
                c.classes[id] = *n;
            }
        }
        c.scores = self.score_bins;
        c.sizes = self.size_bins;
        c
    }
}

/// Population stability index between two histograms (fractions floored at 1e-4).
pub fn psi(reference: &[u64], current: &[u64]) -> f64 {
    let (rt, ct) = (
        reference.iter().sum::<u64>() as f64,
        current.iter().sum::<u64>() as f64,
    );
    if rt == 0.0 || ct == 0.0 {
        return 0.0;
    }
    reference
        .iter()
        .zip(current)
        .map(|(r, c)| {
            let (r, c) = ((*r as f64 / rt).max(1e-4), (*c as f64 / ct).max(1e-4));
            (c - r) * (c / r).ln()
        })
        .sum()
}

/// What drifted.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DriftSnapshot {
    /// Frames in the window (0: no profile).
    pub frames: u64,
    /// Detections per frame in the window.
    pub rate: f64,
    /// Detections per frame in the profile.
    pub profile_rate: f64,
    /// PSI of the class mix.
    pub class_psi: f64,
    /// PSI of the scores.
    pub score_psi: f64,
    /// Detections per frame below the profile's / `rate_factor`.
    pub collapsed: bool,
    /// Detections per frame above the profile's * `rate_factor`.
    pub surged: bool,
    /// Class mix PSI over `psi_max`.
    pub class_drift: bool,
    /// Score PSI over `psi_max`.
    pub score_drift: bool,
}

impl DriftSnapshot {
    /// The reasons to WARN, worst first (none when nothing drifted).
    pub fn reasons(&self) -> impl Iterator<Item = String> + '_ {
        [
            self.collapsed.then(|| {
                format!(
                    "detections collapsed: {:.1} per frame, profile {:.1}",
                    self.rate, self.profile_rate
                )
            }),
            self.surged.then(|| {
                format!(
                    "detections surged: {:.1} per frame, profile {:.1}",
                    self.rate, self.profile_rate
                )
            }),
            self.class_drift.then(|| {
                format!(
                    "class mix drifted from the profile (PSI {:.2})",
                    self.class_psi
                )
            }),
            self.score_drift.then(|| {
                format!(
                    "score distribution drifted from the profile (PSI {:.2})",
                    self.score_psi
                )
            }),
        ]
        .into_iter()
        .flatten()
    }
}

/// One camera's detections against a profile, over a sliding window.
#[derive(Debug, Clone)]
pub struct DriftMonitor {
    config: DriftConfig,
    profile: DetectionCounts,
    blocks: Vec<DetectionCounts>,
    current: usize,
    block_frames: u64,
    /// Scratch for the window's sum.
    window: DetectionCounts,
}

impl DriftMonitor {
    /// A monitor of `profile` (by class id) with `config` (allocates its blocks).
    pub fn new(config: DriftConfig, profile: DetectionCounts) -> Self {
        let classes = profile.classes.len();
        Self {
            config,
            blocks: vec![DetectionCounts::new(classes); BLOCKS],
            current: 0,
            block_frames: u64::from(config.window_frames)
                .div_ceil(BLOCKS as u64)
                .max(1),
            window: DetectionCounts::new(classes),
            profile,
        }
    }

    /// Takes one frame's detections.
    pub fn update(&mut self, detections: &[Detection], width: u32, height: u32) {
        if self.blocks[self.current].frames >= self.block_frames {
            self.current = (self.current + 1) % BLOCKS;
            self.blocks[self.current].clear();
        }
        self.blocks[self.current].add_frame(detections, width, height);
    }

    /// The window against the profile now.
    pub fn snapshot(&mut self) -> DriftSnapshot {
        self.window.clear();
        for b in &self.blocks {
            self.window.add(b);
        }
        let w = &self.window;
        let p = &self.profile;
        let mut s = DriftSnapshot {
            frames: w.frames,
            rate: w.rate(),
            profile_rate: p.rate(),
            class_psi: psi(&p.classes, &w.classes),
            score_psi: psi(&p.scores, &w.scores),
            ..Default::default()
        };
        if w.frames >= u64::from(self.config.min_frames) {
            let f = self.config.rate_factor;
            s.collapsed = s.profile_rate > 0.0 && s.rate < s.profile_rate / f;
            s.surged = s.profile_rate > 0.0 && s.rate > s.profile_rate * f;
            s.class_drift = w.detections > 0 && s.class_psi > self.config.psi_max;
            s.score_drift = w.detections > 0 && s.score_psi > self.config.psi_max;
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(class_id: u32, score: f32, side: f32) -> Detection {
        Detection {
            class_id,
            score,
            bbox: [0.0, 0.0, side, side],
        }
    }

    #[test]
    fn bins_take_scores_and_sizes() {
        let mut c = DetectionCounts::new(3);
        c.add_frame(
            &[det(0, 0.95, 640.0), det(2, 0.31, 10.0), det(7, 0.0, 0.0)],
            640,
            640,
        );
        assert_eq!((c.frames, c.detections), (1, 3));
        assert_eq!(
            c.classes,
            vec![1, 0, 1],
            "an unknown class is counted, not binned"
        );
        assert_eq!((c.scores[9], c.scores[3], c.scores[0]), (1, 1, 1));
        // Whole image: last bin; 10x10 of 640x640 (1/4096 = 4^-6): bin 1; empty box: bin 0.
        assert_eq!((c.sizes[7], c.sizes[1], c.sizes[0]), (1, 1, 1));
    }

    #[test]
    fn a_window_like_the_profile_is_quiet_and_a_collapse_warns() {
        let mut profile = DetectionCounts::new(2);
        for _ in 0..100 {
            profile.add_frame(
                &[det(0, 0.8, 50.0), det(0, 0.6, 80.0), det(1, 0.7, 30.0)],
                640,
                480,
            );
        }
        let config = DriftConfig {
            window_frames: 50,
            min_frames: 20,
            ..Default::default()
        };
        let mut m = DriftMonitor::new(config, profile.clone());
        for _ in 0..19 {
            m.update(&[], 640, 480);
        }
        assert!(m.snapshot().reasons().next().is_none(), "under min_frames");
        for _ in 0..50 {
            m.update(
                &[det(0, 0.8, 50.0), det(0, 0.6, 80.0), det(1, 0.7, 30.0)],
                640,
                480,
            );
        }
        let s = m.snapshot();
        // Ten blocks of five frames; the newest is being filled: 45 to 50 frames.
        assert_eq!(s.frames, 49);
        assert!(
            (s.rate - 3.0).abs() < 1e-9,
            "the empty frames left the window: {s:?}"
        );
        assert!(s.class_psi < 1e-9 && s.reasons().next().is_none(), "{s:?}");
        // Night: a detection every fifth frame, low scores, one class.
        for i in 0..50 {
            let d = [det(1, 0.3, 30.0)];
            m.update(if i % 5 == 0 { &d } else { &[] }, 640, 480);
        }
        let s = m.snapshot();
        let reasons: Vec<String> = s.reasons().collect();
        assert!(s.collapsed && s.class_drift && s.score_drift, "{s:?}");
        assert!(
            reasons[0].starts_with("detections collapsed: 0.2 per frame, profile 3.0"),
            "{reasons:?}"
        );
    }

    #[test]
    fn psi_is_zero_for_equal_mixes_and_grows_with_the_shift() {
        assert!(psi(&[10, 20, 30], &[1, 2, 3]).abs() < 1e-12);
        let small = psi(&[50, 50], &[55, 45]);
        let large = psi(&[50, 50], &[90, 10]);
        assert!(
            small > 0.0 && small < 0.05 && large > 0.5,
            "{small} {large}"
        );
    }
}

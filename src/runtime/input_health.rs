//! Input health per camera: turns each frame's [`InputStats`] (measured on the input tensor by
//! the detector) into conditions a vehicle must know about, each with a level and a reason on
//! /diagnostics: the camera is blocked or dark (ERROR), frozen (the same picture again and again,
//! ERROR), overexposed, low in contrast (fog, mud, a lens cap that lets light through) or
//! blurred (WARN). A flat picture (dark, overexposed or low in contrast) is never called frozen:
//! it is the same picture again by nature.
//!
//! A condition is reported once it held for `min_frames` frames in a row (`frozen_frames` for a
//! frozen camera), and clears on the first frame without it, so one odd frame neither raises nor
//! hides it. The thresholds are `monitor.input_health.*` ([`InputHealthConfig`]).
//!
//! Contract: runs on the publishing side with the deadline tracker; [`InputMonitor::update`]
//! and [`InputMonitor::snapshot`] allocate nothing, never block and cannot fail.

use serde::{Deserialize, Serialize};

use crate::core::input_health::InputStats;

/// `monitor.input_health.*`: when a camera's picture is reported as unfit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputHealthConfig {
    /// Measure and report the picture of every frame (about 0.03 ms a frame).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Blocked or dark: mean brightness (0..255) at most this.
    #[serde(default = "default_dark_brightness")]
    pub dark_brightness_max: f64,
    /// Overexposed: at least this fraction of the picture saturated.
    #[serde(default = "default_saturated_fraction")]
    pub saturated_fraction_min: f64,
    /// Low contrast: standard deviation of the brightness at most this (not dark or overexposed).
    #[serde(default = "default_low_contrast")]
    pub low_contrast_max: f64,
    /// Blurred: sharpness (variance of the Laplacian over that of the brightness; real scenes
    /// 1.7 to 2.8, a 25-pixel blur 0.04 to 0.28) at most this, in a picture with contrast.
    #[serde(default = "default_blur_sharpness")]
    pub blur_sharpness_max: f64,
    /// Frozen: this many frames in a row with the same picture.
    #[serde(default = "default_frozen_frames")]
    pub frozen_frames: u32,
    /// Frames in a row a condition must hold before it is reported.
    #[serde(default = "default_min_frames")]
    pub min_frames: u32,
}

fn default_true() -> bool {
    true
}
fn default_dark_brightness() -> f64 {
    20.0
}
fn default_saturated_fraction() -> f64 {
    0.5
}
fn default_low_contrast() -> f64 {
    6.0
}
fn default_blur_sharpness() -> f64 {
    0.4
}
fn default_frozen_frames() -> u32 {
    10
}
fn default_min_frames() -> u32 {
    5
}

impl Default for InputHealthConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            dark_brightness_max: default_dark_brightness(),
            saturated_fraction_min: default_saturated_fraction(),
            low_contrast_max: default_low_contrast(),
            blur_sharpness_max: default_blur_sharpness(),
            frozen_frames: default_frozen_frames(),
            min_frames: default_min_frames(),
        }
    }
}

impl InputHealthConfig {
    /// Checks the ranges; on error the key (under `monitor.input_health.`) and the reason.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let in_range = |v: f64, lo: f64, hi: f64| v.is_finite() && (lo..=hi).contains(&v);
        if !in_range(self.dark_brightness_max, 0.0, 255.0) {
            return Err(("dark_brightness_max", "must be within 0..255".into()));
        }
        if !in_range(self.saturated_fraction_min, 0.0, 1.0) {
            return Err(("saturated_fraction_min", "must be within 0..1".into()));
        }
        if !in_range(self.low_contrast_max, 0.0, 255.0) {
            return Err(("low_contrast_max", "must be within 0..255".into()));
        }
        if !in_range(self.blur_sharpness_max, 0.0, 100.0) {
            return Err(("blur_sharpness_max", "must be within 0..100".into()));
        }
        if !(2..=100_000).contains(&self.frozen_frames) {
            return Err(("frozen_frames", "must be within 2..100000".into()));
        }
        if !(1..=100_000).contains(&self.min_frames) {
            return Err(("min_frames", "must be within 1..100000".into()));
        }
        Ok(())
    }
}

/// A condition of a camera's picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// Blocked (lens covered) or dark.
    Dark,
    /// The same picture, frame after frame.
    Frozen,
    /// Mostly saturated.
    Overexposed,
    /// Almost uniform (fog, dirt, glare).
    LowContrast,
    /// Contrast but no detail.
    Blurred,
}

impl Condition {
    /// Every condition, worst first.
    pub const ALL: [Condition; 5] = [
        Condition::Dark,
        Condition::Frozen,
        Condition::Overexposed,
        Condition::LowContrast,
        Condition::Blurred,
    ];

    /// Short name (report keys).
    pub fn name(self) -> &'static str {
        match self {
            Condition::Dark => "dark",
            Condition::Frozen => "frozen",
            Condition::Overexposed => "overexposed",
            Condition::LowContrast => "low_contrast",
            Condition::Blurred => "blurred",
        }
    }

    /// Whether the camera is unusable (ERROR) rather than degraded (WARN).
    pub fn is_error(self) -> bool {
        matches!(self, Condition::Dark | Condition::Frozen)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One camera's input health now.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct InputHealthSnapshot {
    /// The last frame's picture (`points == 0`: none measured yet).
    pub last: InputStats,
    /// Per [`Condition::ALL`]: whether it is reported now.
    pub active: [bool; 5],
    /// Per [`Condition::ALL`]: frames that had it, since start.
    pub frames_with: [u64; 5],
    /// Frames in a row with the same picture (1: the last one differs from the one before).
    pub same_picture_frames: u32,
}

impl InputHealthSnapshot {
    /// Conditions reported now, worst first.
    pub fn active(&self) -> impl Iterator<Item = Condition> + '_ {
        Condition::ALL
            .into_iter()
            .filter(|c| self.active[c.index()])
    }

    /// The reason text of `c` with the last frame's figure.
    pub fn reason(&self, c: Condition) -> String {
        let s = &self.last;
        match c {
            Condition::Dark => format!("camera blocked or dark (brightness {:.1})", s.brightness),
            Condition::Frozen => format!(
                "frozen (the same picture {} frames in a row)",
                self.same_picture_frames
            ),
            Condition::Overexposed => format!(
                "overexposed ({:.0} % saturated)",
                s.saturated_fraction * 100.0
            ),
            Condition::LowContrast => format!("low contrast ({:.1})", s.contrast),
            Condition::Blurred => format!("blurred (sharpness {:.3})", s.sharpness),
        }
    }
}

/// The conditions of one camera, frame by frame.
#[derive(Debug, Clone)]
pub struct InputMonitor {
    config: InputHealthConfig,
    streak: [u32; 5],
    previous_fingerprint: Option<u64>,
    snapshot: InputHealthSnapshot,
}

impl InputMonitor {
    /// A monitor with `config`'s thresholds.
    pub fn new(config: InputHealthConfig) -> Self {
        Self {
            config,
            streak: [0; 5],
            previous_fingerprint: None,
            snapshot: InputHealthSnapshot::default(),
        }
    }

    /// Takes one frame's picture (ignored when nothing was measured).
    pub fn update(&mut self, stats: &InputStats) {
        if !self.config.enabled || stats.points == 0 {
            return;
        }
        let c = &self.config;
        let dark = f64::from(stats.brightness) <= c.dark_brightness_max;
        let overexposed = f64::from(stats.saturated_fraction) >= c.saturated_fraction_min;
        let flat = dark || overexposed || f64::from(stats.contrast) <= c.low_contrast_max;
        // A flat picture (black, white, uniform) is the same picture again by nature: frozen
        // means a picture with content that does not change.
        let same = !flat && self.previous_fingerprint == Some(stats.fingerprint);
        self.previous_fingerprint = Some(stats.fingerprint);
        let snap = &mut self.snapshot;
        snap.same_picture_frames = if same {
            snap.same_picture_frames.saturating_add(1)
        } else {
            1
        };
        let low_contrast = !dark && !overexposed && f64::from(stats.contrast) <= c.low_contrast_max;
        let blurred = !dark
            && !overexposed
            && !low_contrast
            && f64::from(stats.sharpness) <= c.blur_sharpness_max;
        let now = [dark, same, overexposed, low_contrast, blurred];
        for (i, holds) in now.into_iter().enumerate() {
            self.streak[i] = if holds {
                self.streak[i].saturating_add(1)
            } else {
                0
            };
            snap.frames_with[i] += u64::from(holds);
        }
        for cond in Condition::ALL {
            let i = cond.index();
            snap.active[i] = match cond {
                Condition::Frozen => snap.same_picture_frames >= c.frozen_frames,
                _ => self.streak[i] >= c.min_frames,
            };
        }
        snap.last = *stats;
    }

    /// The camera's input health now.
    pub fn snapshot(&self) -> InputHealthSnapshot {
        self.snapshot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(brightness: f32, contrast: f32, sharpness: f32, fingerprint: u64) -> InputStats {
        InputStats {
            points: 100,
            brightness,
            contrast,
            dark_fraction: 0.0,
            saturated_fraction: 0.0,
            sharpness,
            fingerprint,
        }
    }

    #[test]
    fn a_condition_needs_min_frames_in_a_row_and_clears_at_once() {
        let mut m = InputMonitor::new(InputHealthConfig::default());
        for i in 0..4 {
            m.update(&stats(3.0, 1.0, 0.0, i));
        }
        assert_eq!(m.snapshot().active().count(), 0, "4 dark frames: not yet");
        m.update(&stats(3.0, 1.0, 0.0, 9));
        let s = m.snapshot();
        assert_eq!(s.active().collect::<Vec<_>>(), vec![Condition::Dark]);
        assert_eq!(
            s.reason(Condition::Dark),
            "camera blocked or dark (brightness 3.0)"
        );
        m.update(&stats(120.0, 50.0, 1.0, 10));
        assert_eq!(m.snapshot().active().count(), 0);
        assert_eq!(m.snapshot().frames_with[0], 5);
    }

    #[test]
    fn the_same_picture_again_and_again_is_frozen() {
        let mut m = InputMonitor::new(InputHealthConfig::default());
        for _ in 0..9 {
            m.update(&stats(120.0, 50.0, 1.0, 7));
        }
        assert!(!m.snapshot().active[Condition::Frozen.index()]);
        m.update(&stats(120.0, 50.0, 1.0, 7));
        let s = m.snapshot();
        assert_eq!(s.active().collect::<Vec<_>>(), vec![Condition::Frozen]);
        assert!(s.reason(Condition::Frozen).contains("10 frames"));
    }

    #[test]
    fn a_flat_picture_repeated_is_not_frozen() {
        let mut m = InputMonitor::new(InputHealthConfig::default());
        for _ in 0..20 {
            m.update(&stats(0.0, 0.0, 0.0, 7));
        }
        assert_eq!(
            m.snapshot().active().collect::<Vec<_>>(),
            vec![Condition::Dark]
        );
    }

    #[test]
    fn low_contrast_and_blur_exclude_each_other_and_darkness() {
        let mut m = InputMonitor::new(InputHealthConfig::default());
        for i in 0..5 {
            m.update(&stats(120.0, 3.0, 0.01, i));
        }
        assert_eq!(
            m.snapshot().active().collect::<Vec<_>>(),
            vec![Condition::LowContrast]
        );
        for i in 0..5 {
            m.update(&stats(120.0, 40.0, 0.05, 100 + i));
        }
        assert_eq!(
            m.snapshot().active().collect::<Vec<_>>(),
            vec![Condition::Blurred]
        );
        let bad = InputHealthConfig {
            min_frames: 0,
            ..Default::default()
        };
        assert_eq!(bad.validate().unwrap_err().0, "min_frames");
    }
}

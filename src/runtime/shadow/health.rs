//! The shadow model on /diagnostics: each camera's agreement counts and WARN when too many of
//! the window's frames disagree; the engine's status names the shadow model and its sha256.
//!
//! Contract: allocates (strings); runs once a period with the other health rules.

use crate::runtime::counters::CounterSnapshot;
use crate::runtime::health::{Level, Status};

/// What the shadow rule needs: the thresholds and the model it names.
#[derive(Debug, Clone, PartialEq)]
pub struct ShadowRule {
    /// Frames the window must hold before disagreement is judged.
    pub min_frames: u64,
    /// Share of the window's frames that may disagree.
    pub warn_disagreement: f64,
    /// Shadow model name.
    pub model: String,
    /// Its ONNX sha256.
    pub sha256: String,
}

impl ShadowRule {
    /// Adds the shadow's keys to a camera's status, and a WARN when the window's share of
    /// disagreeing frames is over `warn_disagreement`.
    pub fn annotate_camera(&self, status: &mut Status, c: &CounterSnapshot) {
        let (window, disagreeing) = (c.shadow_window_frames, c.shadow_window_disagreeing);
        let share = if window > 0 {
            disagreeing as f64 / window as f64
        } else {
            0.0
        };
        if window >= self.min_frames && share > self.warn_disagreement {
            let why = format!(
                "shadow model disagrees on {:.0} % of the last {window} frames (warn_disagreement {:.0} %)",
                share * 100.0,
                self.warn_disagreement * 100.0
            );
            if status.level == Level::Ok {
                status.message = why;
            } else {
                status.message = format!("{}; {why}", status.message);
            }
            status.level = status.level.max(Level::Warn);
        }
        for (k, v) in [
            ("shadow_frames", c.shadow_frames.to_string()),
            ("shadow_skipped", c.shadow_skipped.to_string()),
            (
                "shadow_disagreeing_frames",
                c.shadow_disagreeing.to_string(),
            ),
            ("shadow_window_frames", window.to_string()),
            ("shadow_window_disagreement", format!("{share:.3}")),
            ("shadow_matched", c.shadow_matched.to_string()),
            ("shadow_primary_only", c.shadow_primary_only.to_string()),
            ("shadow_only", c.shadow_only.to_string()),
            ("shadow_errors", c.shadow_errors.to_string()),
        ] {
            status.values.push((k.to_string(), v));
        }
    }

    /// Adds the shadow model's name and sha256 to the engine's status.
    pub fn annotate_engine(&self, status: &mut Status) {
        status
            .values
            .push(("shadow_model".to_string(), self.model.clone()));
        status
            .values
            .push(("shadow_model_sha256".to_string(), self.sha256.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> Status {
        Status {
            name: "lookout: camera front".into(),
            level: Level::Ok,
            message: "OK".into(),
            values: Vec::new(),
        }
    }

    #[test]
    fn warns_only_over_the_share_once_the_window_holds_enough_frames() {
        let rule = ShadowRule {
            min_frames: 20,
            warn_disagreement: 0.2,
            model: "m".into(),
            sha256: "s".into(),
        };
        let mut c = CounterSnapshot {
            shadow_window_frames: 19,
            shadow_window_disagreeing: 19,
            ..CounterSnapshot::default()
        };
        let mut s = ok();
        rule.annotate_camera(&mut s, &c);
        assert_eq!((s.level, s.message.as_str()), (Level::Ok, "OK"));
        c.shadow_window_frames = 100;
        c.shadow_window_disagreeing = 20;
        let mut s = ok();
        rule.annotate_camera(&mut s, &c);
        assert_eq!(s.level, Level::Ok, "20 % is not over 20 %");
        c.shadow_window_disagreeing = 35;
        let mut s = ok();
        rule.annotate_camera(&mut s, &c);
        assert_eq!(s.level, Level::Warn);
        assert_eq!(
            s.message,
            "shadow model disagrees on 35 % of the last 100 frames (warn_disagreement 20 %)"
        );
        assert!(
            s.values
                .contains(&("shadow_window_disagreement".into(), "0.350".into()))
        );
    }
}

//! Range checks of every parameter: an out-of-range value is a start-up error naming its key.

use super::{
    Config, ConfigError, MAX_AGE_MS, MAX_BUDGET_MS, MAX_CAMERAS, MAX_DETECTIONS,
    MAX_HARD_TIMEOUT_MS, MAX_PERIOD_MS, MAX_RATE_HZ, MAX_REBUILD_AFTER_FAILURES, MAX_THREADS,
    MAX_WARMUP_RUNS, MAX_WINDOW_S, ThresholdOverrides, param_err,
};

impl Config {
    /// Checks values and cross-references; errors name the parameter.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.cameras.is_empty() {
            return Err(param_err("cameras", "at least one camera is needed"));
        }
        if self.cameras.len() > MAX_CAMERAS {
            return Err(param_err(
                "cameras",
                format!("at most {MAX_CAMERAS} cameras, got {}", self.cameras.len()),
            ));
        }
        for (i, name) in self.cameras.iter().enumerate() {
            let valid = !name.is_empty()
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !name.as_bytes()[0].is_ascii_digit();
            if !valid {
                return Err(param_err(
                    "cameras",
                    format!(
                        "camera name `{name}` must be letters, digits and _ (not starting with a digit)"
                    ),
                ));
            }
            if self.cameras[..i].contains(name) {
                return Err(param_err(
                    "cameras",
                    format!("camera `{name}` is listed twice"),
                ));
            }
            let Some(cam) = self.camera.get(name) else {
                return Err(param_err(
                    format!("camera.{name}"),
                    "missing: every camera in `cameras` needs a section",
                ));
            };
            let key = |k: &str| format!("camera.{name}.{k}");
            if cam.topic.trim().is_empty() {
                return Err(param_err(key("topic"), "must not be empty"));
            }
            if cam.ring_capacity < 1 || cam.ring_capacity > 64 {
                return Err(param_err(
                    key("ring_capacity"),
                    format!("must be within 1..64, got {}", cam.ring_capacity),
                ));
            }
            if !(1..=crate::runtime::scheduler::MAX_WEIGHT).contains(&cam.weight) {
                return Err(param_err(
                    key("weight"),
                    format!(
                        "must be within 1..{}, got {}",
                        crate::runtime::scheduler::MAX_WEIGHT,
                        cam.weight
                    ),
                ));
            }
            if cam.max_width == 0
                || cam.max_height == 0
                || cam.max_width > 16384
                || cam.max_height > 16384
            {
                return Err(param_err(
                    key("max_width"),
                    "max_width and max_height must be within 1..16384",
                ));
            }
            // (key, value, smallest, whether the smallest is allowed, largest)
            for (k, v, min, min_ok, max) in [
                ("budget_ms", cam.budget_ms, 0.0, false, MAX_BUDGET_MS),
                ("max_age_ms", cam.max_age_ms, 0.0, true, MAX_AGE_MS),
                (
                    "hard_timeout_ms",
                    cam.hard_timeout_ms,
                    0.0,
                    true,
                    MAX_HARD_TIMEOUT_MS,
                ),
                (
                    "input_timeout_ms",
                    cam.input_timeout_ms,
                    0.0,
                    false,
                    MAX_AGE_MS,
                ),
                (
                    "min_output_rate_hz",
                    cam.min_output_rate_hz,
                    0.0,
                    true,
                    MAX_RATE_HZ,
                ),
            ] {
                let above_min = if min_ok { v >= min } else { v > min };
                if !(v.is_finite() && above_min && v <= max) {
                    let low = if min_ok { "[" } else { "(" };
                    return Err(param_err(
                        key(k),
                        format!("must be within {low}{min}, {max}], got {v}"),
                    ));
                }
            }
            for (q, qos) in [
                ("qos", cam.input_qos()),
                ("output_qos", cam.detections_qos()),
            ] {
                if qos.depth == 0 || qos.depth > 1000 {
                    return Err(param_err(
                        key(&format!("{q}.depth")),
                        format!("must be within 1..1000, got {}", qos.depth),
                    ));
                }
            }
        }
        if let Some(extra) = self.camera.keys().find(|k| !self.cameras.contains(k)) {
            return Err(param_err(
                format!("camera.{extra}"),
                "not listed in `cameras`",
            ));
        }
        if self.engine.execution_providers.is_empty() {
            return Err(param_err(
                "engine.execution_providers",
                "at least one provider is needed",
            ));
        }
        if self.engine.preprocess_threads > 2 {
            return Err(param_err(
                "engine.preprocess_threads",
                format!(
                    "must be 0 (auto), 1 or 2, got {}",
                    self.engine.preprocess_threads
                ),
            ));
        }
        self.monitor
            .drift
            .validate()
            .map_err(|(key, reason)| param_err(format!("monitor.drift.{key}"), reason))?;
        self.monitor
            .input_health
            .validate()
            .map_err(|(key, reason)| param_err(format!("monitor.input_health.{key}"), reason))?;
        if self.engine.max_batch > crate::core::model::MAX_BATCH {
            return Err(param_err(
                "engine.max_batch",
                format!(
                    "must be within 0..={} (0: the model's input.max_batch), got {}",
                    crate::core::model::MAX_BATCH,
                    self.engine.max_batch
                ),
            ));
        }
        crate::core::engine::providers::validate(&self.engine.provider_options())
            .map_err(|e| param_err(format!("engine.{}", e.key), e.reason))?;
        validate_thresholds("thresholds", &self.thresholds)?;
        validate_thresholds("shadow.thresholds", &self.shadow.thresholds)?;
        self.shadow
            .validate()
            .map_err(|(key, reason)| param_err(format!("shadow.{key}"), reason))?;
        self.capture
            .validate()
            .map_err(|(key, reason)| param_err(format!("capture.{key}"), reason))?;
        let d = self.diagnostics;
        if !(d.period_ms.is_finite() && (10.0..=MAX_PERIOD_MS).contains(&d.period_ms)) {
            return Err(param_err(
                "diagnostics.period_ms",
                format!("must be within [10, {MAX_PERIOD_MS}], got {}", d.period_ms),
            ));
        }
        if !(d.window_s.is_finite() && d.window_s > 0.0 && d.window_s <= MAX_WINDOW_S) {
            return Err(param_err(
                "diagnostics.window_s",
                format!("must be within (0, {MAX_WINDOW_S}], got {}", d.window_s),
            ));
        }
        if let Some(reason) = self
            .engine
            .ort_library
            .as_deref()
            .and_then(crate::core::engine::relative_library_error)
        {
            return Err(param_err("engine.ort_library", reason));
        }
        if self.engine.intra_op_threads > MAX_THREADS {
            return Err(param_err(
                "engine.intra_op_threads",
                format!(
                    "must be within 0 (auto)..{MAX_THREADS}, got {}",
                    self.engine.intra_op_threads
                ),
            ));
        }
        if self.engine.rebuild_after_failures > MAX_REBUILD_AFTER_FAILURES {
            return Err(param_err(
                "engine.rebuild_after_failures",
                format!(
                    "must be within 0 (never)..{MAX_REBUILD_AFTER_FAILURES}, got {}",
                    self.engine.rebuild_after_failures
                ),
            ));
        }
        if self.engine.warmup_runs > MAX_WARMUP_RUNS {
            return Err(param_err(
                "engine.warmup_runs",
                format!(
                    "must be within 0..{MAX_WARMUP_RUNS}, got {}",
                    self.engine.warmup_runs
                ),
            ));
        }
        for (name, t) in [
            ("inference", &self.realtime.inference),
            ("executor", &self.realtime.executor),
            ("publisher", &self.realtime.publisher),
        ] {
            if !(0..=99).contains(&t.sched_fifo_priority) {
                return Err(param_err(
                    format!("realtime.{name}.sched_fifo_priority"),
                    format!("must be within 0..99, got {}", t.sched_fifo_priority),
                ));
            }
            if let Some(cpu) = t.cpu_affinity.iter().find(|c| !(0..1024).contains(*c)) {
                return Err(param_err(
                    format!("realtime.{name}.cpu_affinity"),
                    format!("CPU {cpu} is out of range"),
                ));
            }
        }
        Ok(())
    }
}

/// Range checks of threshold overrides under `prefix` (`thresholds`, `shadow.thresholds`).
fn validate_thresholds(prefix: &str, t: &ThresholdOverrides) -> Result<(), ConfigError> {
    for (k, v) in [("confidence", t.confidence), ("nms_iou", t.nms_iou)] {
        if let Some(v) = v
            && !(0.0..=1.0).contains(&v)
        {
            return Err(param_err(
                format!("{prefix}.{k}"),
                format!("must be within 0..1, got {v}"),
            ));
        }
    }
    if let Some(n) = t.max_detections
        && !(1..=MAX_DETECTIONS).contains(&n)
    {
        return Err(param_err(
            format!("{prefix}.max_detections"),
            format!("must be within 1..{MAX_DETECTIONS}, got {n}"),
        ));
    }
    Ok(())
}

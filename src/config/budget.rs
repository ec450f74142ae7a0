//! What a configuration costs in memory before its first frame: each camera's frame slots and
//! decoder buffer, checked against the computer's memory at start-up and logged once.

use super::{Config, ConfigError, ImageKind, param_err};

/// Most cameras one node serves.
pub const MAX_CAMERAS: usize = 32;
/// Largest `thresholds.max_detections`.
pub const MAX_DETECTIONS: usize = 10_000;

/// One camera's share of the memory budget, bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CameraBudget {
    /// Camera name.
    pub name: String,
    /// Frame slots: `(ring_capacity + 2) x max_width x max_height x 4`.
    pub slots_bytes: u64,
    /// Decoded-frame buffer of a compressed camera: `max_width x max_height x 4`.
    pub decoder_bytes: u64,
    /// Incident capture's records: `(ceil(before_s x max_rate_hz) + 2) x max_width x
    /// max_height x 4` (0 without `capture.dir`).
    pub capture_bytes: u64,
}

/// The memory a configuration reserves for frames (pages become resident as frames fill them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryBudget {
    /// Per camera, in configured order.
    pub cameras: Vec<CameraBudget>,
}

impl MemoryBudget {
    /// The whole budget, bytes.
    pub fn total_bytes(&self) -> u64 {
        self.cameras
            .iter()
            .map(|c| {
                c.slots_bytes
                    .saturating_add(c.decoder_bytes)
                    .saturating_add(c.capture_bytes)
            })
            .fold(0, u64::saturating_add)
    }
}

impl std::fmt::Display for MemoryBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mb = |b: u64| b as f64 / 1e6;
        write!(f, "{:.0} MB for frames", mb(self.total_bytes()))?;
        for (i, c) in self.cameras.iter().enumerate() {
            let sep = if i == 0 { " (" } else { ", " };
            write!(
                f,
                "{sep}{}: slots {:.0} MB, decoder {:.0} MB",
                c.name,
                mb(c.slots_bytes),
                mb(c.decoder_bytes)
            )?;
            if c.capture_bytes > 0 {
                write!(f, ", capture {:.0} MB", mb(c.capture_bytes))?;
            }
        }
        if !self.cameras.is_empty() {
            write!(f, ")")?;
        }
        Ok(())
    }
}

/// Physical memory, bytes (`MemTotal` of /proc/meminfo); `None` where it cannot be read.
pub fn physical_memory_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

impl Config {
    /// The memory the configured cameras reserve for frames.
    pub fn memory_budget(&self) -> MemoryBudget {
        MemoryBudget {
            cameras: self
                .camera_list()
                .map(|(name, c)| {
                    let frame = crate::runtime::queue::slot_bytes(c.max_width, c.max_height) as u64;
                    CameraBudget {
                        name: name.to_string(),
                        // One more slot for the frame a shadow model holds.
                        slots_bytes: frame.saturating_mul(
                            c.ring_capacity as u64 + 2 + u64::from(self.shadow.model.is_some()),
                        ),
                        decoder_bytes: if c.kind == ImageKind::Compressed {
                            frame
                        } else {
                            0
                        },
                        capture_bytes: if self.capture.dir.is_some() {
                            frame.saturating_mul(self.capture.records_per_camera() as u64)
                        } else {
                            0
                        },
                    }
                })
                .collect(),
        }
    }

    /// Refuses a configuration whose frames would take more than `limit_bytes` (at start-up:
    /// half of physical memory), naming the keys that size it and each camera's share.
    pub fn check_memory_budget(&self, limit_bytes: u64) -> Result<(), ConfigError> {
        let budget = self.memory_budget();
        if budget.total_bytes() > limit_bytes {
            return Err(param_err(
                "camera.<name>.max_width, max_height, ring_capacity (and capture.before_s, max_rate_hz)",
                format!(
                    "the cameras would reserve {budget}, over the limit of {:.0} MB (half of this computer's memory); lower them or the number of cameras",
                    limit_bytes as f64 / 1e6
                ),
            ));
        }
        Ok(())
    }
}

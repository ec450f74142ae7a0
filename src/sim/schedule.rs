//! When each simulated camera emits its frames: `fps` per camera, cameras spread evenly over a
//! period (real cameras are not synchronised), Gaussian jitter of `jitter_ms` on every frame,
//! and bursts: with `burst` K > 1, frames come in groups of K back to back, one group every K
//! periods (the mean rate stays `fps`). Deterministic: the same options give the same times.
//!
//! Contract: [`Schedule::new`] allocates one entry per camera; [`Schedule::next_frame`] allocates
//! nothing and is O(cameras).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The emission times of every camera, in order.
#[derive(Debug, Clone)]
pub struct Schedule {
    period_ns: f64,
    jitter_ns: f64,
    burst: u64,
    /// Per camera: nominal time of its next group (ns from the start), frames left in the
    /// current group, frames emitted, and its next jittered emission time.
    cameras: Vec<CameraClock>,
    rng: Rng,
}

#[derive(Debug, Clone, Copy)]
struct CameraClock {
    group_ns: f64,
    in_group: u64,
    emitted: u64,
    due_ns: f64,
}

impl Schedule {
    /// `cameras` cameras at `fps` frames per second each (`fps > 0`), `jitter_ms` standard
    /// deviation (>= 0), groups of `burst` (>= 1), jitter drawn from a generator seeded with
    /// `seed`.
    pub fn new(cameras: usize, fps: f64, jitter_ms: f64, burst: u32, seed: u64) -> Self {
        let period_ns = 1e9 / fps;
        let burst = u64::from(burst.max(1));
        let mut s = Self {
            period_ns,
            jitter_ns: jitter_ms.max(0.0) * 1e6,
            burst,
            cameras: Vec::with_capacity(cameras),
            rng: Rng(seed | 1),
        };
        for i in 0..cameras {
            // Spread over one group interval, so the cameras do not all fire at once.
            let group_ns = period_ns * burst as f64 * i as f64 / cameras.max(1) as f64;
            let mut c = CameraClock {
                group_ns,
                in_group: 0,
                emitted: 0,
                due_ns: 0.0,
            };
            c.due_ns = s.jittered(group_ns);
            s.cameras.push(c);
        }
        s
    }

    fn jittered(&mut self, nominal_ns: f64) -> f64 {
        if self.jitter_ns == 0.0 {
            return nominal_ns;
        }
        (nominal_ns + self.rng.gaussian() * self.jitter_ns).max(0.0)
    }

    /// The next emission: (camera, time from the start). Advances that camera.
    pub fn next_frame(&mut self) -> (usize, Duration) {
        let (camera, due_ns) = self
            .cameras
            .iter()
            .enumerate()
            .map(|(i, c)| (i, c.due_ns))
            .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)))
            .unwrap_or((0, 0.0));
        let burst = self.burst;
        let group_len = self.period_ns * burst as f64;
        if let Some(c) = self.cameras.get(camera).copied() {
            let mut c = c;
            c.emitted += 1;
            c.in_group += 1;
            let nominal = if c.in_group >= burst {
                c.in_group = 0;
                c.group_ns += group_len;
                c.group_ns
            } else {
                // The rest of a group follows at once (back to back).
                c.due_ns
            };
            c.due_ns = if c.in_group == 0 {
                self.jittered(nominal)
            } else {
                nominal
            };
            self.cameras[camera] = c;
        }
        (camera, Duration::from_nanos(due_ns.max(0.0) as u64))
    }

    /// Frames emitted so far by `camera`.
    pub fn emitted(&self, camera: usize) -> u64 {
        self.cameras.get(camera).map_or(0, |c| c.emitted)
    }
}

/// How a wait for the next emission ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// The emission is due.
    Due,
    /// `stop` was set (Ctrl-C).
    Stopped,
    /// The caller's `idle` gave up (e.g. a worker thread died).
    Aborted,
}

/// Waits until `due`: while it is ahead, calls `idle(time left)` (which sleeps or does useful
/// work for at most about that long and returns false to give up), checking `stop` in between.
pub fn wait_until(due: Instant, stop: &AtomicBool, mut idle: impl FnMut(Duration) -> bool) -> Wait {
    loop {
        if stop.load(Ordering::Relaxed) {
            return Wait::Stopped;
        }
        let now = Instant::now();
        if now >= due {
            return Wait::Due;
        }
        if !idle(due - now) {
            return Wait::Aborted;
        }
    }
}

/// xorshift64* with Box-Muller: small, fast, deterministic; not for anything but jitter.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in (0, 1].
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }

    /// Standard normal.
    fn gaussian(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn times(s: &mut Schedule, n: usize) -> Vec<(usize, f64)> {
        (0..n)
            .map(|_| {
                let (c, t) = s.next_frame();
                (c, t.as_secs_f64())
            })
            .collect()
    }

    #[test]
    fn cameras_emit_at_their_rate_spread_over_the_period() {
        let mut s = Schedule::new(2, 10.0, 0.0, 1, 1);
        let t = times(&mut s, 6);
        assert_eq!(
            t.iter().map(|x| x.0).collect::<Vec<_>>(),
            vec![0, 1, 0, 1, 0, 1]
        );
        let at: Vec<f64> = t.iter().map(|x| (x.1 * 1000.0).round()).collect();
        assert_eq!(at, vec![0.0, 50.0, 100.0, 150.0, 200.0, 250.0]);
        assert_eq!((s.emitted(0), s.emitted(1)), (3, 3));
    }

    #[test]
    fn bursts_come_back_to_back_and_keep_the_mean_rate() {
        let mut s = Schedule::new(1, 10.0, 0.0, 3, 1);
        let at: Vec<f64> = times(&mut s, 6)
            .iter()
            .map(|x| (x.1 * 1000.0).round())
            .collect();
        assert_eq!(at, vec![0.0, 0.0, 0.0, 300.0, 300.0, 300.0]);
    }

    #[test]
    fn jitter_is_gaussian_around_the_rate_and_deterministic() {
        let run = || {
            let mut s = Schedule::new(1, 100.0, 2.0, 1, 7);
            times(&mut s, 2000)
        };
        let (a, b) = (run(), run());
        assert_eq!(a, b, "same seed, same times");
        // Deviations from the nominal 10 ms grid: mean about 0, standard deviation about 2 ms.
        let dev: Vec<f64> = a
            .iter()
            .enumerate()
            .skip(5)
            .map(|(i, x)| x.1 * 1000.0 - i as f64 * 10.0)
            .collect();
        let mean = dev.iter().sum::<f64>() / dev.len() as f64;
        let sd = (dev.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / dev.len() as f64).sqrt();
        assert!(mean.abs() < 0.3, "{mean}");
        assert!((sd - 2.0).abs() < 0.3, "{sd}");
    }
}

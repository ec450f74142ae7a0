//! The peak-rate search of `lookout sim --sweep`, as ros2_benchmark's: the offered rate rises
//! by `step` from `from` while the node keeps up, then the interval between the last rate it
//! kept up with and the first it did not is halved a few times. "Keeps up" is decided by the
//! caller for each measured point (under 1 % of frames dropped and every camera's p99 within
//! its budget).
//!
//! Contract: pure logic around the caller's `measure`; allocates the list of points.

use serde::Serialize;

/// One measured rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    /// Frames offered per second, per camera.
    pub offered_fps: f64,
    /// Frames processed per second, per camera (mean over cameras).
    pub achieved_fps: f64,
    /// End-to-end latency median over all cameras, ms.
    pub e2e_p50_ms: f64,
    /// End-to-end 99th percentile over all cameras, ms.
    pub e2e_p99_ms: f64,
    /// Frames dropped (any reason but bad input), % of frames offered.
    pub dropped_percent: f64,
    /// Results later than their budget.
    pub deadline_misses: u64,
    /// The node kept up at this rate.
    pub sustained: bool,
}

/// A finished search.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sweep {
    /// Every point measured, by offered rate.
    pub points: Vec<Point>,
    /// The highest offered rate (per camera) the node kept up with; 0 if none.
    pub peak_fps: f64,
    /// What "kept up" means.
    pub criteria: String,
    /// Stopped by Ctrl-C before the search ended.
    pub interrupted: bool,
}

/// Halvings of the interval after the first rate that is not kept up.
const BISECTIONS: usize = 3;

/// Runs the search: `measure(fps)` returns the point at `fps` per camera, or `None` when the
/// run was interrupted (the search ends with what it has). Rates stay within `(0, max_fps]`.
pub fn search(
    from: f64,
    step: f64,
    max_fps: f64,
    criteria: &str,
    mut measure: impl FnMut(f64) -> Option<Point>,
) -> Sweep {
    let mut points = Vec::new();
    let mut interrupted = false;
    let mut lo = 0.0;
    let mut hi = None;
    let mut fps = from.min(max_fps);
    while fps > 0.0 {
        let Some(p) = measure(fps) else {
            interrupted = true;
            break;
        };
        points.push(p);
        if !p.sustained {
            hi = Some(fps);
            break;
        }
        lo = fps;
        if fps >= max_fps {
            break;
        }
        fps = (fps + step).min(max_fps);
    }
    if let Some(mut hi) = hi.filter(|_| !interrupted) {
        for _ in 0..BISECTIONS {
            let mid = (lo + hi) / 2.0;
            if hi - lo < step / 8.0 || mid <= 0.0 {
                break;
            }
            let Some(p) = measure(mid) else {
                interrupted = true;
                break;
            };
            points.push(p);
            if p.sustained {
                lo = mid;
            } else {
                hi = mid;
            }
        }
    }
    points.sort_by(|a, b| a.offered_fps.total_cmp(&b.offered_fps));
    Sweep {
        points,
        peak_fps: lo,
        criteria: criteria.to_string(),
        interrupted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(capacity: f64) -> impl FnMut(f64) -> Option<Point> {
        move |fps| {
            Some(Point {
                offered_fps: fps,
                achieved_fps: fps.min(capacity),
                e2e_p50_ms: 10.0,
                e2e_p99_ms: 20.0,
                dropped_percent: ((fps - capacity).max(0.0) / fps) * 100.0,
                deadline_misses: 0,
                sustained: fps <= capacity,
            })
        }
    }

    #[test]
    fn the_peak_is_found_between_the_last_kept_and_the_first_missed_rate() {
        let s = search(5.0, 10.0, 1000.0, "test", fake(22.0));
        let offered: Vec<f64> = s.points.iter().map(|p| p.offered_fps).collect();
        // 5, 15 kept; 25 missed; then 20 (kept), 22.5 (missed), 21.25 (kept).
        assert_eq!(offered, vec![5.0, 15.0, 20.0, 21.25, 22.5, 25.0]);
        assert_eq!(s.peak_fps, 21.25);
        assert!(!s.interrupted);
    }

    #[test]
    fn a_node_that_keeps_up_everywhere_stops_at_the_ceiling_and_one_that_never_does_has_no_peak() {
        let s = search(100.0, 400.0, 1000.0, "test", fake(1e9));
        assert_eq!(s.peak_fps, 1000.0);
        assert_eq!(s.points.last().map(|p| p.offered_fps), Some(1000.0));
        let s = search(5.0, 5.0, 1000.0, "test", fake(0.0));
        assert_eq!(s.peak_fps, 0.0);
        assert!(
            s.points
                .iter()
                .all(|p| p.offered_fps <= 5.0 && !p.sustained)
        );
    }

    #[test]
    fn an_interrupted_search_keeps_what_it_measured() {
        let mut n = 0;
        let mut inner = fake(100.0);
        let s = search(10.0, 10.0, 1000.0, "test", |fps| {
            n += 1;
            (n <= 2).then(|| inner(fps)).flatten()
        });
        assert!(s.interrupted);
        assert_eq!(s.points.len(), 2);
        assert_eq!(s.peak_fps, 20.0);
    }
}

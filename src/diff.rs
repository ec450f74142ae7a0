//! `lookout diff`: compares two detections bags, the regression check to run before merging a
//! model or pre-processing change.
//!
//! Every `vision_msgs/msg/Detection2DArray` topic of either bag is compared. Messages are
//! matched by topic and header stamp. Within a matched frame, detections of the same class
//! (best hypothesis) are paired greedily by decreasing IoU, down to `iou`; each pair gives a
//! score difference and a box difference (largest corner displacement, pixels). Detections
//! left without a partner are unmatched. The comparison fails when a topic or frame is missing
//! from one side, when more detections are unmatched than allowed, or when a pair differs by
//! more than the score or box tolerance.
//!
//! Contract: reads both bags completely into memory (detections only); allocates freely; never
//! panics on malformed messages (they are counted as undecodable and fail the comparison).
//! Pairing is quadratic in the detections of a frame, so a frame with more than
//! [`MAX_DETECTIONS_PER_FRAME`] on either side is not compared but counted, and fails the
//! comparison (two hostile frames of a million detections each would be 10^12 pairs).

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::Path;

use serde::Serialize;

use crate::bag::cdr::{self, Detection2DArrayMsg};
use crate::bag::{Bag, BagError};

/// The most detections per frame and side that are compared (lookout itself publishes at most
/// [`crate::config::MAX_DETECTIONS`]).
pub const MAX_DETECTIONS_PER_FRAME: usize = crate::config::MAX_DETECTIONS;

/// Tolerances of a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Tolerances {
    /// Least IoU for two detections of the same class to be paired.
    pub iou: f64,
    /// Largest allowed score difference of a pair.
    pub score: f64,
    /// Largest allowed corner displacement of a pair, pixels.
    pub box_px: f64,
    /// Unmatched detections allowed (over all frames).
    pub max_unmatched: u64,
}

impl Default for Tolerances {
    fn default() -> Self {
        Self {
            iou: 0.5,
            score: 0.02,
            box_px: 2.0,
            max_unmatched: 0,
        }
    }
}

/// Per-class figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ClassDiff {
    /// Detections in A (matched frames).
    pub count_a: u64,
    /// Detections in B (matched frames).
    pub count_b: u64,
    /// Pairs found.
    pub matched: u64,
    /// Largest score difference of a pair.
    pub max_score_diff: f64,
    /// Mean absolute score difference over pairs.
    pub mean_score_diff: f64,
    /// Largest corner displacement of a pair, pixels.
    pub max_box_diff_px: f64,
}

/// One topic's comparison.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TopicDiff {
    /// Messages in A.
    pub frames_a: u64,
    /// Messages in B.
    pub frames_b: u64,
    /// Frames present on both sides (same stamp).
    pub frames_matched: u64,
    /// Stamps only in A.
    pub frames_only_a: u64,
    /// Stamps only in B.
    pub frames_only_b: u64,
    /// Detections of A with no partner in B (matched frames).
    pub unmatched_a: u64,
    /// Detections of B with no partner in A (matched frames).
    pub unmatched_b: u64,
    /// Messages that do not decode (both sides).
    pub undecodable: u64,
    /// Matched frames not compared: over [`MAX_DETECTIONS_PER_FRAME`] detections on a side.
    pub oversized: u64,
    /// Per class, by name.
    pub classes: BTreeMap<String, ClassDiff>,
}

/// The result of `lookout diff`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DiffReport {
    /// Whether everything is within tolerance.
    pub within_tolerance: bool,
    /// Why not (empty when within tolerance).
    pub failures: Vec<String>,
    /// Per topic, by name.
    pub topics: BTreeMap<String, TopicDiff>,
    /// Largest score difference of any pair.
    pub max_score_diff: f64,
    /// Largest corner displacement of any pair, pixels.
    pub max_box_diff_px: f64,
}

type Frames = BTreeMap<String, (BTreeMap<i64, Detection2DArrayMsg>, u64, u64)>;

/// Reads every Detection2DArray of a bag: per topic, messages by stamp, message count and
/// undecodable count.
fn read(path: &Path) -> Result<Frames, BagError> {
    let bag = Bag::open(path)?;
    let mut frames: Frames = BTreeMap::new();
    bag.for_each(|m| {
        if m.type_name == crate::bag::schema::DETECTION2D_ARRAY.name {
            let entry = frames.entry(m.topic.to_string()).or_default();
            entry.1 += 1;
            match cdr::detection_array(m.data) {
                Ok(msg) => {
                    entry.0.insert(msg.stamp.as_nanos(), msg);
                }
                Err(_) => entry.2 += 1,
            }
        }
        ControlFlow::Continue(())
    })?;
    Ok(frames)
}

fn iou(a: [f64; 4], b: [f64; 4]) -> f64 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let area = |r: [f64; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let union = area(a) + area(b) - inter;
    if union > 0.0 { inter / union } else { 0.0 }
}

/// Compares frame `a` with frame `b` into `t`; returns (score diffs, box diffs) per class.
fn compare_frame(
    a: &Detection2DArrayMsg,
    b: &Detection2DArrayMsg,
    tol: &Tolerances,
    t: &mut TopicDiff,
    sums: &mut BTreeMap<String, f64>,
) {
    if a.detections.len() > MAX_DETECTIONS_PER_FRAME
        || b.detections.len() > MAX_DETECTIONS_PER_FRAME
    {
        t.oversized += 1;
        return;
    }
    let label = |d: &cdr::Detection2DMsg| d.best().map_or("?", |(c, _)| c).to_string();
    fn class(d: &cdr::Detection2DMsg) -> Option<&str> {
        d.best().map(|(c, _)| c)
    }
    let classes_b: Vec<Option<&str>> = b.detections.iter().map(class).collect();
    let mut used_b = vec![false; b.detections.len()];
    let mut used_a = vec![false; a.detections.len()];
    // Candidate pairs of the same class, best IoU first (ties by index: deterministic).
    let mut pairs: Vec<(f64, usize, usize)> = Vec::new();
    for (i, da) in a.detections.iter().enumerate() {
        let class_a = class(da);
        for (j, db) in b.detections.iter().enumerate() {
            if class_a == classes_b[j] {
                let v = iou(da.corners(), db.corners());
                if v >= tol.iou {
                    pairs.push((v, i, j));
                }
            }
        }
    }
    pairs.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)).then(x.2.cmp(&y.2)));
    for d in &a.detections {
        t.classes.entry(label(d)).or_default().count_a += 1;
    }
    for d in &b.detections {
        t.classes.entry(label(d)).or_default().count_b += 1;
    }
    for (_, i, j) in pairs {
        if used_a[i] || used_b[j] {
            continue;
        }
        used_a[i] = true;
        used_b[j] = true;
        let (da, db) = (&a.detections[i], &b.detections[j]);
        let score = |d: &cdr::Detection2DMsg| d.best().map_or(0.0, |(_, s)| s);
        let ds = (score(da) - score(db)).abs();
        let (ca, cb) = (da.corners(), db.corners());
        let dbox = (0..4).map(|k| (ca[k] - cb[k]).abs()).fold(0.0, f64::max);
        let name = label(da);
        let c = t.classes.entry(name.clone()).or_default();
        c.matched += 1;
        c.max_score_diff = c.max_score_diff.max(ds);
        c.max_box_diff_px = c.max_box_diff_px.max(dbox);
        *sums.entry(name).or_default() += ds;
    }
    t.unmatched_a += used_a.iter().filter(|u| !**u).count() as u64;
    t.unmatched_b += used_b.iter().filter(|u| !**u).count() as u64;
}

/// Compares the detections of bag `a` with those of bag `b`.
pub fn diff(a: &Path, b: &Path, tol: &Tolerances) -> Result<DiffReport, BagError> {
    let fa = read(a)?;
    let fb = read(b)?;
    let mut report = DiffReport::default();
    let mut names: Vec<&String> = fa.keys().chain(fb.keys()).collect();
    names.sort();
    names.dedup();
    if names.is_empty() {
        report
            .failures
            .push("neither bag has a vision_msgs/msg/Detection2DArray topic".into());
    }
    let empty = (BTreeMap::new(), 0, 0);
    for name in names {
        let (ma, na, ua) = fa.get(name).unwrap_or(&empty);
        let (mb, nb, ub) = fb.get(name).unwrap_or(&empty);
        if !fa.contains_key(name) || !fb.contains_key(name) {
            let side = if fa.contains_key(name) { "A" } else { "B" };
            report.failures.push(format!("{name}: only in {side}"));
        }
        let mut t = TopicDiff {
            frames_a: *na,
            frames_b: *nb,
            undecodable: ua + ub,
            ..TopicDiff::default()
        };
        let mut sums: BTreeMap<String, f64> = BTreeMap::new();
        for (stamp, msg_a) in ma {
            match mb.get(stamp) {
                Some(msg_b) => {
                    t.frames_matched += 1;
                    compare_frame(msg_a, msg_b, tol, &mut t, &mut sums);
                }
                None => t.frames_only_a += 1,
            }
        }
        t.frames_only_b = mb.keys().filter(|s| !ma.contains_key(s)).count() as u64;
        for (class, c) in &mut t.classes {
            if c.matched > 0 {
                c.mean_score_diff = sums.get(class).copied().unwrap_or(0.0) / c.matched as f64;
            }
            report.max_score_diff = report.max_score_diff.max(c.max_score_diff);
            report.max_box_diff_px = report.max_box_diff_px.max(c.max_box_diff_px);
            if c.max_score_diff > tol.score {
                report.failures.push(format!(
                    "{name}: class {class}: score differs by up to {:.4} (tolerance {})",
                    c.max_score_diff, tol.score
                ));
            }
            if c.max_box_diff_px > tol.box_px {
                report.failures.push(format!(
                    "{name}: class {class}: box corners differ by up to {:.2} px (tolerance {})",
                    c.max_box_diff_px, tol.box_px
                ));
            }
        }
        if t.frames_only_a + t.frames_only_b > 0 {
            report.failures.push(format!(
                "{name}: {} frames only in A, {} only in B",
                t.frames_only_a, t.frames_only_b
            ));
        }
        if t.oversized > 0 {
            report.failures.push(format!(
                "{name}: {} frames not compared: over {MAX_DETECTIONS_PER_FRAME} detections",
                t.oversized
            ));
        }
        if t.undecodable > 0 {
            report
                .failures
                .push(format!("{name}: {} messages do not decode", t.undecodable));
        }
        report.topics.insert(name.clone(), t);
    }
    let unmatched: u64 = report
        .topics
        .values()
        .map(|t| t.unmatched_a + t.unmatched_b)
        .sum();
    if unmatched > tol.max_unmatched {
        report.failures.push(format!(
            "{unmatched} detections unmatched (allowed {})",
            tol.max_unmatched
        ));
    }
    report.within_tolerance = report.failures.is_empty();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bag::cdr::Detection2DMsg;
    use crate::runtime::queue::Stamp;

    fn det(class: &str, score: f64, c: (f64, f64), s: (f64, f64)) -> Detection2DMsg {
        Detection2DMsg {
            results: vec![(class.into(), score)],
            center: c,
            theta: 0.0,
            size: s,
            id: String::new(),
        }
    }

    fn frame(dets: Vec<Detection2DMsg>) -> Detection2DArrayMsg {
        Detection2DArrayMsg {
            stamp: Stamp::default(),
            frame_id: String::new(),
            detections: dets,
        }
    }

    #[test]
    fn pairs_by_class_and_iou_and_measures_differences() {
        let a = frame(vec![
            det("person", 0.9, (50.0, 50.0), (20.0, 40.0)),
            det("car", 0.6, (200.0, 100.0), (80.0, 40.0)),
        ]);
        let b = frame(vec![
            det("car", 0.55, (201.0, 100.0), (80.0, 40.0)),
            det("person", 0.9, (50.0, 50.0), (20.0, 40.0)),
            det("dog", 0.3, (10.0, 10.0), (5.0, 5.0)),
        ]);
        let mut t = TopicDiff::default();
        let mut sums = BTreeMap::new();
        compare_frame(&a, &b, &Tolerances::default(), &mut t, &mut sums);
        assert_eq!(t.unmatched_a, 0);
        assert_eq!(t.unmatched_b, 1);
        let car = &t.classes["car"];
        assert_eq!(car.matched, 1);
        assert!((car.max_score_diff - 0.05).abs() < 1e-12);
        assert!((car.max_box_diff_px - 1.0).abs() < 1e-12);
        assert_eq!(t.classes["person"].max_score_diff, 0.0);
        assert_eq!(t.classes["dog"].count_b, 1);
    }

    #[test]
    fn a_frame_over_the_detection_limit_is_counted_not_paired() {
        let many: Vec<_> = (0..=MAX_DETECTIONS_PER_FRAME)
            .map(|i| det("person", 0.5, (i as f64, 0.0), (1.0, 1.0)))
            .collect();
        let a = frame(many.clone());
        let b = frame(many);
        let mut t = TopicDiff::default();
        compare_frame(&a, &b, &Tolerances::default(), &mut t, &mut BTreeMap::new());
        assert_eq!(t.oversized, 1);
        assert!(t.classes.is_empty(), "the frame was paired");
    }

    #[test]
    fn a_different_class_at_the_same_place_is_unmatched() {
        let a = frame(vec![det("person", 0.9, (50.0, 50.0), (20.0, 40.0))]);
        let b = frame(vec![det("dog", 0.9, (50.0, 50.0), (20.0, 40.0))]);
        let mut t = TopicDiff::default();
        compare_frame(&a, &b, &Tolerances::default(), &mut t, &mut BTreeMap::new());
        assert_eq!((t.unmatched_a, t.unmatched_b), (1, 1));
    }

    #[test]
    fn iou_of_disjoint_and_identical_boxes() {
        assert_eq!(iou([0.0, 0.0, 1.0, 1.0], [2.0, 2.0, 3.0, 3.0]), 0.0);
        assert_eq!(iou([0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 2.0, 2.0]), 1.0);
        assert!((iou([0.0, 0.0, 2.0, 2.0], [1.0, 0.0, 3.0, 2.0]) - 1.0 / 3.0).abs() < 1e-12);
    }
}

//! How far two models agree on one frame: detections of the same class paired by IoU, and the
//! share of recent frames on which they disagreed.
//!
//! Pairing is greedy in the primary's order (best score first): each primary detection takes
//! the unused shadow detection of its class with the highest IoU at or above `iou_min` (the
//! lowest index on a tie), so the result depends only on the two lists. A frame disagrees when
//! either side has a detection left without a partner.
//!
//! Contract: [`Matcher::new`] and [`DisagreementWindow::new`] allocate; comparing and pushing
//! allocate nothing, never block and cannot fail. At most the matcher's capacity of shadow
//! detections are paired; any beyond it count as the shadow's alone.

use crate::core::postprocess::{Detection, iou};

/// The outcome of comparing one frame's detections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Agreement {
    /// Pairs found (same class, IoU at or above the minimum).
    pub matched: u32,
    /// Detections of the primary with no partner.
    pub primary_only: u32,
    /// Detections of the shadow with no partner.
    pub shadow_only: u32,
}

impl Agreement {
    /// Whether either side saw something the other did not.
    pub fn disagrees(&self) -> bool {
        self.primary_only > 0 || self.shadow_only > 0
    }
}

/// Pairs two lists of detections without allocating.
#[derive(Debug, Clone)]
pub struct Matcher {
    used: Vec<bool>,
    iou_min: f32,
}

impl Matcher {
    /// A matcher for up to `capacity` shadow detections per frame, pairing at `iou_min`.
    pub fn new(capacity: usize, iou_min: f32) -> Self {
        Self {
            used: vec![false; capacity],
            iou_min,
        }
    }

    /// Pairs `primary` (best score first) with `shadow`.
    pub fn compare(&mut self, primary: &[Detection], shadow: &[Detection]) -> Agreement {
        let considered = shadow.len().min(self.used.len());
        let used = &mut self.used[..considered];
        used.fill(false);
        let mut matched = 0u32;
        for p in primary {
            let mut best: Option<(usize, f32)> = None;
            for (j, s) in shadow[..considered].iter().enumerate() {
                if used[j] || s.class_id != p.class_id {
                    continue;
                }
                let v = iou(&p.bbox, &s.bbox);
                if v >= self.iou_min && best.is_none_or(|(_, b)| v > b) {
                    best = Some((j, v));
                }
            }
            if let Some((j, _)) = best {
                used[j] = true;
                matched += 1;
            }
        }
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Agreement {
            matched,
            primary_only: count(primary.len()).saturating_sub(matched),
            shadow_only: count(shadow.len()).saturating_sub(matched),
        }
    }
}

/// Which of the last `frames` compared frames disagreed (a ring of flags with a running count).
#[derive(Debug, Clone)]
pub struct DisagreementWindow {
    flags: Vec<bool>,
    next: usize,
    filled: usize,
    disagreeing: usize,
}

impl DisagreementWindow {
    /// A window of `frames` frames (at least 1).
    pub fn new(frames: usize) -> Self {
        Self {
            flags: vec![false; frames.max(1)],
            next: 0,
            filled: 0,
            disagreeing: 0,
        }
    }

    /// Adds one frame's outcome, forgetting the oldest when full.
    pub fn push(&mut self, disagrees: bool) {
        if self.filled == self.flags.len() {
            if self.flags[self.next] {
                self.disagreeing -= 1;
            }
        } else {
            self.filled += 1;
        }
        self.flags[self.next] = disagrees;
        if disagrees {
            self.disagreeing += 1;
        }
        self.next = (self.next + 1) % self.flags.len();
    }

    /// Frames in the window, and how many of them disagreed.
    pub fn counts(&self) -> (usize, usize) {
        (self.filled, self.disagreeing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(class_id: u32, score: f32, x: f32) -> Detection {
        Detection {
            class_id,
            score,
            bbox: [x, 10.0, x + 50.0, 60.0],
        }
    }

    #[test]
    fn same_lists_agree_and_differences_are_counted_per_side() {
        let mut m = Matcher::new(8, 0.5);
        let a = [det(0, 0.9, 0.0), det(1, 0.8, 100.0), det(0, 0.7, 200.0)];
        assert_eq!(
            m.compare(&a, &a),
            Agreement {
                matched: 3,
                primary_only: 0,
                shadow_only: 0
            }
        );
        // Another class at the same place, a box moved by 40 of 50 px, one extra.
        let b = [
            det(2, 0.9, 0.0),
            det(1, 0.8, 140.0),
            det(0, 0.7, 201.0),
            det(5, 0.3, 400.0),
        ];
        let r = m.compare(&a, &b);
        assert_eq!(
            r,
            Agreement {
                matched: 1,
                primary_only: 2,
                shadow_only: 3
            }
        );
        assert!(r.disagrees());
        assert_eq!(m.compare(&[], &[]), Agreement::default());
    }

    #[test]
    fn each_shadow_detection_pairs_once_with_the_best_overlap() {
        let mut m = Matcher::new(8, 0.3);
        // Two primary boxes over one shadow box: one pair, one left over.
        let a = [det(0, 0.9, 0.0), det(0, 0.8, 5.0)];
        let b = [det(0, 0.9, 4.0)];
        assert_eq!(
            m.compare(&a, &b),
            Agreement {
                matched: 1,
                primary_only: 1,
                shadow_only: 0
            }
        );
        // Beyond the capacity, shadow detections count as unpaired.
        let mut small = Matcher::new(1, 0.5);
        let r = small.compare(&a[..1], &[det(0, 0.9, 100.0), det(0, 0.8, 0.0)]);
        assert_eq!((r.matched, r.shadow_only), (0, 2));
    }

    #[test]
    fn the_window_forgets_the_oldest_frame() {
        let mut w = DisagreementWindow::new(3);
        for d in [true, false, true] {
            w.push(d);
        }
        assert_eq!(w.counts(), (3, 2));
        w.push(false);
        assert_eq!(w.counts(), (3, 1));
        w.push(false);
        w.push(false);
        assert_eq!(w.counts(), (3, 0));
    }
}

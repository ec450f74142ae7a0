//! The sink side of the live node: results to `Detection2DArray` on each camera's topic (on
//! `lookout-publish`), and statuses to `DiagnosticArray`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::runtime::counters::CameraCounters;
use crate::runtime::deadline::{RosClock, StatsSnapshot, Verdict};
use crate::runtime::health::Status;
use crate::runtime::inference::{Output, OutputSource, ResultTracker};
use crate::runtime::queue::Stamp;

pub(super) fn diagnostic_array(
    statuses: &[Status],
    clock: &RosClock,
    hardware_id: String,
) -> r2r::diagnostic_msgs::msg::DiagnosticArray {
    let mut msg = r2r::diagnostic_msgs::msg::DiagnosticArray::default();
    let stamp = Stamp::from_nanos(clock.now_ns().unwrap_or(0));
    msg.header.stamp.sec = stamp.sec;
    msg.header.stamp.nanosec = stamp.nanosec;
    for s in statuses {
        let mut st = r2r::diagnostic_msgs::msg::DiagnosticStatus {
            level: s.level.as_byte(),
            name: s.name.clone(),
            message: s.message.clone(),
            hardware_id: hardware_id.clone(),
            ..Default::default()
        };
        st.values = s
            .values
            .iter()
            .map(|(k, v)| r2r::diagnostic_msgs::msg::KeyValue {
                key: k.clone(),
                value: v.clone(),
            })
            .collect();
        msg.status.push(st);
    }
    msg
}

/// One camera's debug topics (`diagnostics.debug_topics`).
pub(super) struct DebugTopics {
    /// `~/debug/<camera>/processing_time_ms`.
    pub(super) processing: r2r::Publisher<r2r::std_msgs::msg::Float64>,
    /// `~/debug/<camera>/pipeline_latency_ms`.
    pub(super) latency: r2r::Publisher<r2r::std_msgs::msg::Float64>,
    /// `~/debug/<camera>/image_markers`: one `visualization_msgs/ImageMarker` per box.
    pub(super) markers: r2r::Publisher<r2r::visualization_msgs::msg::ImageMarker>,
    /// Markers shown for the previous frame (those past this frame's count are removed).
    pub(super) shown: std::cell::Cell<usize>,
}

/// The shadow model's results and topics (`shadow.publish`).
pub(super) struct ShadowTopics {
    pub(super) source: OutputSource,
    pub(super) publishers: Vec<r2r::Publisher<r2r::vision_msgs::msg::Detection2DArray>>,
    pub(super) class_names: Vec<String>,
}

/// How long the publisher waits for a primary result before looking at the shadow's.
const SHADOW_POLL: Duration = Duration::from_millis(10);

/// The publishing thread's state.
pub(super) struct Publisher {
    pub(super) publishers: Vec<r2r::Publisher<r2r::vision_msgs::msg::Detection2DArray>>,
    pub(super) shadow: Option<ShadowTopics>,
    pub(super) debug: Vec<DebugTopics>,
    pub(super) counters: Vec<Arc<CameraCounters>>,
    pub(super) class_names: Vec<String>,
    pub(super) stats_tx: crossbeam_channel::Sender<(usize, StatsSnapshot)>,
    pub(super) period: Duration,
    pub(super) clock: RosClock,
    /// Whether results are published (the lifecycle's active state); otherwise they are
    /// judged and dropped.
    pub(super) active: Arc<std::sync::atomic::AtomicBool>,
}

impl Publisher {
    /// `Output` -> deadline verdict -> `Detection2DArray` on the camera's topic; statistics to
    /// the executor once a period. Ends when the inference loop has stopped and all is drained.
    pub(super) fn run(self, source: OutputSource, mut tracker: ResultTracker) {
        let mut msgs: Vec<r2r::vision_msgs::msg::Detection2DArray> =
            self.publishers.iter().map(|_| Default::default()).collect();
        let mut next_stats = Instant::now() + self.period;
        let mut shadow_msg = r2r::vision_msgs::msg::Detection2DArray::default();
        loop {
            let mut wait = next_stats
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1));
            if let Some(shadow) = &self.shadow {
                wait = wait.min(SHADOW_POLL);
                while let Some(out) = shadow.source.try_recv() {
                    if self.active.load(Ordering::Acquire) {
                        shadow.publish(&mut shadow_msg, &out, &self.counters);
                    }
                    shadow.source.recycle(out);
                }
            }
            match source.recv_timeout(wait) {
                Ok(out) => {
                    self.publish(&mut msgs, &mut tracker, &out);
                    source.recycle(out);
                }
                Err(true) => break,
                Err(false) => {}
            }
            let now = Instant::now();
            if now >= next_stats {
                next_stats = now + self.period;
                for camera in 0..tracker.cameras() {
                    // A full channel means the executor has not read the last ones: skip.
                    let _ = self
                        .stats_tx
                        .try_send((camera, tracker.snapshot(camera, now)));
                }
            }
        }
    }

    fn publish(
        &self,
        msgs: &mut [r2r::vision_msgs::msg::Detection2DArray],
        tracker: &mut ResultTracker,
        out: &Output,
    ) {
        let camera = out.camera;
        let (Some(msg), Some(publisher), Some(counters)) = (
            msgs.get_mut(camera),
            self.publishers.get(camera),
            self.counters.get(camera),
        ) else {
            return;
        };
        if tracker.judge(out, Instant::now()) == Verdict::LateDrop {
            return;
        }
        if !self.active.load(Ordering::Acquire) {
            return;
        }
        fill_message(msg, out, &self.class_names);
        match publisher.publish(msg) {
            Ok(()) => {
                counters.published.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                counters.dropped_output.fetch_add(1, Ordering::Relaxed);
                if counters.first_publish_error() {
                    tracing::error!(error = %e, "publishing detections failed (further failures are counted, not logged)");
                }
            }
        }
        if let Some(debug) = self.debug.get(camera) {
            let processing_ms = out
                .finished
                .saturating_duration_since(out.dequeued)
                .as_secs_f64()
                * 1e3;
            let _ = debug.processing.publish(&r2r::std_msgs::msg::Float64 {
                data: processing_ms,
            });
            if let Some(now) = self.clock.now_ns() {
                let age_ms = (now - out.stamp.as_nanos()).max(0) as f64 / 1e6;
                let _ = debug
                    .latency
                    .publish(&r2r::std_msgs::msg::Float64 { data: age_ms });
            }
            publish_markers(debug, msg, out);
        }
    }
}

impl ShadowTopics {
    /// Publishes one shadow result on its camera's shadow topic (a failure is counted as a
    /// dropped shadow output).
    fn publish(
        &self,
        msg: &mut r2r::vision_msgs::msg::Detection2DArray,
        out: &Output,
        counters: &[Arc<CameraCounters>],
    ) {
        let (Some(publisher), Some(c)) =
            (self.publishers.get(out.camera), counters.get(out.camera))
        else {
            return;
        };
        fill_message(msg, out, &self.class_names);
        if publisher.publish(msg).is_err() {
            c.shadow_dropped_output.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One `ImageMarker` per box (a closed polygon in its class's colour, id = its index, namespace
/// the frame's `frame_id`), then a REMOVE for every id the previous frame showed beyond this
/// frame's count. A debug topic: it allocates the markers' points.
fn publish_markers(
    debug: &DebugTopics,
    msg: &r2r::vision_msgs::msg::Detection2DArray,
    out: &Output,
) {
    use r2r::visualization_msgs::msg::ImageMarker;
    let color = |c: [u8; 3], a: f32| r2r::std_msgs::msg::ColorRGBA {
        r: f32::from(c[0]) / 255.0,
        g: f32::from(c[1]) / 255.0,
        b: f32::from(c[2]) / 255.0,
        a,
    };
    let point = |x: f32, y: f32| r2r::geometry_msgs::msg::Point {
        x: f64::from(x),
        y: f64::from(y),
        z: 0.0,
    };
    let mut marker = ImageMarker {
        header: msg.header.clone(),
        ns: "lookout".into(),
        scale: 2.0,
        ..Default::default()
    };
    for (i, d) in out.detections().iter().enumerate() {
        let [x1, y1, x2, y2] = d.bbox;
        marker.id = i32::try_from(i).unwrap_or(i32::MAX);
        marker.type_ = ImageMarker::POLYGON as i32;
        marker.action = ImageMarker::ADD as i32;
        marker.outline_color = color(crate::charts::boxes::class_color(d.class_id), 1.0);
        marker.points = vec![point(x1, y1), point(x2, y1), point(x2, y2), point(x1, y2)];
        let _ = debug.markers.publish(&marker);
    }
    let shown = out.detections().len();
    marker.points.clear();
    marker.action = ImageMarker::REMOVE as i32;
    for i in shown..debug.shown.get() {
        marker.id = i32::try_from(i).unwrap_or(i32::MAX);
        let _ = debug.markers.publish(&marker);
    }
    debug.shown.set(shown);
}

/// Writes one frame's detections into a reused message: the array's header and every
/// detection's header are the input frame's header, unchanged.
fn fill_message(
    msg: &mut r2r::vision_msgs::msg::Detection2DArray,
    out: &Output,
    class_names: &[String],
) {
    msg.header.stamp.sec = out.stamp.sec;
    msg.header.stamp.nanosec = out.stamp.nanosec;
    msg.header.frame_id.clear();
    msg.header.frame_id.push_str(out.frame_id());
    msg.detections
        .resize_with(out.detections().len(), Default::default);
    for (det, d) in msg.detections.iter_mut().zip(out.detections()) {
        det.header = msg.header.clone();
        det.id.clear();
        let (cx, cy) = d.center();
        let (w, h) = d.size();
        det.bbox.center.position.x = f64::from(cx);
        det.bbox.center.position.y = f64::from(cy);
        det.bbox.center.theta = 0.0;
        det.bbox.size_x = f64::from(w);
        det.bbox.size_y = f64::from(h);
        det.results.resize_with(1, Default::default);
        let hyp = &mut det.results[0].hypothesis;
        hyp.class_id.clear();
        hyp.class_id.push_str(
            class_names
                .get(d.class_id as usize)
                .map_or("?", String::as_str),
        );
        hyp.score = f64::from(d.score);
    }
}

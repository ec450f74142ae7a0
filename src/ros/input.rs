//! The source side of the live node: one subscription per camera, each message copied once into
//! its camera's queue, and the once-a-second graph check of the publishers' QoS.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use futures::Stream;
use r2r::NativeMsg as WrappedNativeMsg;

use crate::config::{Durability, ImageKind, QosConfig, Reliability};
use crate::runtime::counters::CameraCounters;
use crate::runtime::queue::{FrameProducer, RawHeader, Stamp};

/// Reads a `rosidl_runtime_c__String` as UTF-8 (lossy characters make it invalid: empty).
///
/// # Safety
/// `s` must come from a valid message: `data` points to `size` initialised bytes (or is null
/// with size 0) that live as long as the message.
unsafe fn c_str(s: &r2r_rcl::rosidl_runtime_c__String) -> &str {
    if s.data.is_null() || s.size == 0 {
        return "";
    }
    // SAFETY: guaranteed by the caller (rosidl string invariant).
    let bytes = unsafe { std::slice::from_raw_parts(s.data as *const u8, s.size) };
    std::str::from_utf8(bytes).unwrap_or("")
}

/// Reads a `rosidl_runtime_c__uint8__Sequence`.
///
/// # Safety
/// As for [`c_str`]: `data` points to `size` initialised bytes owned by the message.
unsafe fn c_bytes(s: &r2r_rcl::rosidl_runtime_c__uint8__Sequence) -> &[u8] {
    if s.data.is_null() || s.size == 0 {
        return &[];
    }
    // SAFETY: guaranteed by the caller (rosidl sequence invariant).
    unsafe { std::slice::from_raw_parts(s.data, s.size) }
}

type RawStream = Box<dyn Stream<Item = WrappedNativeMsg<r2r::sensor_msgs::msg::Image>> + Unpin>;
type CompressedStream =
    Box<dyn Stream<Item = WrappedNativeMsg<r2r::sensor_msgs::msg::CompressedImage>> + Unpin>;

pub(super) enum Subscription {
    Raw(RawStream),
    Compressed(CompressedStream),
}

pub(super) struct CameraInput {
    pub(super) name: String,
    pub(super) topic: String,
    pub(super) kind: ImageKind,
    pub(super) qos: QosConfig,
    /// `None` while the node is not active (unsubscribed).
    pub(super) subscription: Option<Subscription>,
    pub(super) producer: FrameProducer,
    pub(super) counters: Arc<CameraCounters>,
    pub(super) incompatible_seen: HashSet<[u8; 24]>,
    pub(super) warned_no_publisher: bool,
}

pub(super) fn poll_once<S: Stream + Unpin>(s: &mut S, cx: &mut TaskContext<'_>) -> Option<S::Item> {
    match Pin::new(s).poll_next(cx) {
        Poll::Ready(Some(item)) => Some(item),
        _ => None,
    }
}

impl CameraInput {
    /// Moves every message r2r has taken into the ring (one copy each).
    pub(super) fn drain(&mut self, cx: &mut TaskContext<'_>) {
        loop {
            let received = Instant::now();
            let Some(subscription) = self.subscription.as_mut() else {
                return;
            };
            let result = match subscription {
                Subscription::Raw(s) => {
                    let Some(msg) = poll_once(s, cx) else { break };
                    // SAFETY: the strings and the byte sequence belong to `msg`, a valid message
                    // taken from rmw, which outlives these borrows.
                    let (frame_id, encoding, data) = unsafe {
                        (
                            c_str(&msg.header.frame_id),
                            c_str(&msg.encoding),
                            c_bytes(&msg.data),
                        )
                    };
                    let stamp = Stamp {
                        sec: msg.header.stamp.sec,
                        nanosec: msg.header.stamp.nanosec,
                    };
                    self.producer.push_raw(
                        received,
                        stamp,
                        frame_id,
                        RawHeader {
                            width: msg.width,
                            height: msg.height,
                            step_bytes: msg.step as usize,
                            encoding,
                            big_endian: msg.is_bigendian != 0,
                        },
                        data,
                    )
                }
                Subscription::Compressed(s) => {
                    let Some(msg) = poll_once(s, cx) else { break };
                    // SAFETY: as above.
                    let (frame_id, format, data) = unsafe {
                        (
                            c_str(&msg.header.frame_id),
                            c_str(&msg.format),
                            c_bytes(&msg.data),
                        )
                    };
                    let stamp = Stamp {
                        sec: msg.header.stamp.sec,
                        nanosec: msg.header.stamp.nanosec,
                    };
                    self.producer
                        .push_compressed(received, stamp, frame_id, format, data)
                }
            };
            if let Err(rejected) = result {
                // `push_*` counted it; log the first of each kind.
                crate::runtime::counters::warn_bad_input(
                    &self.name,
                    &rejected.error,
                    rejected.first_of_kind,
                );
            }
        }
    }

    /// Compares the QoS of the topic's publishers with ours (once a second).
    pub(super) fn check_graph(
        &mut self,
        node: &r2r::Node,
        resolved_topic: &str,
        since_start: Duration,
    ) {
        let Ok(publishers) = node.get_publishers_info_by_topic(resolved_topic, false) else {
            return;
        };
        if publishers.is_empty() {
            if since_start > Duration::from_secs(5) && !self.warned_no_publisher {
                self.warned_no_publisher = true;
                tracing::warn!(camera = %self.name, topic = resolved_topic, "no publisher on the camera topic yet (check the topic name, remappings and namespace)");
            }
            return;
        }
        let mut incompatible = 0u64;
        for p in &publishers {
            let mut reasons = Vec::new();
            if p.topic_type != self.kind.ros_type() {
                reasons.push(format!(
                    "type {} (expected {})",
                    p.topic_type,
                    self.kind.ros_type()
                ));
            }
            if self.qos.reliability == Reliability::Reliable
                && p.qos_profile.reliability == r2r::qos::ReliabilityPolicy::BestEffort
            {
                reasons.push("publisher is best_effort, subscription is reliable".to_string());
            }
            if self.qos.durability == Durability::TransientLocal
                && p.qos_profile.durability == r2r::qos::DurabilityPolicy::Volatile
            {
                reasons.push("publisher is volatile, subscription is transient_local".to_string());
            }
            if reasons.is_empty() {
                continue;
            }
            incompatible += 1;
            let mut gid = [0u8; 24];
            let n = gid.len().min(p.endpoint_gid.len());
            gid[..n].copy_from_slice(&p.endpoint_gid[..n]);
            if self.incompatible_seen.insert(gid) {
                self.counters
                    .qos_incompatible_events
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(camera = %self.name, topic = resolved_topic, publisher = %format!("{}/{}", p.node_namespace.trim_end_matches('/'), p.node_name), "incompatible publisher, its frames will not arrive: {}", reasons.join("; "));
            }
        }
        self.counters
            .qos_incompatible
            .store(incompatible, Ordering::Relaxed);
    }
}

//! The ROS 2 adapter (r2r): the only module that knows ROS. It turns subscriptions into frames on
//! the ingest rings and [`Output`]s into `vision_msgs/msg/Detection2DArray`.
//!
//! Threads (all named):
//!
//! | thread | role | blocks on |
//! |---|---|---|
//! | `main` (ROS executor) | `spin_once`, copies each message once into a frame slot, graph/QoS checks, signals | `rcl_wait` (20 ms max) |
//! | `lookout-infer` | the [`InferenceLoop`] | ONNX Runtime `Run`; parks when idle |
//! | `lookout-publish` | builds and publishes `Detection2DArray` | the bounded output channel |
//!
//! Subscriptions use `subscribe_native`: the middleware deserialises into the C message and the
//! frame bytes are copied once from it into a preallocated slot. Publishing happens on its own
//! thread through r2r's publisher (an atomic weak-pointer upgrade and `rcl_publish`), so the
//! inference thread shares no lock with the ROS side.
//!
//! r2r has no QoS event callbacks (incompatible QoS, deadline missed). Instead, once a second the
//! executor thread reads the QoS of every publisher on each camera topic from the ROS graph,
//! logs each incompatible one once and counts it (`qos_incompatible`), and says when a camera
//! topic has no publisher at all.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use futures::Stream;
use r2r::{NativeMsg as WrappedNativeMsg, QosProfile};

use crate::config::names::resolve_topic;
use crate::config::{
    Config, ConfigError, Durability, ImageKind, ParamValue, QosConfig, Reliability,
};
use crate::runtime::deadline::{RosClock, StatsSnapshot, Verdict};
use crate::runtime::health::Status;
use crate::runtime::inference::{Output, OutputSource, ResultTracker};
use crate::runtime::queue::{CameraCounters, CounterSnapshot, FrameProducer, RawHeader, Stamp};
use crate::runtime::{Runtime, RuntimeError, Timing};

/// Why the node could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A ROS call failed.
    #[error("ROS 2: {what}: {reason}")]
    Ros {
        /// What was attempted.
        what: String,
        /// r2r's error.
        reason: String,
    },
    /// The parameters are invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The runtime (model, engine, threads) could not start.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// A thread could not be started or ended abnormally.
    #[error("thread {name}: {reason}")]
    Thread {
        /// Thread name.
        name: &'static str,
        /// What happened.
        reason: String,
    },
}

fn ros_err(what: impl Into<String>) -> impl FnOnce(r2r::Error) -> NodeError {
    let what = what.into();
    move |e| NodeError::Ros {
        what,
        reason: e.to_string(),
    }
}

/// How `lookout run` was asked to configure itself.
#[derive(Debug, Clone, Default)]
pub struct NodeOptions {
    /// `--params-file` given to lookout itself (outside `--ros-args`).
    pub params_file: Option<PathBuf>,
    /// Whether `--ros-args` carried a `--params-file` (then no default file is read).
    pub ros_params_file: bool,
}

/// Counters of one camera at shutdown.
#[derive(Debug, Clone)]
pub struct CameraSummary {
    /// Camera name.
    pub name: String,
    /// Its counters.
    pub counters: CounterSnapshot,
}

/// What the node did, reported at shutdown.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// Per camera.
    pub cameras: Vec<CameraSummary>,
    /// Execution provider used.
    pub execution_provider: &'static str,
}

/// Logger name of the node, once created (the tracing bridge writes to it).
static ROS_LOGGER: OnceLock<String> = OnceLock::new();

/// A `tracing` layer that forwards warnings and errors to the ROS log (and so to /rosout) under
/// the node's logger name. Events before the node exists go to the terminal only.
pub struct RosLogLayer;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for RosLogLayer {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let level = *event.metadata().level();
        if level > tracing::Level::WARN {
            return;
        }
        let Some(logger) = ROS_LOGGER.get() else {
            return;
        };
        let mut text = String::new();
        event.record(&mut FieldText(&mut text));
        let severity = if level == tracing::Level::ERROR {
            r2r::LogSeverity::Error
        } else {
            r2r::LogSeverity::Warn
        };
        let meta = event.metadata();
        r2r::log(
            &text,
            logger,
            meta.file().unwrap_or("?"),
            meta.line().unwrap_or(0),
            severity,
        );
    }
}

struct FieldText<'a>(&'a mut String);

impl tracing::field::Visit for FieldText<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write;
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        use std::fmt::Write;
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}

fn qos_profile(q: &QosConfig) -> QosProfile {
    let mut p = QosProfile::default();
    p.history = r2r::qos::HistoryPolicy::KeepLast;
    p.depth = q.depth;
    p.reliability = match q.reliability {
        Reliability::BestEffort => r2r::qos::ReliabilityPolicy::BestEffort,
        Reliability::Reliable => r2r::qos::ReliabilityPolicy::Reliable,
        Reliability::SystemDefault => r2r::qos::ReliabilityPolicy::SystemDefault,
    };
    p.durability = match q.durability {
        Durability::Volatile => r2r::qos::DurabilityPolicy::Volatile,
        Durability::TransientLocal => r2r::qos::DurabilityPolicy::TransientLocal,
        Durability::SystemDefault => r2r::qos::DurabilityPolicy::SystemDefault,
    };
    p
}

fn param_to_json(v: &r2r::ParameterValue) -> Option<ParamValue> {
    use r2r::ParameterValue as P;
    Some(match v {
        P::NotSet => return None,
        P::Bool(b) => ParamValue::from(*b),
        P::Integer(i) => ParamValue::from(*i),
        P::Double(d) => ParamValue::from(*d),
        P::String(s) => ParamValue::from(s.clone()),
        P::BoolArray(a) => ParamValue::from(a.clone()),
        P::ByteArray(a) => ParamValue::from(a.clone()),
        P::IntegerArray(a) => ParamValue::from(a.clone()),
        P::DoubleArray(a) => ParamValue::from(a.clone()),
        P::StringArray(a) => ParamValue::from(a.clone()),
    })
}

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

enum Subscription {
    Raw(RawStream),
    Compressed(CompressedStream),
}

struct CameraInput {
    name: String,
    topic: String,
    kind: ImageKind,
    qos: QosConfig,
    subscription: Subscription,
    producer: FrameProducer,
    counters: Arc<CameraCounters>,
    incompatible_seen: HashSet<[u8; 24]>,
    warned_no_publisher: bool,
}

fn poll_once<S: Stream + Unpin>(s: &mut S, cx: &mut TaskContext<'_>) -> Option<S::Item> {
    match Pin::new(s).poll_next(cx) {
        Poll::Ready(Some(item)) => Some(item),
        _ => None,
    }
}

impl CameraInput {
    /// Moves every message r2r has taken into the ring (one copy each).
    fn drain(&mut self, cx: &mut TaskContext<'_>) {
        loop {
            let received = Instant::now();
            let result = match &mut self.subscription {
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
                crate::runtime::queue::warn_bad_input(
                    &self.name,
                    &rejected.error,
                    rejected.first_of_kind,
                );
            }
        }
    }

    /// Compares the QoS of the topic's publishers with ours (once a second).
    fn check_graph(&mut self, node: &r2r::Node, resolved_topic: &str, since_start: Duration) {
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

/// Reads the configuration: lookout's own `--params-file` (or the default file when no params
/// file was given at all), then the node's ROS parameters (`--ros-args --params-file`, `-p`).
fn load_config(node: &r2r::Node, options: &NodeOptions) -> Result<Config, NodeError> {
    let fq = node.fully_qualified_name().map_err(ros_err("node name"))?;
    let mut params: Vec<(String, ParamValue)> = Vec::new();
    let base = match &options.params_file {
        Some(p) => Some(p.clone()),
        None if !options.ros_params_file => Some(crate::config::resolve_path(Path::new(
            crate::config::DEFAULT_PARAMS_FILE,
        ))),
        None => None,
    };
    if let Some(path) = base {
        params.extend(Config::read_parameters_file(&path, &fq)?);
    }
    let ros_params = node
        .params
        .lock()
        .map_err(|_| NodeError::Thread {
            name: "main",
            reason: "parameter lock poisoned".into(),
        })?
        .iter()
        .filter_map(|(k, p)| param_to_json(&p.value).map(|v| (k.clone(), v)))
        .collect::<Vec<_>>();
    params.extend(ros_params);
    Ok(Config::from_parameters(&params)?)
}

/// Runs the node until `stop` is set (SIGINT/SIGTERM), then shuts down in order and returns the
/// counters. Start-up errors (parameters, model, ONNX Runtime, ROS) are returned before any
/// thread starts.
pub fn run(options: &NodeOptions, stop: Arc<AtomicBool>) -> Result<RunSummary, NodeError> {
    let ctx = r2r::Context::create().map_err(ros_err("initialise rcl"))?;
    let mut node = r2r::Node::create(ctx, "lookout", "").map_err(ros_err("create node"))?;
    let _ = ROS_LOGGER.set(node.logger().to_string());
    let namespace = node.namespace().map_err(ros_err("node namespace"))?;
    let node_name = node.name().map_err(ros_err("node name"))?;

    let config = load_config(&node, options)?;
    if config.use_sim_time {
        node.get_time_source()
            .enable_sim_time(&mut node)
            .map_err(ros_err("enable use_sim_time"))?;
    }
    // ROS time for frame ages: the system clock, or the latest /clock with use_sim_time.
    let sim_time_ns = Arc::new(AtomicI64::new(0));
    let ros_clock = if config.use_sim_time {
        RosClock::Sim(Arc::clone(&sim_time_ns))
    } else {
        RosClock::System
    };
    let mut runtime = Runtime::new(&config, Timing::Live, ros_clock.clone())?;
    let engine_info = runtime.engine().clone();
    let model = runtime.model().clone();
    tracing::info!(model = %model.name, sha256 = %model.sha256, execution_provider = engine_info.execution_provider, io_memory = engine_info.io_memory, "model loaded");
    let infer_thread = runtime.start(&config.realtime.inference, Duration::from_millis(50))?;

    // The source (subscriptions into the runtime's queues) and the sink (publishers), camera by
    // camera.
    let mut inputs = Vec::new();
    let mut publishers = Vec::new();
    let producers = runtime.take_inputs();
    for ((index, (name, cam)), mut producer) in config.camera_list().enumerate().zip(producers) {
        producer.set_wake(infer_thread.clone());
        let qos = qos_profile(&cam.input_qos());
        let subscription = match cam.kind {
            ImageKind::Image => Subscription::Raw(Box::new(
                node.subscribe_native::<r2r::sensor_msgs::msg::Image>(&cam.topic, qos)
                    .map_err(ros_err(format!("subscribe to {}", cam.topic)))?,
            )),
            ImageKind::Compressed => Subscription::Compressed(Box::new(
                node.subscribe_native::<r2r::sensor_msgs::msg::CompressedImage>(&cam.topic, qos)
                    .map_err(ros_err(format!("subscribe to {}", cam.topic)))?,
            )),
        };
        let out_topic = config.detections_topic(name);
        let publisher = node
            .create_publisher::<r2r::vision_msgs::msg::Detection2DArray>(
                &out_topic,
                qos_profile(&cam.detections_qos()),
            )
            .map_err(ros_err(format!("advertise {out_topic}")))?;
        tracing::info!(camera = name, input = %resolve_topic(&namespace, &node_name, &cam.topic), output = %resolve_topic(&namespace, &node_name, &out_topic), "camera ready");
        publishers.push(publisher);
        inputs.push(CameraInput {
            name: name.to_string(),
            topic: cam.topic.clone(),
            kind: cam.kind,
            qos: cam.input_qos(),
            subscription,
            producer,
            counters: Arc::clone(&runtime.counters()[index]),
            incompatible_seen: HashSet::new(),
            warned_no_publisher: false,
        });
    }

    let mut clock_sub = if config.use_sim_time {
        let mut q = QosProfile::default();
        q.depth = 1;
        Some(Box::new(
            node.subscribe_native::<r2r::rosgraph_msgs::msg::Clock>("/clock", q)
                .map_err(ros_err("subscribe to /clock"))?,
        ))
    } else {
        None
    };

    // Diagnostics and debug topics.
    let diag_pub = node
        .create_publisher::<r2r::diagnostic_msgs::msg::DiagnosticArray>(
            "/diagnostics",
            QosProfile::default(),
        )
        .map_err(ros_err("advertise /diagnostics"))?;
    let mut debug_pubs = Vec::new();
    if config.diagnostics.debug_topics {
        for (name, _) in config.camera_list() {
            let mut mk = |what: &str| {
                node.create_publisher::<r2r::std_msgs::msg::Float64>(
                    &format!("~/debug/{name}/{what}"),
                    QosProfile::default(),
                )
                .map_err(ros_err(format!("advertise ~/debug/{name}/{what}")))
            };
            debug_pubs.push((mk("processing_time_ms")?, mk("pipeline_latency_ms")?));
        }
    }
    let period = Duration::from_secs_f64(config.diagnostics.period_ms / 1000.0);
    let (stats_tx, stats_rx) =
        crossbeam_channel::bounded::<(usize, StatsSnapshot)>(4 * inputs.len().max(1));
    let publisher = Publisher {
        publishers,
        debug: debug_pubs,
        counters: runtime.counters().to_vec(),
        class_names: model.class_names.clone(),
        stats_tx,
        period,
        clock: ros_clock.clone(),
    };
    runtime.spawn_sink(
        "lookout-publish",
        &config.realtime.publisher,
        move |results, tracker| publisher.run(results, tracker),
    )?;

    // The executor: this thread.
    crate::runtime::realtime::apply("main", &config.realtime.executor);
    let resolved: Vec<String> = inputs
        .iter()
        .map(|i| resolve_topic(&namespace, &node_name, &i.topic))
        .collect();
    let waker = futures::task::noop_waker();
    let mut cx = TaskContext::from_waker(&waker);
    let started = Instant::now();
    let mut next_graph_check = started;
    let mut next_report = started + period;
    let mut gone = None;
    tracing::info!(cameras = inputs.len(), "lookout running");
    while !stop.load(Ordering::Relaxed) {
        // Supervision: a worker that ended while the node runs leaves it headless.
        if let Some(name) = runtime.first_gone() {
            gone = Some(name);
            break;
        }
        node.spin_once(Duration::from_millis(20));
        for input in &mut inputs {
            input.drain(&mut cx);
        }
        if let Some(sub) = clock_sub.as_mut() {
            while let Some(msg) = poll_once(sub, &mut cx) {
                let ns = i64::from(msg.clock.sec) * 1_000_000_000 + i64::from(msg.clock.nanosec);
                sim_time_ns.store(ns.max(1), Ordering::Relaxed);
            }
        }
        while let Ok((camera, snapshot)) = stats_rx.try_recv() {
            runtime.health_mut().set_stats(camera, snapshot);
        }
        let now = Instant::now();
        if now >= next_graph_check {
            next_graph_check = now + Duration::from_secs(1);
            for (input, topic) in inputs.iter_mut().zip(&resolved) {
                input.check_graph(&node, topic, now - started);
            }
        }
        if now >= next_report {
            next_report = now + period;
            let statuses = runtime.report_health(now);
            let msg = diagnostic_array(
                &statuses,
                &ros_clock,
                node.fully_qualified_name().unwrap_or_default(),
            );
            if let Err(e) = diag_pub.publish(&msg) {
                tracing::warn!(error = %e, "cannot publish /diagnostics");
            }
        }
    }

    // Shutdown: the inference loop stops, the publisher drains what is left.
    if let Err(RuntimeError::WorkerDied { thread, reason }) = runtime.stop(gone) {
        tracing::error!(thread, reason = %reason, "worker thread died; the node stops (exit status 1) so that it can be respawned");
        let status = Status {
            name: "lookout: supervision".into(),
            level: crate::runtime::health::Level::Error,
            message: format!("worker thread {thread} died ({reason}); node exiting"),
            values: vec![
                ("thread".into(), thread.into()),
                ("reason".into(), reason.clone()),
            ],
        };
        let msg = diagnostic_array(
            std::slice::from_ref(&status),
            &ros_clock,
            node.fully_qualified_name().unwrap_or_default(),
        );
        if let Err(e) = diag_pub.publish(&msg) {
            tracing::warn!(error = %e, "cannot publish /diagnostics");
        }
        // Let the last /diagnostics message leave before the process goes.
        node.spin_once(Duration::from_millis(50));
        return Err(NodeError::Thread {
            name: thread,
            reason,
        });
    }
    Ok(RunSummary {
        cameras: inputs
            .iter()
            .map(|i| CameraSummary {
                name: i.name.clone(),
                counters: i.counters.snapshot(),
            })
            .collect(),
        execution_provider: engine_info.execution_provider,
    })
}

fn diagnostic_array(
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

/// The publishing thread's state.
struct Publisher {
    publishers: Vec<r2r::Publisher<r2r::vision_msgs::msg::Detection2DArray>>,
    debug: Vec<(
        r2r::Publisher<r2r::std_msgs::msg::Float64>,
        r2r::Publisher<r2r::std_msgs::msg::Float64>,
    )>,
    counters: Vec<Arc<CameraCounters>>,
    class_names: Vec<String>,
    stats_tx: crossbeam_channel::Sender<(usize, StatsSnapshot)>,
    period: Duration,
    clock: RosClock,
}

impl Publisher {
    /// `Output` -> deadline verdict -> `Detection2DArray` on the camera's topic; statistics to
    /// the executor once a period. Ends when the inference loop has stopped and all is drained.
    fn run(self, source: OutputSource, mut tracker: ResultTracker) {
        let mut msgs: Vec<r2r::vision_msgs::msg::Detection2DArray> =
            self.publishers.iter().map(|_| Default::default()).collect();
        let mut next_stats = Instant::now() + self.period;
        loop {
            let wait = next_stats
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1));
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
        if let Some((processing, latency)) = self.debug.get(camera) {
            let processing_ms = out
                .finished
                .saturating_duration_since(out.dequeued)
                .as_secs_f64()
                * 1e3;
            let _ = processing.publish(&r2r::std_msgs::msg::Float64 {
                data: processing_ms,
            });
            if let Some(now) = self.clock.now_ns() {
                let age_ms = (now - out.stamp.as_nanos()).max(0) as f64 / 1e6;
                let _ = latency.publish(&r2r::std_msgs::msg::Float64 { data: age_ms });
            }
        }
    }
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

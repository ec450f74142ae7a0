//! The ROS 2 adapter (r2r): the only module that knows ROS. It turns subscriptions into frames on
//! the ingest rings and [`Output`](crate::runtime::inference::Output)s into `vision_msgs/msg/Detection2DArray`.
//!
//! Threads (all named):
//!
//! | thread | role | blocks on |
//! |---|---|---|
//! | `main` (ROS executor) | `spin_once`, copies each message once into a frame slot, graph/QoS checks, signals | `rcl_wait` (20 ms max) |
//! | `lookout-infer` | the [`InferenceLoop`](crate::runtime::inference::InferenceLoop) | ONNX Runtime `Run`; parks when idle |
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
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::task::Context as TaskContext;
use std::time::{Duration, Instant};

use r2r::QosProfile;

use crate::config::locate::Origin;
use crate::config::names::resolve_topic;
use crate::config::{
    Config, ConfigError, Durability, ImageKind, ParamValue, QosConfig, Reliability,
};
use crate::runtime::counters::CounterSnapshot;
use crate::runtime::deadline::{RosClock, StatsSnapshot};
use crate::runtime::health::Status;
use crate::runtime::{Runtime, RuntimeError, Timing};

mod input;
mod log;
mod publish;

use input::{CameraInput, Subscription, poll_once};
pub use log::RosLogLayer;
use publish::{Publisher, diagnostic_array};

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

/// Reads the configuration: lookout's own `--params-file` (or the default file when no params
/// file was given at all), then the node's ROS parameters (`--ros-args --params-file`, `-p`).
fn load_config(node: &r2r::Node, options: &NodeOptions) -> Result<Config, NodeError> {
    let fq = node.fully_qualified_name().map_err(ros_err("node name"))?;
    let mut params: Vec<(String, ParamValue)> = Vec::new();
    // Paths in the ROS parameters were named by the user, like those of a named params file.
    let (base, origin) = match &options.params_file {
        Some(p) => {
            let (path, origin) = crate::config::params_file(Some(p));
            (Some(path), origin)
        }
        None if !options.ros_params_file => {
            let (path, origin) = crate::config::params_file(None);
            (Some(path), origin)
        }
        None => (None, Origin::User),
    };
    if let Some(path) = &base {
        params.extend(Config::read_parameters_file(path, &fq)?);
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
    // A `model` set as a ROS parameter (`-p model:=...`, the launch file) was named by the user.
    let model_from_ros = ros_params.iter().any(|(k, _)| k == "model");
    params.extend(ros_params);
    let mut config = Config::from_parameters(&params)?;
    config.locate_files(if model_from_ros { Origin::User } else { origin });
    Ok(config)
}

/// SIGHUP: reads the parameters again; a `model` other than the running one is asked for (a
/// refused package is reported by the runtime's swap outcome). Other changed parameters need a
/// restart, and say so.
fn reload_model(
    node: &r2r::Node,
    options: &NodeOptions,
    config: &Config,
    running_model: &mut PathBuf,
    runtime: &Runtime,
) {
    let fresh = match load_config(node, options) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "SIGHUP: the parameters do not load; the running model stays");
            return;
        }
    };
    let mut others = fresh.clone();
    others.model.clone_from(&config.model);
    if others != *config {
        tracing::warn!(
            "SIGHUP: parameters other than `model` changed; they take effect at the next start"
        );
    }
    if fresh.model == *running_model {
        tracing::info!(manifest = %fresh.model.display(), "SIGHUP: `model` unchanged (a package replaced in place is loaded again)");
    }
    match runtime.request_model(fresh.model.clone()) {
        Ok(()) => {
            tracing::info!(manifest = %fresh.model.display(), "SIGHUP: loading the model in the background");
            *running_model = fresh.model;
        }
        Err(e) => tracing::error!(error = %e, "SIGHUP: the model is not reloaded"),
    }
}

/// Runs the node until `stop` is set (SIGINT/SIGTERM), then shuts down in order and returns the
/// counters. Start-up errors (parameters, model, ONNX Runtime, ROS) are returned before any
/// thread starts.
pub fn run(options: &NodeOptions, stop: Arc<AtomicBool>) -> Result<RunSummary, NodeError> {
    let ctx = r2r::Context::create().map_err(ros_err("initialise rcl"))?;
    let mut node = r2r::Node::create(ctx, "lookout", "").map_err(ros_err("create node"))?;
    let _ = log::ROS_LOGGER.set(node.logger().to_string());
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
    runtime.enable_model_swap(&config);
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
            let (processing, latency) = (mk("processing_time_ms")?, mk("pipeline_latency_ms")?);
            let markers = node
                .create_publisher::<r2r::visualization_msgs::msg::ImageMarker>(
                    &format!("~/debug/{name}/image_markers"),
                    QosProfile::default(),
                )
                .map_err(ros_err(format!("advertise ~/debug/{name}/image_markers")))?;
            debug_pubs.push(publish::DebugTopics {
                processing,
                latency,
                markers,
                shown: std::cell::Cell::new(0),
            });
        }
    }
    let period = Duration::from_secs_f64(config.diagnostics.period_ms / 1000.0);
    let (stats_tx, stats_rx) =
        crossbeam_channel::bounded::<(usize, StatsSnapshot)>(4 * inputs.len().max(1));
    // The shadow model's detections (`shadow.publish`), beside each camera's.
    let shadow = match runtime.take_shadow_results() {
        Some(source) => {
            let mut shadow_publishers = Vec::new();
            for (name, cam) in config.camera_list() {
                let topic =
                    crate::config::names::shadow_detections_topic(&config.detections_topic(name));
                shadow_publishers.push(
                    node.create_publisher::<r2r::vision_msgs::msg::Detection2DArray>(
                        &topic,
                        qos_profile(&cam.detections_qos()),
                    )
                    .map_err(ros_err(format!("advertise {topic}")))?,
                );
            }
            let class_names = runtime
                .shadow_model()
                .map(|m| m.class_names.clone())
                .unwrap_or_default();
            Some(publish::ShadowTopics {
                source,
                publishers: shadow_publishers,
                class_names,
            })
        }
        None => None,
    };
    let publisher = Publisher {
        publishers,
        shadow,
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
    // SIGUSR1 asks for an incident capture now (with `capture.dir` set).
    let capture_asked = Arc::new(AtomicBool::new(false));
    if runtime.capture_trigger().is_some()
        && let Err(e) =
            signal_hook::flag::register(signal_hook::consts::SIGUSR1, Arc::clone(&capture_asked))
    {
        tracing::warn!(error = %e, "SIGUSR1 cannot ask for incident captures");
    }
    // SIGHUP: the parameters file is read again and a changed `model` is swapped in.
    let reload_asked = Arc::new(AtomicBool::new(false));
    if let Err(e) =
        signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&reload_asked))
    {
        tracing::warn!(error = %e, "SIGHUP cannot reload the model");
    }
    let mut running_model = config.model.clone();
    tracing::info!(cameras = inputs.len(), "lookout running");
    while !stop.load(Ordering::Relaxed) {
        if reload_asked.swap(false, Ordering::Relaxed) {
            reload_model(&node, options, &config, &mut running_model, &runtime);
        }
        while let Some(outcome) = runtime.poll_swap() {
            match outcome {
                crate::runtime::swap::SwapOutcome::Swapped {
                    new,
                    old_sha256,
                    load_ms,
                    ..
                } => {
                    tracing::warn!(model = %new.name, sha256 = %new.sha256, old_sha256 = %old_sha256, load_ms = load_ms.round(), "model swapped in between two frames")
                }
                crate::runtime::swap::SwapOutcome::Refused { path, reason } => {
                    tracing::error!(manifest = %path.display(), %reason, "model refused; the running model stays");
                }
            }
        }
        if capture_asked.swap(false, Ordering::Relaxed)
            && let Some(trigger) = runtime.capture_trigger()
        {
            use crate::runtime::capture::{ALL_CAMERAS, NEWEST_FRAME, Reason};
            trigger.request(Reason::Requested, ALL_CAMERAS, NEWEST_FRAME);
            tracing::info!("incident capture asked for (SIGUSR1)");
        }
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

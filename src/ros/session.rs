//! One configured node: the runtime (model loaded and warmed, queues allocated, threads
//! started), its publishers and, while active, its subscriptions. `lookout run` configures and
//! activates one at start; `lookout run --managed` moves it through the ROS 2 lifecycle
//! ([`super::lifecycle`]): configure builds it, activate subscribes and publishes, deactivate
//! stops both without freeing anything, cleanup frees it.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::task::Context as TaskContext;
use std::thread::Thread;
use std::time::{Duration, Instant};

use r2r::QosProfile;

use super::input::{CameraInput, Subscription, poll_once};
use super::publish::{Publisher, diagnostic_array};
use super::{
    CameraSummary, NodeError, NodeOptions, RunSummary, load_config, qos_profile, reload_model,
    ros_err,
};
use crate::config::names::resolve_topic;
use crate::config::{Config, ImageKind};
use crate::runtime::deadline::{RosClock, StatsSnapshot};
use crate::runtime::health::Status;
use crate::runtime::swap::{SwapError, SwapOutcome};
use crate::runtime::{Runtime, RuntimeError, Timing};

type ClockStream =
    Box<dyn futures::Stream<Item = r2r::NativeMsg<r2r::rosgraph_msgs::msg::Clock>> + Unpin>;

/// A configured node; see the module documentation.
pub(super) struct Session {
    config: Config,
    runtime: Runtime,
    ros_clock: RosClock,
    sim_time_ns: Arc<AtomicI64>,
    infer_thread: Thread,
    inputs: Vec<CameraInput>,
    resolved: Vec<String>,
    clock_sub: Option<ClockStream>,
    diag_pub: r2r::Publisher<r2r::diagnostic_msgs::msg::DiagnosticArray>,
    stats_rx: crossbeam_channel::Receiver<(usize, StatsSnapshot)>,
    period: Duration,
    /// Whether results and /diagnostics are published (the lifecycle's active state).
    publishing: Arc<AtomicBool>,
    started: Instant,
    next_graph_check: Instant,
    next_report: Instant,
    running_model: PathBuf,
    capture_asked: Arc<AtomicBool>,
    reload_asked: Arc<AtomicBool>,
    /// The last swap outcome, for `~/load_model` to answer with.
    swap_outcome: Option<SwapOutcome>,
    execution_provider: &'static str,
}

impl Session {
    /// Reads the parameters, builds and starts the runtime (the model loaded and warmed up,
    /// every buffer allocated), and creates the publishers: nothing is subscribed or published
    /// until [`Self::activate`].
    pub(super) fn configure(
        node: &mut r2r::Node,
        options: &NodeOptions,
    ) -> Result<Session, NodeError> {
        let namespace = node.namespace().map_err(ros_err("node namespace"))?;
        let node_name = node.name().map_err(ros_err("node name"))?;
        let config = load_config(node, options)?;
        if config.use_sim_time {
            node.get_time_source()
                .enable_sim_time(node)
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

        // The source (queues, subscribed on activation) and the sink (publishers), per camera.
        let mut inputs = Vec::new();
        let mut publishers = Vec::new();
        let producers = runtime.take_inputs();
        for ((index, (name, cam)), mut producer) in config.camera_list().enumerate().zip(producers)
        {
            producer.set_wake(infer_thread.clone());
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
                subscription: None,
                producer,
                counters: Arc::clone(&runtime.counters()[index]),
                incompatible_seen: HashSet::new(),
                warned_no_publisher: false,
            });
        }
        let clock_sub = if config.use_sim_time {
            let mut q = QosProfile::default();
            q.depth = 1;
            Some(Box::new(
                node.subscribe_native::<r2r::rosgraph_msgs::msg::Clock>("/clock", q)
                    .map_err(ros_err("subscribe to /clock"))?,
            ) as ClockStream)
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
                debug_pubs.push(super::publish::DebugTopics {
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
                    let topic = crate::config::names::shadow_detections_topic(
                        &config.detections_topic(name),
                    );
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
                Some(super::publish::ShadowTopics {
                    source,
                    publishers: shadow_publishers,
                    class_names,
                })
            }
            None => None,
        };
        let publishing = Arc::new(AtomicBool::new(false));
        let publisher = Publisher {
            publishers,
            shadow,
            debug: debug_pubs,
            counters: runtime.counters().to_vec(),
            class_names: model.class_names.clone(),
            stats_tx,
            period,
            clock: ros_clock.clone(),
            active: Arc::clone(&publishing),
        };
        runtime.spawn_sink(
            "lookout-publish",
            &config.realtime.publisher,
            move |results, tracker| publisher.run(results, tracker),
        )?;
        let resolved = inputs
            .iter()
            .map(|i| resolve_topic(&namespace, &node_name, &i.topic))
            .collect();
        // SIGUSR1 asks for an incident capture now (with `capture.dir` set).
        let capture_asked = Arc::new(AtomicBool::new(false));
        if runtime.capture_trigger().is_some()
            && let Err(e) = signal_hook::flag::register(
                signal_hook::consts::SIGUSR1,
                Arc::clone(&capture_asked),
            )
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
        // The executor: the calling thread.
        crate::runtime::realtime::apply("main", &config.realtime.executor);
        let now = Instant::now();
        Ok(Session {
            running_model: config.model.clone(),
            config,
            runtime,
            ros_clock,
            sim_time_ns,
            infer_thread,
            inputs,
            resolved,
            clock_sub,
            diag_pub,
            stats_rx,
            period,
            publishing,
            started: now,
            next_graph_check: now,
            next_report: now + period,
            capture_asked,
            reload_asked,
            swap_outcome: None,
            execution_provider: engine_info.execution_provider,
        })
    }

    /// Subscribes to every camera and publishes results and /diagnostics.
    pub(super) fn activate(&mut self, node: &mut r2r::Node) -> Result<(), NodeError> {
        for input in &mut self.inputs {
            let Some(cam) = self.config.camera.get(&input.name) else {
                continue;
            };
            let qos = qos_profile(&cam.input_qos());
            input.subscription = Some(match cam.kind {
                ImageKind::Image => Subscription::Raw(Box::new(
                    node.subscribe_native::<r2r::sensor_msgs::msg::Image>(&cam.topic, qos)
                        .map_err(ros_err(format!("subscribe to {}", cam.topic)))?,
                )),
                ImageKind::Compressed => Subscription::Compressed(Box::new(
                    node.subscribe_native::<r2r::sensor_msgs::msg::CompressedImage>(
                        &cam.topic, qos,
                    )
                    .map_err(ros_err(format!("subscribe to {}", cam.topic)))?,
                )),
            });
            input.producer.set_wake(self.infer_thread.clone());
        }
        let now = Instant::now();
        self.started = now;
        self.next_graph_check = now;
        self.next_report = now + self.period;
        self.publishing.store(true, Ordering::Release);
        tracing::info!(cameras = self.inputs.len(), "lookout running");
        Ok(())
    }

    /// Unsubscribes and stops publishing; the runtime, its buffers and threads stay (results
    /// of frames still in the loop are not published).
    pub(super) fn deactivate(&mut self) {
        self.publishing.store(false, Ordering::Release);
        for input in &mut self.inputs {
            input.subscription = None;
        }
        tracing::info!("lookout inactive: not subscribed, not publishing");
    }

    /// One turn of the executor after `spin_once`: signals, model swaps, frames into the
    /// queues, /clock, graph checks and /diagnostics. Returns the worker that ended, if one did.
    pub(super) fn turn(
        &mut self,
        node: &r2r::Node,
        options: &NodeOptions,
        cx: &mut TaskContext<'_>,
    ) -> Option<&'static str> {
        if self.reload_asked.swap(false, Ordering::Relaxed) {
            reload_model(
                node,
                options,
                &self.config,
                &mut self.running_model,
                &self.runtime,
            );
        }
        self.poll_swap_outcomes();
        if self.capture_asked.swap(false, Ordering::Relaxed) {
            let _ = self.ask_capture("SIGUSR1");
        }
        // Supervision: a worker that ended while the node runs leaves it headless.
        if let Some(name) = self.runtime.first_gone() {
            return Some(name);
        }
        self.turn_rest(node, cx)
    }

    /// Logs each swap outcome the runtime has and keeps the last for
    /// [`Self::take_swap_outcome`].
    pub(super) fn poll_swap_outcomes(&mut self) {
        while let Some(outcome) = self.runtime.poll_swap() {
            match &outcome {
                SwapOutcome::Swapped {
                    new,
                    old_sha256,
                    load_ms,
                    ..
                } => {
                    tracing::warn!(model = %new.name, sha256 = %new.sha256, old_sha256 = %old_sha256, load_ms = load_ms.round(), "model swapped in between two frames")
                }
                SwapOutcome::Refused { path, reason } => {
                    tracing::error!(manifest = %path.display(), %reason, "model refused; the running model stays");
                }
            }
            self.swap_outcome = Some(outcome);
        }
    }

    /// The rest of a turn: frames into the queues, /clock, graph checks and /diagnostics.
    fn turn_rest(&mut self, node: &r2r::Node, cx: &mut TaskContext<'_>) -> Option<&'static str> {
        for input in &mut self.inputs {
            input.drain(cx);
        }
        if let Some(sub) = self.clock_sub.as_mut() {
            while let Some(msg) = poll_once(sub, cx) {
                let ns = i64::from(msg.clock.sec) * 1_000_000_000 + i64::from(msg.clock.nanosec);
                self.sim_time_ns.store(ns.max(1), Ordering::Relaxed);
            }
        }
        while let Ok((camera, snapshot)) = self.stats_rx.try_recv() {
            self.runtime.health_mut().set_stats(camera, snapshot);
        }
        if !self.publishing.load(Ordering::Acquire) {
            return None;
        }
        let now = Instant::now();
        if now >= self.next_graph_check {
            self.next_graph_check = now + Duration::from_secs(1);
            for (input, topic) in self.inputs.iter_mut().zip(&self.resolved) {
                input.check_graph(node, topic, now - self.started);
            }
        }
        if now >= self.next_report {
            self.next_report = now + self.period;
            let statuses = self.runtime.report_health(now);
            let msg = diagnostic_array(
                &statuses,
                &self.ros_clock,
                node.fully_qualified_name().unwrap_or_default(),
            );
            if let Err(e) = self.diag_pub.publish(&msg) {
                tracing::warn!(error = %e, "cannot publish /diagnostics");
            }
        }
        None
    }

    /// Asks for an incident capture of every camera around its newest frame (`via`: what asked,
    /// for the log). Errors say why none was asked for.
    pub(super) fn ask_capture(&self, via: &str) -> Result<String, String> {
        use crate::runtime::capture::{ALL_CAMERAS, NEWEST_FRAME, Reason};
        let Some(trigger) = self.runtime.capture_trigger() else {
            return Err("incident capture is off: set capture.dir".into());
        };
        if !trigger.request(Reason::Requested, ALL_CAMERAS, NEWEST_FRAME) {
            tracing::info!(
                via,
                "incident capture not asked for: another request is waiting"
            );
            return Err("another capture request is waiting to be taken".into());
        }
        tracing::info!(via, "incident capture asked for");
        Ok(format!(
            "incident capture asked for: every camera, {} s before and {} s after its newest frame, into {} (at most {} per hour; captures_written and captures_suppressed on /diagnostics)",
            self.config.capture.before_s,
            self.config.capture.after_s,
            self.config
                .capture
                .dir
                .as_deref()
                .map_or_else(String::new, |d| d.display().to_string()),
            self.config.capture.max_per_hour
        ))
    }

    /// Asks for the model package at `manifest` to be loaded and swapped in; its outcome comes
    /// from [`Self::take_swap_outcome`].
    pub(super) fn request_model(&self, manifest: PathBuf) -> Result<(), SwapError> {
        self.runtime.request_model(manifest)
    }

    /// What became of the last load asked for, once (set by [`Self::turn`]).
    pub(super) fn take_swap_outcome(&mut self) -> Option<SwapOutcome> {
        self.swap_outcome.take()
    }

    /// sha256 of the model running now.
    pub(super) fn model_sha256(&self) -> &str {
        &self.runtime.model().sha256
    }

    /// Stops the runtime (the inference loop, then the publisher drains what is left) and frees
    /// everything. A worker that died is reported on /diagnostics and is the error.
    pub(super) fn finish(
        mut self,
        node: &mut r2r::Node,
        gone: Option<&'static str>,
    ) -> Result<RunSummary, NodeError> {
        for input in &mut self.inputs {
            input.subscription = None;
        }
        if let Err(RuntimeError::WorkerDied { thread, reason }) = self.runtime.stop(gone) {
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
                &self.ros_clock,
                node.fully_qualified_name().unwrap_or_default(),
            );
            if let Err(e) = self.diag_pub.publish(&msg) {
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
            cameras: self
                .inputs
                .iter()
                .map(|i| CameraSummary {
                    name: i.name.clone(),
                    counters: i.counters.snapshot(),
                })
                .collect(),
            execution_provider: self.execution_provider,
        })
    }
}

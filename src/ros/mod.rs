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
//! The node's own services (`~/capture`, `~/load_model`) are in [`services`]; the lifecycle
//! services of `--managed` in [`lifecycle`].
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

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Context as TaskContext;
use std::time::Duration;

use r2r::QosProfile;

use crate::config::locate::Origin;
use crate::config::{Config, ConfigError, Durability, ParamValue, QosConfig, Reliability};
use crate::runtime::counters::CounterSnapshot;
use crate::runtime::{Runtime, RuntimeError};

mod input;
mod lifecycle;
mod log;
mod publish;
mod services;
mod session;

pub use log::RosLogLayer;
use session::Session;

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
    /// A ROS 2 lifecycle (managed) node: it starts unconfigured and follows
    /// `~/change_state` (`lookout run --managed`).
    pub managed: bool,
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
/// thread starts. With `options.managed` the node is a ROS 2 lifecycle node instead
/// ([`lifecycle`]): it waits, unconfigured, for its transitions.
pub fn run(options: &NodeOptions, stop: Arc<AtomicBool>) -> Result<RunSummary, NodeError> {
    let ctx = r2r::Context::create().map_err(ros_err("initialise rcl"))?;
    let mut node = r2r::Node::create(ctx, "lookout", "").map_err(ros_err("create node"))?;
    let _ = log::ROS_LOGGER.set(node.logger().to_string());
    let mut services = services::Services::offer(&mut node)?;
    if options.managed {
        return lifecycle::run(&mut node, options, &stop, &mut services);
    }
    let mut session = Session::configure(&mut node, options)?;
    session.activate(&mut node)?;
    let waker = futures::task::noop_waker();
    let mut cx = TaskContext::from_waker(&waker);
    let mut gone = None;
    while !stop.load(Ordering::Relaxed) {
        node.spin_once(Duration::from_millis(20));
        if let Some(name) = session.turn(&node, options, &mut cx) {
            gone = Some(name);
            break;
        }
        services.serve(Some(&mut session), &mut cx);
    }
    services.abandon("the node is shutting down");
    session.finish(&mut node, gone)
}

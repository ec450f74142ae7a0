//! lookout's own services, offered under the node's name for the life of the process (plain and
//! managed node alike):
//!
//! | name | type | |
//! |---|---|---|
//! | `~/capture` | `std_srvs/srv/Trigger` | an incident capture of every camera around its newest frame (as SIGUSR1) |
//! | `~/load_model` | `lookout_msgs/srv/LoadModel` | a hot model swap (as SIGHUP with a changed `model`) |
//!
//! `~/capture` answers at once: whether a capture was asked for (the bag is written in the
//! background; `captures_written` on /diagnostics counts it). `~/load_model` answers when the
//! new model runs or was refused, with both sha256 and the load time; one load at a time (a
//! second request meanwhile is answered at once, refused as busy). A managed node that is not
//! configured answers both with `success: false`.
//!
//! Requests are served on the executor thread between two turns; nothing here blocks.

use std::path::PathBuf;
use std::task::Context as TaskContext;

use r2r::QosProfile;
use r2r::lookout_msgs::srv::LoadModel;
use r2r::std_srvs::srv::Trigger;

use super::input::poll_once;
use super::session::Session;
use super::{NodeError, ros_err};
use crate::runtime::swap::SwapOutcome;

type Requests<T> = Box<dyn futures::Stream<Item = r2r::ServiceRequest<T>> + Unpin>;

/// The services and the `~/load_model` call waiting for its outcome.
pub(super) struct Services {
    capture: Requests<Trigger::Service>,
    load_model: Requests<LoadModel::Service>,
    waiting: Option<r2r::ServiceRequest<LoadModel::Service>>,
}

/// A refusal, with the model that keeps running.
fn refused(message: String, running_sha256: &str) -> LoadModel::Response {
    LoadModel::Response {
        success: false,
        message,
        sha256: running_sha256.to_string(),
        old_sha256: running_sha256.to_string(),
        load_ms: 0.0,
    }
}

/// The manifest a request names: a package directory's `manifest.yaml`, a relative path from
/// the working directory when it is there (else as given, for the search of a `model`
/// parameter).
fn manifest_of(asked: &str) -> PathBuf {
    let mut path = PathBuf::from(asked);
    if path.is_relative()
        && path.exists()
        && let Ok(absolute) = std::path::absolute(&path)
    {
        path = absolute;
    }
    if path.is_dir() {
        path.push("manifest.yaml");
    }
    path
}

impl Services {
    /// Offers both services on `node`.
    pub(super) fn offer(node: &mut r2r::Node) -> Result<Self, NodeError> {
        let qos = QosProfile::services_default();
        let capture = node
            .create_service::<Trigger::Service>("~/capture", qos.clone())
            .map_err(ros_err("offer ~/capture"))?;
        let load_model = node
            .create_service::<LoadModel::Service>("~/load_model", qos)
            .map_err(ros_err("offer ~/load_model"))?;
        Ok(Self {
            capture: Box::new(capture),
            load_model: Box::new(load_model),
            waiting: None,
        })
    }

    /// Answers what came in since the last turn, and a waiting `~/load_model` whose outcome is
    /// known. `session` is `None` while a managed node is not configured.
    pub(super) fn serve(&mut self, mut session: Option<&mut Session>, cx: &mut TaskContext<'_>) {
        while let Some(request) = poll_once(&mut self.capture, cx) {
            let answer = match session.as_deref() {
                Some(s) => s.ask_capture("~/capture"),
                None => Err("the node is not configured".into()),
            };
            let (success, message) = match answer {
                Ok(m) => (true, m),
                Err(m) => (false, m),
            };
            if let Err(e) = request.respond(Trigger::Response { success, message }) {
                tracing::warn!(error = %e, "cannot answer ~/capture");
            }
        }
        let outcome = session.as_deref_mut().and_then(Session::take_swap_outcome);
        if let Some(outcome) = outcome
            && let Some(request) = self.waiting.take()
        {
            let response = match outcome {
                SwapOutcome::Swapped {
                    new,
                    old_sha256,
                    load_ms,
                    ..
                } => LoadModel::Response {
                    success: true,
                    message: format!("model {} swapped in between two frames", new.name),
                    sha256: new.sha256,
                    old_sha256,
                    load_ms,
                },
                SwapOutcome::Refused { reason, .. } => refused(
                    format!("model refused; the running model stays: {reason}"),
                    session.as_deref().map_or("", Session::model_sha256),
                ),
            };
            answer_load(request, response);
        }
        if session.is_none()
            && let Some(request) = self.waiting.take()
        {
            answer_load(
                request,
                refused("the node was cleaned up before the model ran".into(), ""),
            );
        }
        while let Some(request) = poll_once(&mut self.load_model, cx) {
            let Some(s) = session.as_deref_mut() else {
                answer_load(request, refused("the node is not configured".into(), ""));
                continue;
            };
            let manifest = manifest_of(&request.message.model);
            if self.waiting.is_some() {
                answer_load(
                    request,
                    refused(
                        "a model is being loaded already; ask again when it is done".into(),
                        s.model_sha256(),
                    ),
                );
                continue;
            }
            match s.request_model(manifest.clone()) {
                Ok(()) => {
                    // The outcome of a load asked for otherwise (SIGHUP) is queued before the
                    // runtime takes a new request: take it now, so that it does not answer this
                    // one.
                    s.poll_swap_outcomes();
                    let _ = s.take_swap_outcome();
                    tracing::info!(manifest = %manifest.display(), "~/load_model: loading the model in the background");
                    self.waiting = Some(request);
                }
                Err(e) => {
                    tracing::error!(error = %e, "~/load_model: the model is not loaded");
                    answer_load(request, refused(e.to_string(), s.model_sha256()));
                }
            }
        }
    }
}

impl Services {
    /// Answers a `~/load_model` call still waiting with `success: false` and `why` (the session
    /// it asked is being freed or the node stops).
    pub(super) fn abandon(&mut self, why: &str) {
        if let Some(request) = self.waiting.take() {
            answer_load(request, refused(why.to_string(), ""));
        }
    }
}

fn answer_load(request: r2r::ServiceRequest<LoadModel::Service>, response: LoadModel::Response) {
    if let Err(e) = request.respond(response) {
        tracing::warn!(error = %e, "cannot answer ~/load_model");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn a_package_directory_names_its_manifest_and_a_relative_path_is_made_absolute() {
        let dir = std::env::temp_dir().join(format!("lookout-services-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(
            manifest_of(dir.to_str().unwrap()),
            dir.join("manifest.yaml")
        );
        let here = std::env::current_dir().unwrap();
        assert_eq!(manifest_of("src"), here.join("src").join("manifest.yaml"));
        // Not in the working directory: as given, for the model search.
        assert_eq!(
            manifest_of("models-elsewhere/m.yaml"),
            Path::new("models-elsewhere/m.yaml")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! `lookout run --managed`: a ROS 2 lifecycle (managed) node on r2r, which has no lifecycle API.
//! The node offers the services and topic of `lifecycle_msgs` that launch systems and
//! lifecycle managers (nav2's, Autoware's) call, under its own name:
//!
//! | name | type | |
//! |---|---|---|
//! | `~/change_state` | `lifecycle_msgs/srv/ChangeState` | a transition, by id or label |
//! | `~/get_state` | `lifecycle_msgs/srv/GetState` | the current state |
//! | `~/get_available_states` | `lifecycle_msgs/srv/GetAvailableStates` | every state |
//! | `~/get_available_transitions` | `lifecycle_msgs/srv/GetAvailableTransitions` | from the current state |
//! | `~/get_transition_graph` | `lifecycle_msgs/srv/GetAvailableTransitions` | all of them |
//! | `~/transition_event` | `lifecycle_msgs/msg/TransitionEvent` | each step of a transition |
//!
//! The states and transitions are the ROS 2 design's (unconfigured, inactive, active, finalized;
//! configure, cleanup, activate, deactivate, shutdown). What each transition does to lookout:
//! - configure: reads the parameters, loads and warms the model, allocates every queue and
//!   buffer and starts the threads ([`Session::configure`]); a failure (bad parameters, model
//!   refused) goes back to unconfigured and says why in the log.
//! - activate: subscribes to the cameras, publishes detections and /diagnostics.
//! - deactivate: unsubscribes and stops publishing; nothing is freed.
//! - cleanup: stops the threads and frees everything (back to unconfigured).
//! - shutdown (from any primary state): as cleanup, then the process ends (finalized).
//!
//! Transitions run on the executor thread between two turns; a transition asked for while
//! another is impossible from the current state is answered `success: false`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Context as TaskContext;
use std::time::Duration;

use r2r::QosProfile;
use r2r::lifecycle_msgs::{msg, srv};

use super::input::poll_once;
use super::services::Services;
use super::session::Session;
use super::{NodeError, NodeOptions, RunSummary, ros_err};

const UNCONFIGURED: u8 = 1;
const INACTIVE: u8 = 2;
const ACTIVE: u8 = 3;
const FINALIZED: u8 = 4;
const CONFIGURING: u8 = 10;
const CLEANING_UP: u8 = 11;
const SHUTTING_DOWN: u8 = 12;
const ACTIVATING: u8 = 13;
const DEACTIVATING: u8 = 14;
const ERROR_PROCESSING: u8 = 15;

const CONFIGURE: u8 = 1;
const CLEANUP: u8 = 2;
const ACTIVATE: u8 = 3;
const DEACTIVATE: u8 = 4;
const UNCONFIGURED_SHUTDOWN: u8 = 5;
const INACTIVE_SHUTDOWN: u8 = 6;
const ACTIVE_SHUTDOWN: u8 = 7;
const ON_CONFIGURE_SUCCESS: u8 = 10;
const ON_CONFIGURE_FAILURE: u8 = 11;
const ON_CLEANUP_SUCCESS: u8 = 20;
const ON_ACTIVATE_SUCCESS: u8 = 30;
const ON_ACTIVATE_FAILURE: u8 = 31;
const ON_DEACTIVATE_SUCCESS: u8 = 40;
const ON_SHUTDOWN_SUCCESS: u8 = 50;

fn state_label(id: u8) -> &'static str {
    match id {
        UNCONFIGURED => "unconfigured",
        INACTIVE => "inactive",
        ACTIVE => "active",
        FINALIZED => "finalized",
        CONFIGURING => "configuring",
        CLEANING_UP => "cleaningup",
        SHUTTING_DOWN => "shuttingdown",
        ACTIVATING => "activating",
        DEACTIVATING => "deactivating",
        ERROR_PROCESSING => "errorprocessing",
        _ => "unknown",
    }
}

fn transition_label(id: u8) -> &'static str {
    match id {
        CONFIGURE => "configure",
        CLEANUP => "cleanup",
        ACTIVATE => "activate",
        DEACTIVATE => "deactivate",
        UNCONFIGURED_SHUTDOWN | INACTIVE_SHUTDOWN | ACTIVE_SHUTDOWN => "shutdown",
        ON_CONFIGURE_SUCCESS
        | ON_ACTIVATE_SUCCESS
        | ON_DEACTIVATE_SUCCESS
        | ON_CLEANUP_SUCCESS
        | ON_SHUTDOWN_SUCCESS => "transition_success",
        ON_CONFIGURE_FAILURE | ON_ACTIVATE_FAILURE => "transition_failure",
        _ => "unknown",
    }
}

fn state(id: u8) -> msg::State {
    msg::State {
        id,
        label: state_label(id).to_string(),
    }
}

fn transition(id: u8) -> msg::Transition {
    msg::Transition {
        id,
        label: transition_label(id).to_string(),
    }
}

/// The transitions of the ROS 2 design: (transition, start, the transition state it goes
/// through).
const TRANSITIONS: [(u8, u8, u8); 7] = [
    (CONFIGURE, UNCONFIGURED, CONFIGURING),
    (CLEANUP, INACTIVE, CLEANING_UP),
    (ACTIVATE, INACTIVE, ACTIVATING),
    (DEACTIVATE, ACTIVE, DEACTIVATING),
    (UNCONFIGURED_SHUTDOWN, UNCONFIGURED, SHUTTING_DOWN),
    (INACTIVE_SHUTDOWN, INACTIVE, SHUTTING_DOWN),
    (ACTIVE_SHUTDOWN, ACTIVE, SHUTTING_DOWN),
];

fn descriptions(from: Option<u8>) -> Vec<msg::TransitionDescription> {
    TRANSITIONS
        .iter()
        .filter(|(_, start, _)| from.is_none_or(|s| s == *start))
        .map(|&(t, start, goal)| msg::TransitionDescription {
            transition: transition(t),
            start_state: state(start),
            goal_state: state(goal),
        })
        .collect()
}

/// The transition asked for, as one that starts in `current` (by id, or by label when the id
/// is 0; `shutdown` by any of its three ids or its label).
fn resolve(asked: &msg::Transition, current: u8) -> Option<u8> {
    let by_label = |label: &str| {
        TRANSITIONS
            .iter()
            .find(|(t, start, _)| *start == current && transition_label(*t) == label)
            .map(|(t, _, _)| *t)
    };
    let wanted = match asked.id {
        0 => by_label(asked.label.as_str())?,
        UNCONFIGURED_SHUTDOWN | INACTIVE_SHUTDOWN | ACTIVE_SHUTDOWN => by_label("shutdown")?,
        id => id,
    };
    TRANSITIONS
        .iter()
        .any(|(t, start, _)| *t == wanted && *start == current)
        .then_some(wanted)
}

/// The managed node's state and the session it drives.
struct Lifecycle {
    state: u8,
    session: Option<Session>,
    events: r2r::Publisher<msg::TransitionEvent>,
    summary: Option<RunSummary>,
}

impl Lifecycle {
    fn event(&self, t: u8, start: u8, goal: u8) {
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        let e = msg::TransitionEvent {
            timestamp,
            transition: transition(t),
            start_state: state(start),
            goal_state: state(goal),
        };
        if let Err(e) = self.events.publish(&e) {
            tracing::warn!(error = %e, "cannot publish ~/transition_event");
        }
    }

    /// Runs transition `t` (valid from the current state); returns whether it succeeded.
    fn change(
        &mut self,
        t: u8,
        node: &mut r2r::Node,
        options: &NodeOptions,
    ) -> Result<bool, NodeError> {
        let from = self.state;
        let through = TRANSITIONS
            .iter()
            .find(|(id, _, _)| *id == t)
            .map_or(ERROR_PROCESSING, |(_, _, s)| *s);
        self.event(t, from, through);
        let (done, to, ok) = match t {
            CONFIGURE => match Session::configure(node, options) {
                Ok(session) => {
                    self.session = Some(session);
                    (ON_CONFIGURE_SUCCESS, INACTIVE, true)
                }
                Err(e) => {
                    tracing::error!(error = %e, "configure failed; the node stays unconfigured");
                    (ON_CONFIGURE_FAILURE, UNCONFIGURED, false)
                }
            },
            ACTIVATE => {
                let result = match self.session.as_mut() {
                    Some(s) => s.activate(node),
                    None => Ok(()),
                };
                match result {
                    Ok(()) => (ON_ACTIVATE_SUCCESS, ACTIVE, true),
                    Err(e) => {
                        tracing::error!(error = %e, "activate failed; the node stays inactive");
                        if let Some(s) = self.session.as_mut() {
                            s.deactivate();
                        }
                        (ON_ACTIVATE_FAILURE, INACTIVE, false)
                    }
                }
            }
            DEACTIVATE => {
                if let Some(s) = self.session.as_mut() {
                    s.deactivate();
                }
                (ON_DEACTIVATE_SUCCESS, INACTIVE, true)
            }
            CLEANUP => {
                self.free(node)?;
                (ON_CLEANUP_SUCCESS, UNCONFIGURED, true)
            }
            _ => {
                self.free(node)?;
                (ON_SHUTDOWN_SUCCESS, FINALIZED, true)
            }
        };
        self.event(done, through, to);
        self.state = to;
        tracing::info!(
            transition = transition_label(t),
            from = state_label(from),
            to = state_label(to),
            "lifecycle transition"
        );
        Ok(ok)
    }

    /// Stops and frees the session, if any (its counters are the run's summary).
    fn free(&mut self, node: &mut r2r::Node) -> Result<(), NodeError> {
        if let Some(mut session) = self.session.take() {
            session.deactivate();
            self.summary = Some(session.finish(node, None)?);
        }
        Ok(())
    }
}

/// The managed node's executor loop, until shutdown (finalized) or `stop`.
pub(super) fn run(
    node: &mut r2r::Node,
    options: &NodeOptions,
    stop: &Arc<AtomicBool>,
    services: &mut Services,
) -> Result<RunSummary, NodeError> {
    let qos = QosProfile::services_default();
    let mut change_state = node
        .create_service::<srv::ChangeState::Service>("~/change_state", qos.clone())
        .map_err(ros_err("offer ~/change_state"))?;
    let mut get_state = node
        .create_service::<srv::GetState::Service>("~/get_state", qos.clone())
        .map_err(ros_err("offer ~/get_state"))?;
    let mut get_states = node
        .create_service::<srv::GetAvailableStates::Service>("~/get_available_states", qos.clone())
        .map_err(ros_err("offer ~/get_available_states"))?;
    let mut get_transitions = node
        .create_service::<srv::GetAvailableTransitions::Service>(
            "~/get_available_transitions",
            qos.clone(),
        )
        .map_err(ros_err("offer ~/get_available_transitions"))?;
    let mut get_graph = node
        .create_service::<srv::GetAvailableTransitions::Service>("~/get_transition_graph", qos)
        .map_err(ros_err("offer ~/get_transition_graph"))?;
    let events = node
        .create_publisher::<msg::TransitionEvent>("~/transition_event", QosProfile::default())
        .map_err(ros_err("advertise ~/transition_event"))?;
    let mut lifecycle = Lifecycle {
        state: UNCONFIGURED,
        session: None,
        events,
        summary: None,
    };
    let waker = futures::task::noop_waker();
    let mut cx = TaskContext::from_waker(&waker);
    tracing::info!("lookout managed: unconfigured, waiting for ~/change_state");
    while !stop.load(Ordering::Relaxed) && lifecycle.state != FINALIZED {
        node.spin_once(Duration::from_millis(20));
        while let Some(request) = poll_once(&mut change_state, &mut cx) {
            let success = match resolve(&request.message.transition, lifecycle.state) {
                Some(t) => {
                    let had = lifecycle.session.is_some();
                    let done = lifecycle.change(t, node, options)?;
                    if had && lifecycle.session.is_none() {
                        services.abandon("the node was cleaned up before the model ran");
                    }
                    done
                }
                None => {
                    tracing::warn!(transition = %request.message.transition.label, id = request.message.transition.id, state = state_label(lifecycle.state), "transition refused: not available from this state");
                    false
                }
            };
            let _ = request.respond(srv::ChangeState::Response { success });
        }
        while let Some(request) = poll_once(&mut get_state, &mut cx) {
            let _ = request.respond(srv::GetState::Response {
                current_state: state(lifecycle.state),
            });
        }
        while let Some(request) = poll_once(&mut get_states, &mut cx) {
            let _ = request.respond(srv::GetAvailableStates::Response {
                available_states: [
                    UNCONFIGURED,
                    INACTIVE,
                    ACTIVE,
                    FINALIZED,
                    CONFIGURING,
                    CLEANING_UP,
                    SHUTTING_DOWN,
                    ACTIVATING,
                    DEACTIVATING,
                    ERROR_PROCESSING,
                ]
                .into_iter()
                .map(state)
                .collect(),
            });
        }
        while let Some(request) = poll_once(&mut get_transitions, &mut cx) {
            let _ = request.respond(srv::GetAvailableTransitions::Response {
                available_transitions: descriptions(Some(lifecycle.state)),
            });
        }
        while let Some(request) = poll_once(&mut get_graph, &mut cx) {
            let _ = request.respond(srv::GetAvailableTransitions::Response {
                available_transitions: descriptions(None),
            });
        }
        let gone = lifecycle
            .session
            .as_mut()
            .and_then(|s| s.turn(node, options, &mut cx));
        services.serve(lifecycle.session.as_mut(), &mut cx);
        if let Some(gone) = gone
            && let Some(session) = lifecycle.session.take()
        {
            services.abandon("the node is stopping: a worker thread ended");
            return session.finish(node, Some(gone));
        }
    }
    services.abandon("the node is shutting down");
    // Let the last responses and events leave.
    node.spin_once(Duration::from_millis(50));
    lifecycle.free(node)?;
    Ok(lifecycle.summary.unwrap_or(RunSummary {
        cameras: Vec::new(),
        execution_provider: "none",
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked(id: u8, label: &str) -> msg::Transition {
        msg::Transition {
            id,
            label: label.into(),
        }
    }

    #[test]
    fn transitions_resolve_by_id_or_label_only_from_their_start_state() {
        assert_eq!(
            resolve(&asked(CONFIGURE, ""), UNCONFIGURED),
            Some(CONFIGURE)
        );
        assert_eq!(
            resolve(&asked(0, "configure"), UNCONFIGURED),
            Some(CONFIGURE)
        );
        assert_eq!(resolve(&asked(ACTIVATE, ""), UNCONFIGURED), None);
        assert_eq!(resolve(&asked(0, "activate"), INACTIVE), Some(ACTIVATE));
        // Shutdown by any of its ids or its label, from each primary state.
        assert_eq!(
            resolve(&asked(UNCONFIGURED_SHUTDOWN, ""), ACTIVE),
            Some(ACTIVE_SHUTDOWN)
        );
        assert_eq!(
            resolve(&asked(0, "shutdown"), INACTIVE),
            Some(INACTIVE_SHUTDOWN)
        );
        assert_eq!(resolve(&asked(0, "shutdown"), FINALIZED), None);
        assert_eq!(resolve(&asked(99, ""), ACTIVE), None);
        // Available from inactive: cleanup, activate, shutdown.
        let ids: Vec<u8> = descriptions(Some(INACTIVE))
            .iter()
            .map(|d| d.transition.id)
            .collect();
        assert_eq!(ids, vec![CLEANUP, ACTIVATE, INACTIVE_SHUTDOWN]);
        assert_eq!(descriptions(None).len(), 7);
    }
}

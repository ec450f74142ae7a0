//! ROS name resolution for the topics in a configuration, as rcl resolves them: `/x` is absolute,
//! `~/x` is private to the node (`<namespace>/<node>/x`) and `x` is relative to the namespace
//! (`<namespace>/x`). One function for the live node and for replay (which resolves as a node
//! named `lookout` in the root namespace), so both put a camera's detections on the same topic.
//!
//! Contract: pure; allocates the returned name.

/// The absolute name of `topic` for node `node` in `namespace` (`/`, `/robot`, `/robot/`).
pub fn resolve_topic(namespace: &str, node: &str, topic: &str) -> String {
    let ns = namespace.trim_end_matches('/');
    if topic.starts_with('/') {
        topic.to_string()
    } else if let Some(rest) = topic.strip_prefix("~/") {
        format!("{ns}/{node}/{rest}")
    } else if topic == "~" {
        format!("{ns}/{node}")
    } else {
        format!("{ns}/{topic}")
    }
}

/// The name replay resolves topics as (`/` namespace, node `lookout`).
pub fn resolve_replay_topic(topic: &str) -> String {
    resolve_topic("/", "lookout", topic)
}

/// The shadow model's detections topic beside a camera's detections topic `topic`:
/// `<its namespace>/shadow/detections` (`front/detections` -> `front/shadow/detections`).
pub fn shadow_detections_topic(topic: &str) -> String {
    match topic.rsplit_once('/') {
        Some((base, _)) => format!("{base}/shadow/detections"),
        None => "shadow/detections".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_private_and_relative_names() {
        assert_eq!(resolve_topic("/", "lookout", "/cam/image"), "/cam/image");
        assert_eq!(
            resolve_topic("/", "lookout", "front/detections"),
            "/front/detections"
        );
        assert_eq!(
            resolve_topic("/robot", "lookout", "front/detections"),
            "/robot/front/detections"
        );
        assert_eq!(
            resolve_topic("/robot/", "det", "~/debug"),
            "/robot/det/debug"
        );
        assert_eq!(resolve_topic("/", "lookout", "~/debug"), "/lookout/debug");
        assert_eq!(resolve_replay_topic("x"), "/x");
    }
}

#!/usr/bin/env python3
"""An rclpy lifecycle client for lookout's managed-node test: it calls /lookout/change_state,
/lookout/get_state and /lookout/get_available_transitions the way `ros2 lifecycle` and
lifecycle managers do, publishes bus.jpg on /cam/compressed in each phase and counts the
/front/detections that come back, and records /lookout/transition_event.

    lifecycle_client.py JPEG --out results.json
"""

import argparse
import json
import time

import rclpy
from lifecycle_msgs.msg import Transition, TransitionEvent
from lifecycle_msgs.srv import ChangeState, GetAvailableTransitions, GetState
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage
from vision_msgs.msg import Detection2DArray


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("jpeg")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    with open(args.jpeg, "rb") as f:
        jpeg = f.read()

    rclpy.init()
    node = Node("lifecycle_client")
    qos = QoSProfile(depth=10, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)
    pub = node.create_publisher(CompressedImage, "/cam/compressed", qos)
    got = []
    node.create_subscription(Detection2DArray, "/front/detections", lambda m: got.append(m), qos)
    events = []
    node.create_subscription(
        TransitionEvent,
        "/lookout/transition_event",
        lambda e: events.append([e.transition.label, e.start_state.label, e.goal_state.label]),
        10,
    )
    change = node.create_client(ChangeState, "/lookout/change_state")
    get_state = node.create_client(GetState, "/lookout/get_state")
    get_transitions = node.create_client(GetAvailableTransitions, "/lookout/get_available_transitions")
    for c in (change, get_state, get_transitions):
        if not c.wait_for_service(timeout_sec=60.0):
            raise SystemExit(f"service {c.srv_name} not offered")

    def call(client, request, timeout=120.0):
        future = client.call_async(request)
        rclpy.spin_until_future_complete(node, future, timeout_sec=timeout)
        if not future.done():
            raise SystemExit(f"{client.srv_name}: no answer")
        return future.result()

    def state():
        return call(get_state, GetState.Request()).current_state.label

    def transition(id_, label=""):
        r = ChangeState.Request()
        r.transition = Transition(id=id_, label=label)
        return call(change, r).success

    def spin(seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.02)

    def frames(n, rate=4.0):
        """Publishes n frames; returns the detections that came back (waiting up to 3 s)."""
        before = len(got)
        for i in range(n):
            msg = CompressedImage()
            msg.header.stamp = node.get_clock().now().to_msg()
            msg.header.frame_id = f"cam_{i}"
            msg.format = "jpeg"
            msg.data = jpeg
            pub.publish(msg)
            spin(1.0 / rate)
        spin(3.0)
        return len(got) - before

    out = {"phases": []}

    def phase(name):
        out["phases"].append({"phase": name, "state": state(), "detections": frames(4)})

    phase("unconfigured")
    out["configure"] = transition(Transition.TRANSITION_CONFIGURE)
    out["available_when_inactive"] = sorted(
        t.transition.label for t in call(get_transitions, GetAvailableTransitions.Request()).available_transitions
    )
    phase("inactive")
    out["activate"] = transition(Transition.TRANSITION_ACTIVATE)
    spin(1.0)
    phase("active")
    out["deactivate"] = transition(Transition.TRANSITION_DEACTIVATE)
    phase("deactivated")
    out["reactivate"] = transition(0, "activate")
    spin(1.0)
    phase("reactivated")
    out["configure_while_active"] = transition(Transition.TRANSITION_CONFIGURE)
    out["deactivate_2"] = transition(Transition.TRANSITION_DEACTIVATE)
    out["cleanup"] = transition(Transition.TRANSITION_CLEANUP)
    phase("cleaned_up")
    out["configure_2"] = transition(Transition.TRANSITION_CONFIGURE)
    out["activate_2"] = transition(Transition.TRANSITION_ACTIVATE)
    spin(1.0)
    phase("active_again")
    out["shutdown"] = transition(0, "shutdown")
    spin(1.0)
    out["events"] = events
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    node.destroy_node()
    rclpy.shutdown()


if __name__ == "__main__":
    main()

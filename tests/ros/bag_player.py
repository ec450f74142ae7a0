#!/usr/bin/env python3
"""A stand-in for `ros2 bag play --clock` plus a detections recorder, for the live replay test:
plays a rosbag2 bag (read with `rosbags`) into the ROS graph at its recorded rate, publishing
/clock with each message's receive time, and records the vision_msgs/Detection2DArray messages
that come back.

    bag_player.py BAG --sub TOPIC ... [--loops N] [--linger S] [--match-timeout S] --out FILE

Every message of the bag is published unchanged (serialized bytes) on its topic with its type,
reliable, keep-last 100, after waiting until each publisher has a subscriber. With --loops N the
bag plays N times; each loop starts again at the bag's first time (time jumps back). The output
JSON: {"published": {topic: count}, "received": [{"topic", "stamp_ns", "frame_id", "loop",
"detections": [{"class", "score", "center", "size", "id"}]}]}; "loop" is the loop being played
when the message arrived.
"""
import argparse
import importlib
import json
import sys
import time

import rclpy
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosbags.rosbag2 import Reader
from rosgraph_msgs.msg import Clock
from vision_msgs.msg import Detection2DArray


def msg_class(msgtype):
    pkg, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{pkg}.msg"), name)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bag")
    ap.add_argument("--sub", action="append", default=[])
    ap.add_argument("--loops", type=int, default=1)
    ap.add_argument("--linger", type=float, default=3.0)
    ap.add_argument("--match-timeout", type=float, default=30.0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    with Reader(args.bag) as reader:
        conns = {c.id: c for c in reader.connections}
        messages = [(conns[c.id].topic, t, bytes(raw)) for c, t, raw in reader.messages()]
    types = {c.topic: c.msgtype for c in conns.values()}

    rclpy.init()
    node = Node("lookout_bag_player")
    qos = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=100)
    pubs = {topic: node.create_publisher(msg_class(t), topic, qos) for topic, t in types.items()}
    clock = node.create_publisher(Clock, "/clock", 10)
    state = {"loop": 0}
    received = []

    def on_detections(topic):
        def cb(msg):
            received.append({
                "topic": topic,
                "loop": state["loop"],
                "stamp_ns": msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec,
                "frame_id": msg.header.frame_id,
                "detections": [{
                    "class": d.results[0].hypothesis.class_id if d.results else "",
                    "score": d.results[0].hypothesis.score if d.results else 0.0,
                    "center": [d.bbox.center.position.x, d.bbox.center.position.y],
                    "size": [d.bbox.size_x, d.bbox.size_y],
                    "id": d.id,
                } for d in msg.detections],
            })
        return cb

    subs = [node.create_subscription(Detection2DArray, t, on_detections(t), qos) for t in args.sub]
    deadline = time.monotonic() + args.match_timeout
    while time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
        if all(p.get_subscription_count() > 0 for t, p in pubs.items() if t in types) and \
                all(s.get_publisher_count() > 0 for s in subs):
            break
    else:
        raise SystemExit("bag_player: lookout did not match within --match-timeout")
    time.sleep(0.5)

    published = {t: 0 for t in types}
    t0 = messages[0][1] if messages else 0
    for loop in range(args.loops):
        state["loop"] = loop
        start = time.monotonic()
        for topic, t, raw in messages:
            due = start + (t - t0) / 1e9
            while True:
                left = due - time.monotonic()
                if left <= 0:
                    break
                rclpy.spin_once(node, timeout_sec=min(left, 0.01))
            c = Clock()
            c.clock.sec, c.clock.nanosec = t // 1_000_000_000, t % 1_000_000_000
            clock.publish(c)
            pubs[topic].publish(raw)
            published[topic] += 1
        # A recorded-rate gap before the next loop starts over.
        end = time.monotonic() + 0.2
        while time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.01)
    end = time.monotonic() + args.linger
    want = sum(published.values())
    while time.monotonic() < end and len(received) < want:
        rclpy.spin_once(node, timeout_sec=0.05)
    print(f"bag_player: published {want}, received {len(received)}, "
          f"lingered {time.monotonic() - end + args.linger:.1f} s", file=sys.stderr)
    with open(args.out, "w") as f:
        json.dump({"published": published, "received": received}, f)
    node.destroy_node()
    rclpy.shutdown()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""A real ROS 2 peer for lookout's live tests: rclpy publishers of camera frames and rclpy
subscribers of vision_msgs/Detection2DArray, in one process.

Frames come from files the Rust test writes (raw RGB with a small header, or a JPEG), so this
script needs only rclpy and numpy from the set-up's venv.

    peer.py --pub TOPIC,KIND,SOURCE[,ENCODING[,PAD]] ... --sub TOPIC ... \
            --rate HZ --duration S --out results.json

KIND is `image` (sensor_msgs/Image) or `compressed` (sensor_msgs/CompressedImage, SOURCE is a
JPEG). For `image`, SOURCE is a raw file (8-byte header: u32 width, u32 height, little endian,
then width*height*3 bytes of RGB) or an image file pillow reads, optionally resized with a
`@WIDTHxHEIGHT` suffix; ENCODING is rgb8, bgr8, rgba8, bgra8 or mono8 and PAD adds
bytes of row padding. With --rosout and --diagnostics, /rosout and /diagnostics messages are
recorded too (diagnostics with their time since the first frame). --gap AT:SECONDS pauses the
publishers after frame AT. --exec AT:COMMAND runs a shell command after frame AT (the live
tests signal the node at a given frame this way). --float TOPIC records std_msgs/Float64 values. --sim-clock S publishes
/clock (50 Hz, starting at S seconds, advancing --clock-rate sim seconds per wall second) and
stamps frames in that time; --stamp-offset AT:SECONDS
shifts the stamps of frames AT and later (e.g. into the future). With --best-effort the frames are published best effort (default:
reliable). Every frame is stamped with the current time and frame_id
`<topic-basename>_<n>`; the publisher is reliable, keep-last 5.

Before publishing, the peer waits (up to --match-timeout) until each publisher has a subscriber
and each subscription a publisher. After the last frame it waits --linger seconds for results.
The output JSON holds what was published and every message received, with its latency
(receive time - header stamp) in milliseconds.
"""

import argparse
import json
import os
import struct
import subprocess
import sys
import time

import numpy as np
import rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, HistoryPolicy
from sensor_msgs.msg import Image, CompressedImage
from vision_msgs.msg import Detection2DArray


def load_raw(source):
    """An RGB array from `path` or `path@WxH` (resized, bilinear): a raw file (see above) or
    any image pillow reads (JPEG, PNG)."""
    path, _, size = source.partition("@")
    if path.endswith(".rgb"):
        with open(path, "rb") as f:
            w, h = struct.unpack("<II", f.read(8))
            rgb = np.frombuffer(f.read(w * h * 3), dtype=np.uint8).reshape(h, w, 3)
    else:
        from PIL import Image as PilImage

        img = PilImage.open(path).convert("RGB")
        if size:
            w, h = (int(v) for v in size.split("x"))
            img = img.resize((w, h), PilImage.BILINEAR)
        return np.asarray(img, dtype=np.uint8)
    return rgb


def encode(rgb, encoding, pad):
    h, w, _ = rgb.shape
    if encoding == "rgb8":
        px = rgb
    elif encoding == "bgr8":
        px = rgb[:, :, ::-1]
    elif encoding in ("rgba8", "bgra8"):
        base = rgb if encoding == "rgba8" else rgb[:, :, ::-1]
        px = np.concatenate([base, np.full((h, w, 1), 255, np.uint8)], axis=2)
    elif encoding == "mono8":
        px = (rgb.astype(np.uint32) @ np.array([299, 587, 114], np.uint32) // 1000).astype(np.uint8)[:, :, None]
    else:
        raise SystemExit(f"peer: unknown encoding {encoding}")
    bpp = px.shape[2]
    step = w * bpp + pad
    buf = np.zeros((h, step), np.uint8)
    buf[:, : w * bpp] = px.reshape(h, w * bpp)
    return step, buf.tobytes()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pub", action="append", default=[])
    ap.add_argument("--sub", action="append", default=[])
    ap.add_argument("--rate", type=float, default=5.0)
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--count", type=int, default=0, help="frames per publisher (overrides --duration)")
    ap.add_argument("--match-timeout", type=float, default=30.0)
    ap.add_argument("--linger", type=float, default=3.0)
    ap.add_argument("--best-effort", action="store_true", help="publish frames best effort")
    ap.add_argument("--rosout", action="store_true", help="record /rosout messages")
    ap.add_argument("--diagnostics", action="store_true", help="record /diagnostics messages")
    ap.add_argument("--gap", default="", help="AT:SECONDS: after frame AT, publish nothing for SECONDS")
    ap.add_argument("--exec", action="append", default=[], dest="execs",
                    help="AT:COMMAND: after frame AT, run the shell COMMAND (e.g. signal the node)")
    ap.add_argument("--float", action="append", default=[], help="record std_msgs/Float64 on TOPIC")
    ap.add_argument("--markers", action="append", default=[],
                    help="record visualization_msgs/ImageMarker on TOPIC")
    ap.add_argument("--sim-clock", type=float, default=None,
                    help="publish /clock starting at this many seconds; frames are stamped in sim time")
    ap.add_argument("--clock-rate", type=float, default=1.0,
                    help="with --sim-clock: sim seconds per wall second (0.5: half real time)")
    ap.add_argument("--stamp-offset", default="", help="AT:SECONDS: from frame AT on, stamps are shifted")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    rclpy.init()
    node = Node("lookout_test_peer")
    # Subscriptions keep up to 200 unread results: a peer slowed by a loaded machine must not lose
    # what the node sent (the test measures the node, not this Python process).
    qos = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=200)
    pub_qos = QoSProfile(
        reliability=ReliabilityPolicy.BEST_EFFORT if args.best_effort else ReliabilityPolicy.RELIABLE,
        history=HistoryPolicy.KEEP_LAST,
        depth=5,
    )

    pubs = []
    for spec in args.pub:
        parts = spec.split(",")
        topic, kind, source = parts[0], parts[1], parts[2]
        if kind == "image":
            encoding = parts[3] if len(parts) > 3 else "bgr8"
            pad = int(parts[4]) if len(parts) > 4 else 0
            rgb = load_raw(source)
            step, data = encode(rgb, encoding, pad)
            msg = Image()
            msg.height, msg.width = rgb.shape[0], rgb.shape[1]
            msg.encoding, msg.step, msg.is_bigendian = encoding, step, 0
            msg.data = data
            pub = node.create_publisher(Image, topic, pub_qos)
        elif kind == "compressed":
            msg = CompressedImage()
            msg.format = "jpeg"
            with open(source, "rb") as f:
                msg.data = f.read()
            pub = node.create_publisher(CompressedImage, topic, pub_qos)
        else:
            raise SystemExit(f"peer: unknown kind {kind}")
        pubs.append((topic, pub, msg))

    received = []

    def on_detections(topic):
        def cb(msg):
            recv_ns = time.time_ns()
            stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            received.append({
                "topic": topic,
                "stamp_ns": stamp_ns,
                "frame_id": msg.header.frame_id,
                "latency_ms": (recv_ns - stamp_ns) / 1e6,
                "detections": [
                    {
                        "class": d.results[0].hypothesis.class_id if d.results else "",
                        "score": d.results[0].hypothesis.score if d.results else 0.0,
                        "center": [d.bbox.center.position.x, d.bbox.center.position.y],
                        "size": [d.bbox.size_x, d.bbox.size_y],
                        "id": d.id,
                        "header_matches": d.header.stamp == msg.header.stamp and d.header.frame_id == msg.header.frame_id,
                    }
                    for d in msg.detections
                ],
            })
        return cb

    subs = [node.create_subscription(Detection2DArray, t, on_detections(t), qos) for t in args.sub]
    rosout = []
    if args.rosout:
        from rcl_interfaces.msg import Log
        from rclpy.qos import DurabilityPolicy

        rosout_qos = QoSProfile(
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL,
            history=HistoryPolicy.KEEP_LAST,
            depth=100,
        )
        subs.append(node.create_subscription(
            Log, "/rosout", lambda m: rosout.append({"name": m.name, "level": int(m.level), "msg": m.msg}), rosout_qos
        ))

    start_time = [time.monotonic()]
    diagnostics = []
    if args.diagnostics:
        from diagnostic_msgs.msg import DiagnosticArray

        def on_diag(m):
            diagnostics.append({
                "t": time.monotonic() - start_time[0],
                "status": [
                    {"name": s.name, "level": int.from_bytes(s.level, "little") if isinstance(s.level, bytes) else int(s.level),
                     "message": s.message, "values": {kv.key: kv.value for kv in s.values}}
                    for s in m.status
                ],
            })
        subs.append(node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10))
    floats = {t: [] for t in args.float}
    if args.float:
        from std_msgs.msg import Float64

        for t in args.float:
            subs.append(node.create_subscription(Float64, t, lambda m, t=t: floats[t].append(m.data), 10))

    markers = {t: [] for t in args.markers}
    if args.markers:
        from visualization_msgs.msg import ImageMarker

        def on_marker(t):
            def cb(m):
                markers[t].append({
                    "frame_id": m.header.frame_id, "stamp": [m.header.stamp.sec, m.header.stamp.nanosec],
                    "id": m.id, "type": m.type, "action": m.action,
                    "points": [[p.x, p.y] for p in m.points],
                })
            return cb
        for t in args.markers:
            subs.append(node.create_subscription(ImageMarker, t, on_marker(t), 100))

    clock_pub = None
    if args.sim_clock is not None:
        from rosgraph_msgs.msg import Clock

        clock_pub = node.create_publisher(Clock, "/clock", 10)
        clock_t0 = time.monotonic()

    def now_ns():
        if clock_pub is None:
            return time.time_ns()
        return int((args.sim_clock + (time.monotonic() - clock_t0) * args.clock_rate) * 1e9)

    def tick_clock():
        if clock_pub is not None:
            from rosgraph_msgs.msg import Clock

            c = Clock()
            c.clock.sec, c.clock.nanosec = divmod(now_ns(), 1_000_000_000)
            clock_pub.publish(c)

    def spin_for(seconds):
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0:
                break
            tick_clock()
            rclpy.spin_once(node, timeout_sec=min(left, 0.02))

    offset_at, offset_s = (int(args.stamp_offset.split(":")[0]), float(args.stamp_offset.split(":")[1])) if args.stamp_offset else (-1, 0.0)
    deadline = time.monotonic() + args.match_timeout
    while time.monotonic() < deadline:
        tick_clock()
        rclpy.spin_once(node, timeout_sec=0.05)
        if all(p.get_subscription_count() > 0 for _, p, _ in pubs) and all(
            node.count_publishers(t) > 0 for t in args.sub
        ):
            break
    else:
        print("peer: endpoints did not match in time", file=sys.stderr)
    # Matching is reported a little before the data path is ready on both sides.
    spin_for(0.5)

    gap_at, gap_s = (int(args.gap.split(":")[0]), float(args.gap.split(":")[1])) if args.gap else (-1, 0.0)

    published = {t: [] for t, _, _ in pubs}
    period = 1.0 / args.rate
    total = args.count if args.count > 0 else int(round(args.duration * args.rate))
    start = time.monotonic()
    start_time[0] = start
    shift = 0.0
    for i in range(total):
        if i == gap_at + 1:
            shift += gap_s
        target = start + i * period + shift
        spin_for(max(0.0, target - time.monotonic()))
        tick_clock()
        for topic, pub, msg in pubs:
            stamp_ns = now_ns() + (int(offset_s * 1e9) if 0 <= offset_at <= i else 0)
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
            msg.header.frame_id = f"{os.path.basename(topic)}_{i}"
            pub.publish(msg)
            published[topic].append({"stamp_ns": stamp_ns, "frame_id": msg.header.frame_id})
        for spec in args.execs:
            at, command = spec.split(":", 1)
            if int(at) == i:
                subprocess.run(command, shell=True, check=True)
    spin_for(args.linger)

    with open(args.out, "w") as f:
        json.dump({"published": published, "received": received, "rosout": rosout,
                   "diagnostics": diagnostics, "floats": floats, "markers": markers}, f)
    node.destroy_node()
    rclpy.shutdown()


if __name__ == "__main__":
    main()

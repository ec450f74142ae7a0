#!/usr/bin/env python3
"""Builds a two-camera bag for the scheduler's fairness figures, from the vtest_hd bag (set-up
`--bags`), with the `rosbags` package:

    make_two_camera_bag.py SOURCE_BAG OUT_BAG [--hz 15] [--left-offset-ms 20] [--left-stamp zero]
                           [--frames N]

SOURCE_BAG is any bag with bgr8 frames on /camera/image_raw (vtest_hd, or vtest for the tests;
--frames N takes the first N). Topics, sensor_msgs/msg/Image bgr8, one message per source frame:
- /front/image_raw  the source frames (1280x720 from vtest_hd);
- /left/image_raw   the same frames scaled to 640x272 (OpenCV INTER_AREA).
Frame i of the front camera is stamped 1700000000 s + i / HZ; the left camera's frame i is
stamped LEFT_OFFSET_MS later (the rig of issue 10), or 0 with --left-stamp zero (a driver whose
clock is unset). Receive (log) times follow the front stamps (+ the offset for the left camera),
so players publish at HZ per camera. MCAP, uncompressed. The output depends only on the input
bag and the arguments.
"""
import argparse
import shutil
from pathlib import Path

import cv2
import numpy as np
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

BASE_NS = 1_700_000_000 * 1_000_000_000


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--hz", type=float, default=15.0)
    ap.add_argument("--left-offset-ms", type=float, default=20.0)
    ap.add_argument("--left-stamp", choices=("offset", "zero"), default="offset")
    ap.add_argument("--frames", type=int, default=None)
    args = ap.parse_args()

    ts = get_typestore(Stores.ROS2_JAZZY)
    Image = ts.types["sensor_msgs/msg/Image"]
    Header = ts.types["std_msgs/msg/Header"]
    Time = ts.types["builtin_interfaces/msg/Time"]

    frames = []
    with Reader(args.source) as reader:
        conns = [c for c in reader.connections if c.topic == "/camera/image_raw"]
        for conn, _, raw in reader.messages(connections=conns):
            m = ts.deserialize_cdr(raw, conn.msgtype)
            frames.append(np.asarray(m.data).reshape(m.height, m.width, 3))
            if args.frames is not None and len(frames) >= args.frames:
                break

    def image(stamp_ns, frame_id, bgr):
        h, w, _ = bgr.shape
        header = Header(stamp=Time(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000),
                        frame_id=frame_id)
        msg = Image(header=header, height=h, width=w, encoding="bgr8", is_bigendian=0, step=3 * w,
                    data=np.ascontiguousarray(bgr).reshape(-1))
        return ts.serialize_cdr(msg, Image.__msgtype__)

    shutil.rmtree(args.out, ignore_errors=True)
    period_ns = int(round(1e9 / args.hz))
    offset_ns = int(round(args.left_offset_ms * 1e6))
    with Writer(args.out, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        front = w.add_connection("/front/image_raw", Image.__msgtype__, typestore=ts)
        left = w.add_connection("/left/image_raw", Image.__msgtype__, typestore=ts)
        for i, bgr in enumerate(frames):
            t = BASE_NS + i * period_ns
            small = cv2.resize(bgr, (640, 272), interpolation=cv2.INTER_AREA)
            w.write(front, t, image(t, "front", bgr))
            left_stamp = 0 if args.left_stamp == "zero" else t + offset_ns
            w.write(left, t + offset_ns, image(left_stamp, "left", small))
    print(f"{args.out}: {len(frames)} frames per camera at {args.hz} Hz")


if __name__ == "__main__":
    main()

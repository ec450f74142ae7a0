#!/usr/bin/env python3
"""Writes a small MCAP bag with broken camera messages, for `lookout replay`'s bad-input
handling (tests/replay.rs), with the `rosbags` package:

    write_bad_bag.py OUT_DIR

OUT_DIR/bad: /camera/image_raw (sensor_msgs/msg/Image), 4 messages at receive times 1..4 s:
  0: a valid 64x48 bgr8 frame (mid grey), stamp (10, 0);
  1: the first 20 bytes of a valid message (truncated CDR);
  2: a 64x48 frame with encoding "yuv999" (unknown), stamp (12, 0);
  3: a valid 64x48 bgr8 frame, stamp (13, 0).
"""
import shutil
import sys
from pathlib import Path

import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore


def main():
    path = Path(sys.argv[1]) / "bad"
    shutil.rmtree(path, ignore_errors=True)
    ts = get_typestore(Stores.ROS2_JAZZY)
    Image = ts.types["sensor_msgs/msg/Image"]
    Header = ts.types["std_msgs/msg/Header"]
    Time = ts.types["builtin_interfaces/msg/Time"]

    def frame(sec, encoding):
        msg = Image(header=Header(stamp=Time(sec=sec, nanosec=0), frame_id="cam"), height=48, width=64,
                    encoding=encoding, is_bigendian=0, step=64 * 3,
                    data=np.full(64 * 48 * 3, 128, dtype=np.uint8))
        return ts.serialize_cdr(msg, Image.__msgtype__)

    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        c = w.add_connection("/camera/image_raw", Image.__msgtype__, typestore=ts)
        for k, data in enumerate([frame(10, "bgr8"), frame(11, "bgr8")[:20], frame(12, "yuv999"),
                                  frame(13, "bgr8")]):
            w.write(c, (k + 1) * 1_000_000_000, data)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Writes the small rosbag2 bags that tests/bag_read.rs reads, with the `rosbags` package (an
implementation independent of lookout's reader).

    write_test_bag.py OUT_DIR JPEG

Creates OUT_DIR/mcap (storage mcap) and OUT_DIR/sqlite3 (storage sqlite3), each with:
- /cam/image_raw (sensor_msgs/msg/Image): 3 frames, 4x2 bgr8, row step 16 (4 bytes of padding),
  pixel bytes (i*7+k) % 256 for frame k, stamps (100+k, 1000*k), frame_id "cam_optical";
- /cam/compressed (sensor_msgs/msg/CompressedImage): 2 frames of JPEG, format "jpeg",
  stamps (200+k, 0), frame_id "cam_compressed";
- /chatter (std_msgs/msg/String): 1 message "not an image".
Receive times are 1e9 * (k + 1) ns in writing order.
"""
import shutil
import sys
from pathlib import Path

import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore


def main():
    out, jpeg = Path(sys.argv[1]), Path(sys.argv[2]).read_bytes()
    ts = get_typestore(Stores.ROS2_JAZZY)
    Image = ts.types["sensor_msgs/msg/Image"]
    Compressed = ts.types["sensor_msgs/msg/CompressedImage"]
    String = ts.types["std_msgs/msg/String"]
    Header = ts.types["std_msgs/msg/Header"]
    Time = ts.types["builtin_interfaces/msg/Time"]
    for name, plugin in (("mcap", StoragePlugin.MCAP), ("sqlite3", StoragePlugin.SQLITE3)):
        path = out / name
        shutil.rmtree(path, ignore_errors=True)
        with Writer(path, version=9, storage_plugin=plugin) as w:
            raw = w.add_connection("/cam/image_raw", Image.__msgtype__, typestore=ts)
            comp = w.add_connection("/cam/compressed", Compressed.__msgtype__, typestore=ts)
            chat = w.add_connection("/chatter", String.__msgtype__, typestore=ts)
            t = 0
            for k in range(3):
                data = np.array([(i * 7 + k) % 256 for i in range(16 * 2)], dtype=np.uint8)
                msg = Image(header=Header(stamp=Time(sec=100 + k, nanosec=1000 * k), frame_id="cam_optical"),
                            height=2, width=4, encoding="bgr8", is_bigendian=0, step=16, data=data)
                t += 1
                w.write(raw, t * 1_000_000_000, ts.serialize_cdr(msg, Image.__msgtype__))
                if k < 2:
                    msg = Compressed(header=Header(stamp=Time(sec=200 + k, nanosec=0), frame_id="cam_compressed"),
                                     format="jpeg", data=np.frombuffer(jpeg, dtype=np.uint8))
                    t += 1
                    w.write(comp, t * 1_000_000_000, ts.serialize_cdr(msg, Compressed.__msgtype__))
            t += 1
            w.write(chat, t * 1_000_000_000, ts.serialize_cdr(String(data="not an image"), String.__msgtype__))


if __name__ == "__main__":
    main()

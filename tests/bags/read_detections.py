#!/usr/bin/env python3
"""Reads a bag written by `lookout replay` with the `rosbags` package (an implementation
independent of lookout), using only the message definitions embedded in the bag, and prints one
JSON document on stdout:

    read_detections.py BAG

{"custom_data": {...}, "topics": {name: [type, count]},
 "messages": [{"topic", "log_time", "stamp": [sec, nanosec], "frame_id",
               "detections": [[class_id, score, cx, cy, theta, w, h, id]]}],   (Detection2DArray)
 "diagnostics": [{"log_time", "status": [[name, level, message, {key: value}]]}],
 "annotations": [{"topic", "log_time", "stamps": [[sec, nanosec]], "points": [[type, [[x, y]]]],
                  "texts": [text]}],   (foxglove_msgs/ImageAnnotations)
 "reserialized_identical": bool}   (rosbags re-serializes every message to the same bytes)
"""
import json
import sys
from pathlib import Path

import yaml
from rosbags.highlevel import AnyReader


def main():
    path = Path(sys.argv[1])
    out = {"topics": {}, "messages": [], "diagnostics": [], "annotations": [],
           "reserialized_identical": True}
    info = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    out["custom_data"] = info.get("custom_data") or {}
    with AnyReader([path]) as reader:
        for c in reader.connections:
            out["topics"][c.topic] = [c.msgtype, c.msgcount]
        for conn, t, raw in reader.messages():
            msg = reader.deserialize(raw, conn.msgtype)
            if reader.typestore.serialize_cdr(msg, conn.msgtype) != bytes(raw):
                out["reserialized_identical"] = False
            if conn.msgtype == "vision_msgs/msg/Detection2DArray":
                out["messages"].append({
                    "topic": conn.topic,
                    "log_time": t,
                    "stamp": [msg.header.stamp.sec, msg.header.stamp.nanosec],
                    "frame_id": msg.header.frame_id,
                    "detections": [[d.results[0].hypothesis.class_id, d.results[0].hypothesis.score,
                                    d.bbox.center.position.x, d.bbox.center.position.y,
                                    d.bbox.center.theta, d.bbox.size_x, d.bbox.size_y, d.id]
                                   for d in msg.detections],
                })
            elif conn.msgtype == "foxglove_msgs/msg/ImageAnnotations":
                out["annotations"].append({
                    "topic": conn.topic,
                    "log_time": t,
                    "stamps": [[p.timestamp.sec, p.timestamp.nanosec] for p in msg.points],
                    "points": [[int(p.type), [[q.x, q.y] for q in p.points]] for p in msg.points],
                    "texts": [x.text for x in msg.texts],
                })
            elif conn.msgtype == "diagnostic_msgs/msg/DiagnosticArray":
                out["diagnostics"].append({
                    "log_time": t,
                    "status": [[s.name, int(s.level), s.message, {kv.key: kv.value for kv in s.values}]
                               for s in msg.status],
                })
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()

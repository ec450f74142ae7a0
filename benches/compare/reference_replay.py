#!/usr/bin/env python3
"""The Python reference for `lookout replay`: the same job written the way most ROS users write
it (rosbags + OpenCV + NumPy + onnxruntime), to measure lookout against side by side.

    reference_replay.py BAG --model MODEL.onnx --topic TOPIC [--providers cuda,cpu]
                        [--conf 0.25] [--iou 0.45] [--report FILE.json]

For every message on TOPIC (sensor_msgs/Image bgr8/rgb8/mono8 or CompressedImage JPEG/PNG), in
bag order: decode (NumPy view of the raw bytes, or cv2.imdecode), letterbox to the model input
(cv2.resize INTER_LINEAR, cv2.copyMakeBorder with 114), BGR->RGB, /255, HWC->CHW, float32;
onnxruntime run; YOLOv5-layout decode ([1, N, 5+C]: cx, cy, w, h, objectness, classes),
confidence filter and class-aware NMS (cv2.dnn.NMSBoxesBatched); boxes back to image pixels.
Stage times are taken with time.perf_counter (decode + pre-processing together as `preprocess`,
as lookout reports them). Prints and writes a JSON report with p50/p90/p99/max per stage,
frames/s and the peak RSS (MB). The onnxruntime default thread settings are kept.
"""
import argparse
import json
import resource
import time
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
from rosbags.highlevel import AnyReader


def letterbox(img, h, w):
    """Returns the padded (h, w, 3) image, the scale and the (left, top) padding."""
    ih, iw = img.shape[:2]
    r = min(h / ih, w / iw)
    nw, nh = int(round(iw * r)), int(round(ih * r))
    resized = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
    dw, dh = (w - nw) / 2, (h - nh) / 2
    top, left = int(round(dh - 0.1)), int(round(dw - 0.1))
    out = cv2.copyMakeBorder(resized, top, h - nh - top, left, w - nw - left,
                             cv2.BORDER_CONSTANT, value=(114, 114, 114))
    return out, r, left, top


def decode_image(msg, kind):
    """BGR (or mono) uint8 image of a message."""
    if kind == "compressed":
        return cv2.imdecode(np.frombuffer(msg.data, np.uint8), cv2.IMREAD_COLOR)
    ch = {"bgr8": 3, "rgb8": 3, "mono8": 1, "bgra8": 4, "rgba8": 4}[msg.encoding]
    img = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.step)[:, :msg.width * ch]
    img = img.reshape(msg.height, msg.width, ch)
    if msg.encoding == "rgb8":
        img = img[:, :, ::-1]
    elif msg.encoding in ("bgra8", "rgba8"):
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR if msg.encoding == "bgra8" else cv2.COLOR_RGBA2BGR)
    elif ch == 1:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    return img


def postprocess(out, conf, iou, r, left, top, iw, ih):
    pred = out[0]
    scores = pred[:, 4:5] * pred[:, 5:]
    cls = scores.argmax(1)
    best = scores[np.arange(len(cls)), cls]
    keep = best >= conf
    pred, cls, best = pred[keep], cls[keep], best[keep]
    boxes = np.stack([pred[:, 0] - pred[:, 2] / 2, pred[:, 1] - pred[:, 3] / 2, pred[:, 2], pred[:, 3]], 1)
    idx = cv2.dnn.NMSBoxesBatched(boxes.tolist(), best.tolist(), cls.tolist(), conf, iou) if len(best) else []
    dets = []
    for i in np.array(idx).reshape(-1)[:100]:
        x, y, w, h = boxes[i]
        x1 = float(np.clip((x - left) / r, 0, iw)); y1 = float(np.clip((y - top) / r, 0, ih))
        x2 = float(np.clip((x + w - left) / r, 0, iw)); y2 = float(np.clip((y + h - top) / r, 0, ih))
        dets.append((int(cls[i]), float(best[i]), [x1, y1, x2, y2]))
    return dets


def percentiles(values):
    a = np.asarray(values) * 1e3
    if not len(a):
        return {}
    return {k: round(float(np.percentile(a, q)), 3) for k, q in
            (("p50", 50), ("p90", 90), ("p99", 99))} | {"max": round(float(a.max()), 3)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bag", type=Path)
    ap.add_argument("--model", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--providers", default="cpu")
    ap.add_argument("--conf", type=float, default=0.25)
    ap.add_argument("--iou", type=float, default=0.45)
    ap.add_argument("--report", type=Path)
    args = ap.parse_args()

    names = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
             "tensorrt": "TensorrtExecutionProvider"}
    session = ort.InferenceSession(args.model, providers=[names[p] for p in args.providers.split(",")])
    inp = session.get_inputs()[0]
    _, _, h, w = inp.shape
    session.run(None, {inp.name: np.zeros((1, 3, h, w), np.float32)})  # warm-up, as lookout does

    pre_s, inf_s, post_s, e2e_s = [], [], [], []
    detections = 0
    started = time.perf_counter()
    with AnyReader([args.bag]) as reader:
        conns = [c for c in reader.connections if c.topic == args.topic]
        if not conns:
            raise SystemExit(f"no topic {args.topic} in {args.bag}")
        kind = "compressed" if conns[0].msgtype.endswith("CompressedImage") else "image"
        for conn, _, raw in reader.messages(connections=conns):
            msg = reader.deserialize(raw, conn.msgtype)
            t0 = time.perf_counter()
            img = decode_image(msg, kind)
            ih, iw = img.shape[:2]
            boxed, r, left, top = letterbox(img, h, w)
            tensor = np.ascontiguousarray(boxed[:, :, ::-1].transpose(2, 0, 1), dtype=np.float32)[None] / 255.0
            t1 = time.perf_counter()
            out = session.run(None, {inp.name: tensor})[0]
            t2 = time.perf_counter()
            detections += len(postprocess(out, args.conf, args.iou, r, left, top, iw, ih))
            t3 = time.perf_counter()
            pre_s.append(t1 - t0); inf_s.append(t2 - t1); post_s.append(t3 - t2); e2e_s.append(t3 - t0)
    wall = time.perf_counter() - started
    report = {
        "implementation": "python (rosbags, cv2, numpy, onnxruntime)",
        "onnxruntime": ort.__version__,
        "execution_provider": session.get_providers()[0],
        "frames_processed": len(e2e_s),
        "detections": detections,
        "wall_s": round(wall, 3),
        "frames_per_s": round(len(e2e_s) / wall, 2) if wall else 0.0,
        "latency_ms": {"e2e": percentiles(e2e_s), "preprocess": percentiles(pre_s),
                       "inference": percentiles(inf_s), "postprocess": percentiles(post_s)},
        "first_frame_ms": {"e2e": round(e2e_s[0] * 1e3, 3), "inference": round(inf_s[0] * 1e3, 3)} if e2e_s else {},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    text = json.dumps(report, indent=1)
    if args.report:
        args.report.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()

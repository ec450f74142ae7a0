#!/usr/bin/env python3
"""Reference YOLO detector used to cross-check the Rust implementation.

Runs an ONNX model produced by ``darknet2onnx.py`` (input ``images``
[1, 3, H, W] RGB 0..1, output [1, N, 5 + nc] in the YOLOv5 layout: cx, cy, w, h
in input pixels, objectness, class probabilities) with onnxruntime and prints
one JSON line per image:

    {"image": "bus.jpg", "detections": [{"class": "bus", "score": 0.58,
                                          "bbox": [x1, y1, x2, y2]}]}

Pipeline (ultralytics-style letterbox):
* r = min(H / h, W / w); resized size = (round(w * r), round(h * r)) with
  Python's round (half to even); bilinear resize to uint8.  The default
  (``--resize pil``) is PIL's BILINEAR, a triangle filter whose support grows
  with the downscale factor (antialiased, like the Rust ``image`` crate's
  ``FilterType::Triangle``).  ``--resize cv2`` is plain 2-tap bilinear with
  half-pixel centres (OpenCV INTER_LINEAR, as ultralytics uses).  Tiny
  models are sensitive to this choice (bus.jpg bus score 0.59 vs 0.33);
* pad with 114 to H x W: top = round(dh - 0.1), left = round(dw - 0.1) where
  dh, dw are half the padding;
* /255, HWC -> CHW, float32;
* score = objectness * best class probability, kept when >= --conf;
* class-aware greedy NMS with IoU > --iou suppressed;
* boxes mapped back to original pixels ((v - pad) / r) and clipped.

Usage:
    python scripts/reference_detect.py --model model.onnx --names coco.names \\
        [--conf 0.25] [--iou 0.45] [--resize pil|cv2] IMAGE [IMAGE ...]
"""

import argparse
import json
import os

import numpy as np
import onnxruntime as ort
from PIL import Image


def resize_pil(img, new_w, new_h):
    """PIL BILINEAR (antialiased triangle filter) resize of an HxWx3 uint8 array."""
    return np.asarray(Image.fromarray(img).resize((new_w, new_h), Image.Resampling.BILINEAR))


def resize_cv2(img, new_w, new_h):
    """2-tap bilinear resize of an HxWxC uint8 array (half-pixel centres)."""
    h, w = img.shape[:2]

    def axis(out_n, in_n):
        src = (np.arange(out_n, dtype=np.float64) + 0.5) * (in_n / out_n) - 0.5
        src = np.clip(src, 0, in_n - 1)
        i0 = np.floor(src).astype(np.int64)
        i1 = np.minimum(i0 + 1, in_n - 1)
        return i0, i1, src - i0

    y0, y1, fy = axis(new_h, h)
    x0, x1, fx = axis(new_w, w)
    f = img.astype(np.float64)
    top = f[y0][:, x0] * (1 - fx)[None, :, None] + f[y0][:, x1] * fx[None, :, None]
    bot = f[y1][:, x0] * (1 - fx)[None, :, None] + f[y1][:, x1] * fx[None, :, None]
    out = top * (1 - fy)[:, None, None] + bot * fy[:, None, None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


RESIZERS = {"pil": resize_pil, "cv2": resize_cv2}


def letterbox(img, net_h, net_w, resize=resize_pil):
    """Return (canvas uint8 HxWx3, ratio, (left, top))."""
    h, w = img.shape[:2]
    r = min(net_h / h, net_w / w)
    new_w, new_h = round(w * r), round(h * r)
    if (new_w, new_h) != (w, h):
        img = resize(img, new_w, new_h)
    dw, dh = (net_w - new_w) / 2, (net_h - new_h) / 2
    top, left = round(dh - 0.1), round(dw - 0.1)
    canvas = np.full((net_h, net_w, 3), 114, np.uint8)
    canvas[top:top + new_h, left:left + new_w] = img
    return canvas, r, (left, top)


def iou(box, boxes):
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / np.maximum(area(box) + area(boxes) - inter, 1e-12)


def nms(boxes, scores, classes, iou_thr):
    """Class-aware greedy NMS; returns kept indices in descending score order."""
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        same = classes[rest] == classes[i]
        drop = same & (iou(boxes[i], boxes[rest]) > iou_thr)
        order = rest[~drop]
    return keep


def detect(session, names, path, conf, iou_thr, resize=resize_pil):
    img = np.asarray(Image.open(path).convert("RGB"))
    _, _, net_h, net_w = session.get_inputs()[0].shape
    canvas, r, (left, top) = letterbox(img, net_h, net_w, resize)
    x = (canvas.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
    pred = session.run(None, {session.get_inputs()[0].name: np.ascontiguousarray(x)})[0][0]
    cls = pred[:, 5:].argmax(1)
    scores = pred[:, 4] * pred[np.arange(len(pred)), 5 + cls]
    sel = scores >= conf
    pred, cls, scores = pred[sel].astype(np.float64), cls[sel], scores[sel].astype(np.float64)
    boxes = np.stack([pred[:, 0] - pred[:, 2] / 2, pred[:, 1] - pred[:, 3] / 2,
                      pred[:, 0] + pred[:, 2] / 2, pred[:, 1] + pred[:, 3] / 2], 1)
    dets = []
    h, w = img.shape[:2]
    for i in nms(boxes, scores, cls, iou_thr):
        b = (boxes[i] - [left, top, left, top]) / r
        b = np.clip(b, 0, [w, h, w, h])
        dets.append({"class": names[cls[i]], "score": round(float(scores[i]), 4),
                     "bbox": [round(float(v), 1) for v in b]})
    return {"image": os.path.basename(path), "detections": dets}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--names", required=True)
    ap.add_argument("--conf", type=float, default=0.25)
    ap.add_argument("--iou", type=float, default=0.45)
    ap.add_argument("--resize", choices=sorted(RESIZERS), default="pil")
    ap.add_argument("images", nargs="+")
    args = ap.parse_args()
    with open(args.names) as f:
        names = [line.strip() for line in f if line.strip()]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # deterministic reductions
    session = ort.InferenceSession(args.model, opts, providers=["CPUExecutionProvider"])
    for path in args.images:
        print(json.dumps(detect(session, names, path, args.conf, args.iou,
                                RESIZERS[args.resize])))


if __name__ == "__main__":
    main()

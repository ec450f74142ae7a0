#!/usr/bin/env python3
"""Convert a Darknet (cfg + weights) YOLO model to a deterministic ONNX file.

Only the Python standard library, numpy and onnx are used.  The produced graph
has one input ``images`` (float32 [1, C, H, W], RGB scaled to 0..1, size taken
from the cfg [net] section) and one output ``output0`` (float32 [1, N, 5 + nc])
in the YOLOv5 layout: for every [yolo] head in cfg order, rows are ordered
(anchor, y, x) and the columns are cx, cy, w, h in input pixels, objectness
and nc class probabilities (both after sigmoid).  No NMS is performed.

Darknet facts this converter relies on:

* Layer indices count every section after [net] (including [yolo]); [route]
  ``layers`` are relative to the current layer when negative, absolute
  otherwise, and concatenate along channels.
* [convolutional]: ``pad=1`` means padding = size // 2 (else ``padding``).
* [maxpool]: the total padding defaults to size - 1, the window starts at
  offset -padding // 2, so size=2 pads only the right/bottom edge (a stride 1
  size 2 maxpool keeps 13x13); out = (w + padding - size) // stride + 1.
* [upsample]: nearest-neighbour replication by an integer ``stride``.
* [shortcut]: element-wise add of the previous layer and layer ``from``.
* leaky activation: x if x > 0 else 0.1 * x.
* Weights file: int32 major, minor, revision, then ``seen`` as int64 when
  major*10 + minor >= 2 (and both < 1000), else int32.  Per convolution, with
  batch norm: biases, scales, rolling_mean, rolling_var (``filters`` float32
  each), then the kernel [filters, c/groups, size, size]; without batch norm:
  biases then kernel.
* Darknet batch norm is y = scale * (x - mean) / (sqrt(var) + 1e-6) + bias;
  it is folded into the convolution in float64 and stored as float32.
* [yolo] decode: cx = (x + sigmoid(tx)) / W * net_w, w = exp(tw) * anchor_w
  (anchors are in input pixels and selected by ``mask``).

``--layout`` puts the same detections in the two other layouts lookout decodes:

* ``v8``: ``output0`` float32 [1, 4 + nc, N] (YOLOv8/YOLO11): cx, cy, w, h then nc class
  scores (objectness x class probability, the product the YOLOv5 decoder forms), no objectness
  column, one column per candidate;
* ``end2end``: NMS in the graph (ONNX NonMaxSuppression, per class, the given confidence and IoU
  thresholds), ``output0`` float32 [1, D, 6]: x1, y1, x2, y2 (input pixels), score, class, best
  score first, at most D = ``--max-detections`` rows, the rest filled with -1. Each candidate
  keeps only its best class, as the two other decoders do.

``--dynamic-batch`` (v5, v8) names the first dimension of input and output ``batch`` instead
of fixing it at 1, so that one run can take several frames.

Usage:
    python scripts/darknet2onnx.py --cfg X.cfg --weights X.weights \\
        --out model.onnx [--opset 13] [--layout v5|v8|end2end] [--confidence 0.25]
        [--nms-iou 0.45] [--max-detections 100] [--dynamic-batch]

The sha256 of the written file is printed.  Running twice gives identical
bytes (no timestamps, fixed node names, fixed IR version).
"""

import argparse
import hashlib
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

PRODUCER = "lookout-darknet2onnx"
PRODUCER_VERSION = "1.0"


def parse_cfg(text):
    """Return a list of (section_name, {key: value-string}) in file order."""
    sections = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            sections.append((line.strip("[]").strip(), {}))
        elif "=" in line:
            key, value = line.split("=", 1)
            sections[-1][1][key.strip()] = value.strip()
    return sections


def ints(value):
    return [int(v) for v in value.split(",") if v.strip()]


class WeightReader:
    """Sequential float32 reader over a Darknet .weights file."""

    def __init__(self, data):
        major, minor, revision = np.frombuffer(data, "<i4", 3)
        wide_seen = major * 10 + minor >= 2 and major < 1000 and minor < 1000
        self.header = (int(major), int(minor), int(revision))
        self.values = np.frombuffer(data, "<f4", offset=12 + (8 if wide_seen else 4))
        self.pos = 0

    def take(self, count):
        if self.pos + count > self.values.size:
            sys.exit("weights file too short")
        out = self.values[self.pos:self.pos + count].astype(np.float64)
        self.pos += count
        return out


class GraphBuilder:
    """Accumulates ONNX nodes and initializers with deterministic names."""

    def __init__(self):
        self.nodes, self.inits = [], []

    def const(self, name, array):
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op, inputs, name, **attrs):
        self.nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name


def activation(g, x, kind, name):
    if kind == "linear":
        return x
    if kind == "leaky":
        return g.node("LeakyRelu", [x], name + "_leaky", alpha=0.1)
    if kind == "relu":
        return g.node("Relu", [x], name + "_relu")
    if kind == "logistic":
        return g.node("Sigmoid", [x], name + "_logistic")
    sys.exit(f"unsupported activation {kind!r}")


def convolutional(g, x, shape, opts, reader, name):
    c, h, w = shape
    filters, size = int(opts["filters"]), int(opts.get("size", 1))
    stride, groups = int(opts.get("stride", 1)), int(opts.get("groups", 1))
    pad = size // 2 if int(opts.get("pad", 0)) else int(opts.get("padding", 0))
    bias = reader.take(filters)
    if int(opts.get("batch_normalize", 0)):
        scales, mean, var = (reader.take(filters) for _ in range(3))
        s = scales / (np.sqrt(var) + 1e-6)
    else:
        s, mean = np.ones(filters), np.zeros(filters)
    kernel = reader.take(filters * (c // groups) * size * size)
    kernel = kernel.reshape(filters, c // groups, size, size) * s[:, None, None, None]
    bias = bias - mean * s
    wname = g.const(name + "_w", kernel.astype(np.float32))
    bname = g.const(name + "_b", bias.astype(np.float32))
    y = g.node("Conv", [x, wname, bname], name + "_conv", kernel_shape=[size, size],
               strides=[stride, stride], pads=[pad] * 4, group=groups)
    y = activation(g, y, opts.get("activation", "logistic"), name)
    out_hw = ((h + 2 * pad - size) // stride + 1, (w + 2 * pad - size) // stride + 1)
    return y, (filters, *out_hw)


def maxpool(g, x, shape, opts, name):
    c, h, w = shape
    size = int(opts.get("size", 1))
    stride = int(opts.get("stride", 1))
    padding = int(opts.get("padding", size - 1))
    lo, hi = padding // 2, padding - padding // 2
    y = g.node("MaxPool", [x], name + "_maxpool", kernel_shape=[size, size],
               strides=[stride, stride], pads=[lo, lo, hi, hi])
    return y, (c, (h + padding - size) // stride + 1, (w + padding - size) // stride + 1)


def yolo_head(g, x, shape, opts, net_hw, name, batch=1):
    """Decode one [yolo] head to [batch, A*H*W, 5 + nc] in input pixels (batch -1: dynamic)."""
    c, h, w = shape
    anchors = np.array(ints(opts["anchors"]), np.float64).reshape(-1, 2)
    mask = ints(opts["mask"]) if "mask" in opts else list(range(len(anchors)))
    nc, na = int(opts["classes"]), len(mask)
    if c != na * (5 + nc):
        sys.exit(f"{name}: {c} channels, expected {na} * (5 + {nc})")
    if float(opts.get("scale_x_y", 1)) != 1.0:
        sys.exit(f"{name}: scale_x_y is not supported")
    rows = na * h * w
    y = g.node("Reshape", [x, g.const(name + "_shape5", np.array([batch, na, 5 + nc, h, w], np.int64))],
               name + "_reshape5")
    y = g.node("Transpose", [y], name + "_transpose", perm=[0, 1, 3, 4, 2])
    t = g.node("Reshape", [y, g.const(name + "_shape3", np.array([batch, rows, 5 + nc], np.int64))],
               name + "_reshape3")
    sig = g.node("Sigmoid", [t], name + "_sigmoid")

    def cols(src, start, end, tag):
        ins = [src] + [g.const(f"{name}_{tag}_{k}", np.array([v], np.int64))
                       for k, v in (("starts", start), ("ends", end), ("axes", 2))]
        return g.node("Slice", ins, f"{name}_{tag}")

    # Constants in (anchor, y, x) row order.
    gy, gx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    grid = np.stack([gx, gy], -1).reshape(1, 1, h * w, 2).repeat(na, 1).reshape(1, rows, 2)
    anchor_wh = anchors[mask].reshape(1, na, 1, 2).repeat(h * w, 2).reshape(1, rows, 2)
    stride_xy = np.array([net_hw[1] / w, net_hw[0] / h]).reshape(1, 1, 2)

    xy = g.node("Add", [cols(sig, 0, 2, "sxy"), g.const(name + "_grid", grid.astype(np.float32))],
                name + "_xy_grid")
    xy = g.node("Mul", [xy, g.const(name + "_stride", stride_xy.astype(np.float32))], name + "_xy")
    wh = g.node("Exp", [cols(t, 2, 4, "twh")], name + "_exp")
    wh = g.node("Mul", [wh, g.const(name + "_anchors", anchor_wh.astype(np.float32))], name + "_wh")
    rest = cols(sig, 4, 5 + nc, "conf")
    return g.node("Concat", [xy, wh, rest], name + "_decoded", axis=2), rows, nc


def layout_tail(g, raw, rows, nc, layout, conf, iou, max_det):
    """Nodes from the YOLOv5-layout tensor ``raw`` [1, rows, 5 + nc] to ``output0`` in
    ``layout``; returns the output's shape."""
    def cols(src, start, end, tag, axis=2):
        ins = [src] + [g.const(f"tail_{tag}_{k}", np.array([v], np.int64))
                       for k, v in (("starts", start), ("ends", end), ("axes", axis))]
        return g.node("Slice", ins, f"tail_{tag}")

    box = cols(raw, 0, 4, "box")
    scores = g.node("Mul", [cols(raw, 5, 5 + nc, "cls"), cols(raw, 4, 5, "obj")], "tail_scores")
    if layout == "v8":
        cat = g.node("Concat", [box, scores], "tail_v8_rows", axis=2)
        g.node("Transpose", [cat], "output0", perm=[0, 2, 1])
        return [1, 4 + nc, rows]
    def scalar(name, value, dtype):
        # GraphBuilder.const keeps arrays at least 1-D; these must be rank 0.
        g.inits.append(numpy_helper.from_array(np.array(value, dtype), name))
        return name

    # end2end: corners as the decoders form them (c -/+ size / 2), NMS per class.
    half = g.const("tail_half", np.array([0.5], np.float32))
    cx, cy, w, h = (cols(box, k, k + 1, f"c{k}") for k in range(4))
    hw = g.node("Mul", [w, half], "tail_half_w")
    hh = g.node("Mul", [h, half], "tail_half_h")
    xyxy = g.node("Concat", [g.node("Sub", [cx, hw], "tail_x1"), g.node("Sub", [cy, hh], "tail_y1"),
                             g.node("Add", [cx, hw], "tail_x2"), g.node("Add", [cy, hh], "tail_y2")],
                  "tail_xyxy", axis=2)
    # One class per candidate, as the YOLOv5 and YOLOv8 decoders take it: the best class
    # probability's (the first on ties); the other classes' scores are zeroed for NMS.
    best = g.node("ArgMax", [cols(raw, 5, 5 + nc, "cls_best")], "tail_best", axis=2, keepdims=0,
                  select_last_index=0)
    onehot = g.node("OneHot", [best, scalar("tail_depth", nc, np.int64),
                               g.const("tail_onoff", np.array([0.0, 1.0], np.float32))],
                    "tail_onehot", axis=-1)
    scores = g.node("Mul", [scores, onehot], "tail_scores_best")
    scores_t = g.node("Transpose", [scores], "tail_scores_t", perm=[0, 2, 1])
    selected = g.node("NonMaxSuppression", [
        xyxy, scores_t,
        g.const("tail_max_per_class", np.array([max_det], np.int64)),
        g.const("tail_iou", np.array([iou], np.float32)),
        g.const("tail_conf", np.array([conf], np.float32))], "tail_selected")
    zero = g.const("tail_axis0", np.array([0], np.int64))
    class_idx = g.node("Gather", [selected, scalar("tail_col1", 1, np.int64)],
                       "tail_class_idx", axis=1)
    box_idx = g.node("Gather", [selected, scalar("tail_col2", 2, np.int64)],
                     "tail_box_idx", axis=1)
    boxes_sel = g.node("Gather", [g.node("Squeeze", [xyxy, zero], "tail_xyxy0"), box_idx],
                       "tail_boxes_sel", axis=0)
    scores_sel = g.node("GatherND", [g.node("Squeeze", [scores_t, zero], "tail_scores_t0"),
                                     cols(selected, 1, 3, "sel_cb", axis=1)], "tail_scores_sel")
    limit = g.const("tail_limit", np.array([max_det], np.int64))
    k = g.node("Min", [g.node("Shape", [scores_sel], "tail_found"), limit], "tail_k")
    top = helper.make_node("TopK", [scores_sel, k], ["tail_top_scores", "tail_top_idx"],
                           name="tail_topk", axis=0, largest=1, sorted=1)
    g.nodes.append(top)
    one = g.const("tail_axis1", np.array([1], np.int64))
    top_boxes = g.node("Gather", [boxes_sel, "tail_top_idx"], "tail_top_boxes", axis=0)
    top_class = g.node("Cast", [g.node("Gather", [class_idx, "tail_top_idx"], "tail_top_class_i",
                                       axis=0)], "tail_top_class", to=TensorProto.FLOAT)
    found = g.node("Concat", [top_boxes,
                              g.node("Unsqueeze", ["tail_top_scores", one], "tail_score_col"),
                              g.node("Unsqueeze", [top_class, one], "tail_class_col")],
                   "tail_found_rows", axis=1)
    pads = g.node("Concat", [zero, zero, g.node("Sub", [limit, k], "tail_missing"), zero],
                  "tail_pads", axis=0)
    padded = g.node("Pad", [found, pads, scalar("tail_fill", -1.0, np.float32)],
                    "tail_padded", mode="constant")
    g.node("Unsqueeze", [padded, zero], "output0")
    return [1, max_det, 6]


LAYOUT_TEXT = {
    "v5": "yolov5: cx,cy,w,h (input px), obj, classes (sigmoid)",
    "v8": "yolov8: [1, 4+nc, N]: cx,cy,w,h (input px), obj x class (no objectness)",
    "end2end": "end2end: [1, D, 6]: x1,y1,x2,y2 (input px), score, class; NMS in the graph; -1 rows",
}


def convert(cfg_text, weights_data, opset, layout="v5", conf=0.25, iou=0.45, max_det=100,
            dynamic_batch=False):
    sections = parse_cfg(cfg_text)
    if not sections or sections[0][0] not in ("net", "network"):
        sys.exit("cfg must start with [net]")
    net = sections[0][1]
    in_shape = shape = (int(net.get("channels", 3)), int(net["height"]), int(net["width"]))
    reader = WeightReader(weights_data)
    g = GraphBuilder()
    outputs, shapes, heads = [], [], []
    x = "images"
    for i, (kind, opts) in enumerate(sections[1:]):
        name = f"l{i:03d}"
        if kind in ("convolutional", "conv"):
            x, shape = convolutional(g, x, shape, opts, reader, name)
        elif kind in ("maxpool", "max"):
            x, shape = maxpool(g, x, shape, opts, name)
        elif kind == "route":
            idx = [j if j >= 0 else i + j for j in ints(opts["layers"])]
            groups, gid = int(opts.get("groups", 1)), int(opts.get("group_id", 0))
            parts = [outputs[j] for j in idx]
            chans = sum(shapes[j][0] for j in idx)
            if len(parts) == 1:
                x = g.node("Identity", parts, name + "_route")
            else:
                x = g.node("Concat", parts, name + "_route", axis=1)
            if groups > 1:  # AlexeyAB fork (yolov4-tiny): channel slice of one input
                if len(parts) != 1:
                    sys.exit(f"{name}: route groups with several layers is not supported")
                chans //= groups
                ins = [x] + [g.const(f"{name}_group_{k}", np.array([v], np.int64))
                             for k, v in (("starts", gid * chans), ("ends", (gid + 1) * chans),
                                          ("axes", 1))]
                x = g.node("Slice", ins, name + "_group")
            shape = (chans, *shapes[idx[0]][1:])
        elif kind == "upsample":
            s = int(opts.get("stride", 2))
            scales = g.const(name + "_scales", np.array([1, 1, s, s], np.float32))
            x = g.node("Resize", [x, "", scales], name + "_upsample", mode="nearest",
                       coordinate_transformation_mode="asymmetric", nearest_mode="floor")
            shape = (shape[0], shape[1] * s, shape[2] * s)
        elif kind == "shortcut":
            j = int(opts["from"])
            j = j if j >= 0 else i + j
            if shapes[j] != shape:
                sys.exit(f"{name}: shortcut shape mismatch {shapes[j]} vs {shape}")
            x = g.node("Add", [x, outputs[j]], name + "_shortcut")
            x = activation(g, x, opts.get("activation", "linear"), name)
        elif kind in ("yolo", "region"):
            if kind == "region":
                sys.exit("[region] (YOLOv2) heads are not supported")
            heads.append(yolo_head(g, x, shape, opts, in_shape[1:], name,
                                   batch=-1 if dynamic_batch else 1))
        else:
            sys.exit(f"unsupported section [{kind}]")
        outputs.append(x)
        shapes.append(shape)
    if reader.pos != reader.values.size:
        sys.exit(f"weights not fully consumed: {reader.pos} of {reader.values.size} floats")
    if not heads or len({nc for _, _, nc in heads}) != 1:
        sys.exit("expected at least one [yolo] head, all with the same class count")
    rows, nc = sum(r for _, r, _ in heads), heads[0][2]
    if layout == "v5":
        g.node("Concat", [h for h, _, _ in heads], "output0", axis=1)
        out_shape = [1, rows, 5 + nc]
    else:
        raw = g.node("Concat", [h for h, _, _ in heads], "yolov5_rows", axis=1)
        out_shape = layout_tail(g, raw, rows, nc, layout, conf, iou, max_det)
    batch_dim = "batch" if dynamic_batch else 1
    graph = helper.make_graph(
        g.nodes, "darknet_yolo",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch_dim, *in_shape])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [batch_dim, *out_shape[1:]])],
        initializer=g.inits)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset)],
        ir_version=helper.find_min_ir_version_for([helper.make_opsetid("", opset)]),
        producer_name=PRODUCER, producer_version=PRODUCER_VERSION)
    return model, reader.header, nc


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--cfg", required=True)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--opset", type=int, default=13)
    ap.add_argument("--layout", choices=("v5", "v8", "end2end"), default="v5")
    ap.add_argument("--confidence", type=float, default=0.25, help="end2end: NMS score threshold")
    ap.add_argument("--nms-iou", type=float, default=0.45, help="end2end: NMS IoU threshold")
    ap.add_argument("--max-detections", type=int, default=100, help="end2end: rows of output0")
    ap.add_argument("--dynamic-batch", action="store_true",
                    help="v5/v8: a dynamic first dimension `batch` on input and output")
    args = ap.parse_args()
    if args.opset < 13:
        sys.exit("--opset must be >= 13")
    if args.dynamic_batch and args.layout == "end2end":
        sys.exit("--dynamic-batch is for the v5 and v8 layouts (the end2end tail reads batch 0)")
    if not (0 <= args.confidence <= 1 and 0 <= args.nms_iou <= 1 and 1 <= args.max_detections <= 10000):
        sys.exit("--confidence and --nms-iou must be within 0..1, --max-detections within 1..10000")
    with open(args.cfg, "rb") as f:
        cfg_bytes = f.read()
    with open(args.weights, "rb") as f:
        weights_bytes = f.read()
    model, header, nc = convert(cfg_bytes.decode("utf-8"), weights_bytes, args.opset, args.layout,
                                args.confidence, args.nms_iou, args.max_detections,
                                args.dynamic_batch)
    helper.set_model_props(model, {
        "source_cfg_sha256": hashlib.sha256(cfg_bytes).hexdigest(),
        "source_weights_sha256": hashlib.sha256(weights_bytes).hexdigest(),
        "darknet_weights_version": "%d.%d.%d" % header,
        "num_classes": str(nc),
        "output_layout": LAYOUT_TEXT[args.layout],
    })
    if args.layout == "end2end":
        helper.set_model_props(model, {
            **{p.key: p.value for p in model.metadata_props},
            "nms": f"confidence {args.confidence}, iou {args.nms_iou}, max {args.max_detections}",
        })
    onnx.checker.check_model(model, full_check=True)
    data = model.SerializeToString()
    with open(args.out, "wb") as f:
        f.write(data)
    print(hashlib.sha256(data).hexdigest())


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Agreement of `lookout detect` with the reference detector (scripts/reference_detect.py, PIL's
anti-aliased bilinear letterbox) on the test images: per image, detections matched by class and
IoU >= 0.5 (greedy by IoU), the largest score and box-corner differences and the unmatched count.

    accuracy.py LOOKOUT_BIN [LOOKOUT_BIN ...]   (run from the repository root after set-up)

Several binaries (e.g. before and after a change) are compared with the same reference run.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

repo = Path(__file__).resolve().parents[2]
home = Path(os.environ.get("LOOKOUT_HOME") or repo / ".lookout")
images = [str(home / "data/images" / n) for n in ("bus.jpg", "dog.jpg", "person.jpg")]
model = repo / "models/yolov3-tiny/yolov3-tiny.onnx"


def iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def lines(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return {Path(j["image"]).name: j["detections"] for j in map(json.loads, out.splitlines())}


def main():
    names = repo / "models/yolov3-tiny/coco.names"
    manifest = repo / "models/yolov3-tiny/manifest.yaml"
    if not names.exists():
        # The class names live in the manifest; write them out for the reference script.
        import yaml
        names = Path("/tmp/lookout-coco.names")
        names.write_text("\n".join(yaml.safe_load(manifest.read_text())["classes"]) + "\n")
    ref = lines([sys.executable, str(repo / "scripts/reference_detect.py"), "--model", str(model),
                 "--names", str(names), *images])
    for binary in sys.argv[1:]:
        got = lines([binary, "detect", "--json", "--execution-providers", "cpu", *images])
        print(f"{binary}:")
        for image, ref_dets in ref.items():
            pairs = sorted(((iou(a["bbox"], b["bbox"]), i, j) for i, a in enumerate(ref_dets)
                            for j, b in enumerate(got[image]) if a["class"] == b["class"]), reverse=True)
            used_a, used_b, score, box = set(), set(), 0.0, 0.0
            for v, i, j in pairs:
                if v < 0.5 or i in used_a or j in used_b:
                    continue
                used_a.add(i); used_b.add(j)
                a, b = ref_dets[i], got[image][j]
                score = max(score, abs(a["score"] - b["score"]))
                box = max(box, max(abs(p - q) for p, q in zip(a["bbox"], b["bbox"])))
            unmatched = len(ref_dets) - len(used_a) + len(got[image]) - len(used_b)
            print(f"  {image:<11} reference {len(ref_dets):>2}  lookout {len(got[image]):>2}  "
                  f"pairs {len(used_a):>2}  unmatched {unmatched}  "
                  f"score diff max {score:.4f}  box diff max {box:.2f} px")


if __name__ == "__main__":
    main()

"""Writes the committed seed corpus of every fuzz target (fuzz/corpus/<target>/), small valid inputs
for libFuzzer to mutate. Run from the repository root after scripts/setup.sh:

    python fuzz/make_seeds.py DETECTIONS_BAG
    python -c 'import sys; sys.path.insert(0, "fuzz"); import make_seeds; make_seeds.onnx_seeds()'

DETECTIONS_BAG: any `lookout replay` output bag (its detections messages seed cdr_messages), e.g.
`lookout replay .lookout/data/bags/vtest --out /tmp/seed_out`. The bags come from
scripts/make_vtest_bag.py at 16x16, so each seed stays a few kB.
"""

import io
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image as PilImage
from rosbags.rosbag2 import Reader
from rosbags.typesys import Stores, get_typestore

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"


def put(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def main():
    detections_bag = Path(sys.argv[1])
    ts = get_typestore(Stores.ROS2_JAZZY)
    Image = ts.types["sensor_msgs/msg/Image"]
    Compressed = ts.types["sensor_msgs/msg/CompressedImage"]
    Header = ts.types["std_msgs/msg/Header"]
    Time = ts.types["builtin_interfaces/msg/Time"]
    rng = np.random.default_rng(7)
    rgb = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    jpeg, png = io.BytesIO(), io.BytesIO()
    PilImage.fromarray(rgb).save(jpeg, format="JPEG", quality=80)
    PilImage.fromarray(rgb).save(png, format="PNG")
    header = Header(stamp=Time(sec=1, nanosec=2), frame_id="camera")

    raw = Image(header=header, height=12, width=16, encoding="rgb8", is_bigendian=0, step=48,
                data=rgb.reshape(-1))
    put("cdr_messages", "image_rgb8", bytes(ts.serialize_cdr(raw, Image.__msgtype__)))
    comp = Compressed(header=header, format="jpeg", data=np.frombuffer(jpeg.getvalue(), np.uint8))
    put("cdr_messages", "compressed_jpeg", bytes(ts.serialize_cdr(comp, Compressed.__msgtype__)))
    with Reader(detections_bag) as reader:
        for conn, _, data in reader.messages():
            if conn.msgtype == "vision_msgs/msg/Detection2DArray":
                put("cdr_messages", "detection2d_array", bytes(data))
                break

    # raw_frame: [width % 64, width / 64 bit, height, step (u16 le), encoding index, flags, 0].
    for i, (enc, bpp) in enumerate([("rgb8", 3), ("bgr8", 3), ("rgba8", 4), ("bgra8", 4),
                                    ("mono8", 1), ("mono16", 2), ("rgb16", 6), ("bgr16", 6),
                                    ("bayer_rggb8", 1), ("bayer_bggr8", 1), ("bayer_gbrg8", 1),
                                    ("bayer_grbg8", 1), ("yuv422", 2), ("yuv422_yuy2", 2),
                                    ("nv21", 1), ("nv24", 1)]):
        w, h = 16, 12
        step = w * bpp
        rows = h * 3 // 2 if enc == "nv21" else (h * 3 if enc == "nv24" else h)
        pixels = rng.integers(0, 256, step * rows, dtype=np.uint8).tobytes()
        put("raw_frame", enc, bytes([w, 0, h]) + struct.pack("<H", step) + bytes([i, 0, 0]) + pixels)

    # compressed_frame: mode byte (bit 0: PNG, bit 1: two threads, bit 2: reduced scale).
    put("compressed_frame", "jpeg", bytes([0]) + jpeg.getvalue())
    put("compressed_frame", "jpeg_two_threads_reduced", bytes([6]) + jpeg.getvalue())
    put("compressed_frame", "png", bytes([1]) + png.getvalue())

    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, str(ROOT / "scripts" / "make_vtest_bag.py"),
                        str(ROOT / ".lookout" / "data" / "vtest.avi"), tmp,
                        "--frames", "2", "--size", "16x16"], check=True)
        mcap = next(Path(tmp, "vtest").glob("*.mcap"))
        put("mcap_reader", "vtest_16x16", mcap.read_bytes())
        db3 = next(Path(tmp, "vtest_sqlite3").glob("*.db3"))
        put("sqlite_reader", "vtest_16x16", db3.read_bytes())

    for f in ["config/lookout.yaml", "config/vtest.yaml"]:
        put("params_file", Path(f).stem, (ROOT / f).read_bytes())
    # The documented parameters with a shadow model and incident capture set (commented out
    # there).
    documented = (ROOT / "config/lookout.yaml").read_text()
    put("params_file", "shadow", documented
        .replace("# model: /path/to/candidate/manifest.yaml", "model: models/yolov3-tiny/manifest.yaml")
        .replace("# thresholds: {confidence: 0.5}", "thresholds: {confidence: 0.5}")
        .replace("# dir: /var/lib/lookout/incidents", "dir: /var/lib/lookout/incidents").encode())
    put("model_manifest", "yolov3_tiny", (ROOT / "models/yolov3-tiny/manifest.yaml").read_bytes())
    onnx_seeds()


def onnx_seeds():
    """The three converted layouts with their weights emptied (graph, shapes, metadata kept)."""
    import onnx

    for layout in ("yolov3-tiny", "yolov3-tiny-v8", "yolov3-tiny-end2end"):
        model = onnx.load(str(ROOT / "models" / layout / f"{layout}.onnx"))
        for init in model.graph.initializer:
            init.ClearField("raw_data")
            init.ClearField("float_data")
            init.ClearField("int64_data")
        put("onnx_info", layout.replace("-", "_"), model.SerializeToString())


if __name__ == "__main__":
    main()

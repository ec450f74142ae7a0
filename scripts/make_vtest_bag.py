#!/usr/bin/env python3
"""Builds the vtest bags from OpenCV's pedestrian video (Debian opencv-doc,
examples/data/vtest.avi: 768x576, 10 frames/s, 795 frames) with the `rosbags` package, an
implementation of rosbag2 independent of lookout's reader.

    make_vtest_bag.py AVI OUT_DIR [--frames N] [--size WxH] [--storage mcap|sqlite3|both]
                      [--name NAME] [--black FROM:TO] [--gain G]

Writes two rosbag2 bags (metadata.yaml version 9, ROS 2 Jazzy types) with the same messages:
- OUT_DIR/vtest        storage mcap, zstd-compressed chunks (rosbag2's `zstd_fast`-like preset);
- OUT_DIR/vtest_sqlite3 storage sqlite3 (the Humble default).
Topics, one message per video frame, in frame order:
- /camera/image_raw            sensor_msgs/msg/Image, bgr8, step 3*width;
- /camera/image_raw/compressed sensor_msgs/msg/CompressedImage, format "jpeg" (Pillow, quality 90).
header.stamp = 1700000000 s + frame_time (from the video's timestamps: 100 ms apart);
header.frame_id = "camera_optical_frame"; receive (log) time = stamp + 5 ms for the raw image and
+ 6 ms for the compressed one. With --size every frame is first resized to WxH (Pillow, bilinear), e.g. 1280x720 for
the HD figures; --storage writes one storage only (the sqlite3 bag is named NAME_sqlite3); --name
replaces `vtest` in the bag folders' names; --black FROM:TO writes frames FROM to TO-1 all black
(a taped-over or covered camera, for the input-health monitor); --gain G multiplies every pixel
by G (0.2: a street at dusk, for the drift monitor). The output depends only on the video file, the
arguments and the packages pinned by set-up.
"""
import argparse
import io
import shutil
from pathlib import Path

import numpy as np
from PIL import Image as PilImage
from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

BASE_NS = 1_700_000_000 * 1_000_000_000
FRAME_ID = "camera_optical_frame"
RAW_TOPIC = "/camera/image_raw"
JPEG_TOPIC = "/camera/image_raw/compressed"


def decoded(avi):
    """Yields (time_ns from the start, HxWx3 bgr uint8) in display order: PyAV (pinned by set-up),
    else OpenCV (machines without PyAV, such as a GPU box that only has opencv-python)."""
    try:
        import av
    except ImportError:
        import cv2
        capture = cv2.VideoCapture(str(avi))
        while True:
            t_ms = capture.get(cv2.CAP_PROP_POS_MSEC)
            ok, bgr = capture.read()
            if not ok:
                return
            yield int(round(t_ms * 1e6)), bgr
    with av.open(str(avi)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            yield int(round(float(frame.pts * stream.time_base) * 1e9)), frame.to_ndarray(format="bgr24")


def frames(avi, limit, size):
    """The first `limit` frames (all if None), resized to `size` (W, H) if given."""
    for k, (t_ns, bgr) in enumerate(decoded(avi)):
        if limit is not None and k >= limit:
            return
        if size is not None:
            rgb = PilImage.fromarray(bgr[:, :, ::-1]).resize(size, PilImage.BILINEAR)
            bgr = np.ascontiguousarray(np.asarray(rgb)[:, :, ::-1])
        yield t_ns, bgr


def parse_range(text):
    """`FROM:TO` -> range(FROM, TO)."""
    try:
        a, b = (int(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected FROM:TO, got {text!r}") from None
    if not 0 <= a < b:
        raise argparse.ArgumentTypeError(f"empty or negative range: {text}")
    return range(a, b)


def parse_size(text):
    """`WxH` -> (W, H)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WxH, got {text!r}") from None
    if not (16 <= w <= 8192 and 16 <= h <= 8192):
        raise argparse.ArgumentTypeError(f"size out of range: {text}")
    return w, h


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("avi", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--frames", type=int, default=None, help="only the first N frames")
    ap.add_argument("--size", type=parse_size, default=None, help="resize every frame to WxH")
    ap.add_argument("--storage", choices=("mcap", "sqlite3", "both"), default="both")
    ap.add_argument("--name", default="vtest", help="bag folder name (default vtest)")
    ap.add_argument("--black", type=parse_range, default=range(0), help="FROM:TO: these frames all black")
    ap.add_argument("--gain", type=float, default=1.0, help="multiply every pixel by G (0 < G <= 1)")
    args = ap.parse_args()

    ts = get_typestore(Stores.ROS2_JAZZY)
    Image = ts.types["sensor_msgs/msg/Image"]
    Compressed = ts.types["sensor_msgs/msg/CompressedImage"]
    Header = ts.types["std_msgs/msg/Header"]
    Time = ts.types["builtin_interfaces/msg/Time"]

    # Encode once, write both storages with the same bytes.
    messages = []
    for k, (t_ns, bgr) in enumerate(frames(args.avi, args.frames, args.size)):
        if k in args.black:
            bgr = np.zeros_like(bgr)
        elif args.gain != 1.0:
            bgr = np.clip(np.rint(bgr.astype(np.float32) * args.gain), 0, 255).astype(np.uint8)
        stamp_ns = BASE_NS + t_ns
        header = Header(stamp=Time(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000),
                        frame_id=FRAME_ID)
        h, w, _ = bgr.shape
        raw = Image(header=header, height=h, width=w, encoding="bgr8", is_bigendian=0, step=3 * w,
                    data=np.ascontiguousarray(bgr).reshape(-1))
        buf = io.BytesIO()
        PilImage.fromarray(bgr[:, :, ::-1]).save(buf, format="JPEG", quality=90)
        jpeg = Compressed(header=header, format="jpeg", data=np.frombuffer(buf.getvalue(), dtype=np.uint8))
        messages.append((stamp_ns, ts.serialize_cdr(raw, Image.__msgtype__),
                         ts.serialize_cdr(jpeg, Compressed.__msgtype__)))

    args.out.mkdir(parents=True, exist_ok=True)
    storages = [(args.name, StoragePlugin.MCAP, "mcap"),
                (f"{args.name}_sqlite3", StoragePlugin.SQLITE3, "sqlite3")]
    written = []
    for name, plugin, kind in storages:
        if args.storage not in (kind, "both"):
            continue
        written.append(f"{args.out}/{name} ({kind})")
        path = args.out / name
        shutil.rmtree(path, ignore_errors=True)
        writer = Writer(path, version=9, storage_plugin=plugin)
        if plugin == StoragePlugin.MCAP:
            writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
        with writer as w:
            raw_c = w.add_connection(RAW_TOPIC, Image.__msgtype__, typestore=ts)
            jpeg_c = w.add_connection(JPEG_TOPIC, Compressed.__msgtype__, typestore=ts)
            for stamp_ns, raw, jpeg in messages:
                w.write(raw_c, stamp_ns + 5_000_000, raw)
                w.write(jpeg_c, stamp_ns + 6_000_000, jpeg)
    print(f"vtest bags: {len(messages)} frames per topic in {' and '.join(written)}")


if __name__ == "__main__":
    main()

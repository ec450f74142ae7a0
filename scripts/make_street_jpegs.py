#!/usr/bin/env python3
"""Writes street_<W>x<H>.jpg (640x480, 1280x720, 1920x1080; Pillow, quality 90) from the first
frame of OpenCV's vtest video, for the JPEG benches (benches/preprocess.rs).

    make_street_jpegs.py VTEST_AVI OUT_DIR
"""
import sys
from pathlib import Path

import av
from PIL import Image

avi, out = Path(sys.argv[1]), Path(sys.argv[2])
with av.open(str(avi)) as container:
    frame = next(container.decode(container.streams.video[0])).to_image()
for w, h in ((640, 480), (1280, 720), (1920, 1080)):
    frame.resize((w, h), Image.BILINEAR).save(out / f"street_{w}x{h}.jpg", quality=90)

#!/usr/bin/env python3
"""Splits a rosbag2 bag into N shorter bags by time, as a recorder's --max-bag-duration would,
with the `rosbags` package (independent of lookout's reader and writer).

    split_bag.py BAG OUT_DIR --parts N

Writes OUT_DIR/<bag>_part1 .. _partN, each holding an equal span of the bag's receive times
(every topic), in the input's storage (MCAP with zstd chunks, or sqlite3)
and with its connections (topic, type, QoS). Messages are copied as they are (serialized bytes
and receive times unchanged), so the parts together hold exactly the input's messages. Used for
the fleet-replay figures (README, "Fleet replay on Ray").
"""
import argparse
import shutil
from pathlib import Path

from rosbags.rosbag2 import CompressionFormat, CompressionMode, Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bag", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--parts", type=int, required=True)
    args = ap.parse_args()
    if not 1 <= args.parts <= 10_000:
        ap.error("--parts must be within 1..10000")
    ts = get_typestore(Stores.ROS2_JAZZY)
    with Reader(args.bag) as reader:
        mcap = any(p.suffix == ".mcap" for p in args.bag.iterdir())
        if reader.message_count == 0:
            ap.error(f"{args.bag} holds no messages")
        # Equal spans of receive time (from the bag's metadata: the messages are read once).
        start, span = reader.start_time, reader.end_time - reader.start_time
        bounds = [start + k * span // args.parts for k in range(1, args.parts)]
        args.out.mkdir(parents=True, exist_ok=True)
        writers, conns = [], []
        for k in range(args.parts):
            path = args.out / f"{args.bag.name}_part{k + 1}"
            shutil.rmtree(path, ignore_errors=True)
            w = Writer(path, version=9,
                       storage_plugin=StoragePlugin.MCAP if mcap else StoragePlugin.SQLITE3)
            if mcap:
                w.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
            w.open()
            writers.append(w)
            conns.append({c.id: w.add_connection(c.topic, c.msgtype, typestore=ts,
                                                 serialization_format=c.ext.serialization_format,
                                                 offered_qos_profiles=c.ext.offered_qos_profiles)
                          for c in reader.connections})
        counts = [0] * args.parts
        for conn, t, data in reader.messages():
            k = sum(t >= b for b in bounds)
            writers[k].write(conns[k][conn.id], t, data)
            counts[k] += 1
        for w in writers:
            w.close()
    print(f"{args.bag}: {sum(counts)} messages into {args.parts} bags in {args.out} "
          f"({', '.join(map(str, counts))} messages)")


if __name__ == "__main__":
    main()

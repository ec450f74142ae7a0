"""Calls one of lookout's own services from rclpy, as `ros2 service call` would, and writes the
response (with how long it took) as JSON.

    call_service.py capture --out F                  /lookout/capture    std_srvs/srv/Trigger
    call_service.py load_model MODEL --out F         /lookout/load_model lookout_msgs/srv/LoadModel

Exits non-zero when the service does not appear or answer within --timeout seconds.
"""

import argparse
import json
import sys
import time

import rclpy
from rclpy.node import Node


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("service", choices=["capture", "load_model"])
    ap.add_argument("model", nargs="?", default="")
    ap.add_argument("--node", default="/lookout")
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    rclpy.init()
    node = Node("lookout_test_service_client")
    if args.service == "capture":
        from std_srvs.srv import Trigger

        client = node.create_client(Trigger, f"{args.node}/capture")
        request = Trigger.Request()
    else:
        from lookout_msgs.srv import LoadModel

        client = node.create_client(LoadModel, f"{args.node}/load_model")
        request = LoadModel.Request(model=args.model)
    if not client.wait_for_service(timeout_sec=args.timeout):
        print(f"call_service: {args.service} not offered", file=sys.stderr)
        sys.exit(2)
    asked = time.monotonic()
    future = client.call_async(request)
    rclpy.spin_until_future_complete(node, future, timeout_sec=args.timeout)
    if not future.done():
        print(f"call_service: {args.service} did not answer", file=sys.stderr)
        sys.exit(3)
    r = future.result()
    out = {"success": bool(r.success), "message": r.message,
           "answered_after_s": time.monotonic() - asked}
    if args.service == "load_model":
        out.update(sha256=r.sha256, old_sha256=r.old_sha256, load_ms=r.load_ms)
    with open(args.out, "w") as f:
        json.dump(out, f)
    node.destroy_node()
    rclpy.shutdown()


if __name__ == "__main__":
    main()

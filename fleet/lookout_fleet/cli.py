"""The ``lookout-fleet`` command: ``replay`` and ``compare``.

Exit status: 0 every bag ok (``compare``: every bag within tolerances), 1 some bag failed
(regressed, or is missing on one side), 2 the run could not start (arguments, Ray, the
``lookout check`` of the parameters file on a worker), 130 interrupted (the report of what was
done is still written).
"""

import argparse
import fcntl
import json
import os
import sys
import time
import uuid
from pathlib import Path

from . import __version__, bags as bags_mod, layout, report, tasks

EXIT_OK, EXIT_FAILED, EXIT_START, EXIT_INTERRUPTED = 0, 1, 2, 130


def _lookout_default():
    return os.environ.get("LOOKOUT_BIN", "lookout")


def _common(p):
    p.add_argument("--address", metavar="auto|ray://HOST:PORT",
                   help="an existing Ray cluster (default: start Ray in this process)")
    p.add_argument("--num-cpus", type=int, default=None,
                   help="CPUs of the Ray started in this process (default: every core)")
    p.add_argument("--lookout", default=_lookout_default(), metavar="PATH",
                   help="the lookout binary as the workers see it ($LOOKOUT_BIN, else `lookout` "
                        "on the workers' PATH)")
    p.add_argument("--cpus-per-task", type=int, default=1, metavar="N",
                   help="CPUs each task takes (and ONNX Runtime's intra-op threads); default 1")
    p.add_argument("--gpus-per-task", type=float, default=0.0, metavar="N",
                   help="GPUs each task takes (Ray sets CUDA_VISIBLE_DEVICES); default 0")
    p.add_argument("--timeout-s", type=float, default=0.0, metavar="S",
                   help="per-task limit, seconds; 0 (default): none")


def parser():
    ap = argparse.ArgumentParser(prog="lookout-fleet", description=__doc__.split("\n\n")[0])
    ap.add_argument("--version", action="version", version=f"lookout-fleet {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)
    r = sub.add_parser("replay", help="replay many bags, one Ray task each, into one report")
    r.add_argument("bags", nargs="*", metavar="BAG",
                   help="bags (folders with metadata.yaml, .mcap/.db3 files) or folders of bags")
    r.add_argument("--bag-list", metavar="FILE", help="more bags, one path per line")
    r.add_argument("--params-file", required=True, metavar="FILE")
    r.add_argument("--out", required=True, metavar="DIR",
                   help="output folder, shared by every worker: DIR/<bag name>/ per bag, "
                        "DIR/fleet_report.json")
    r.add_argument("--retries", type=int, default=1, metavar="N",
                   help="times a failed bag is tried again (default 1)")
    r.add_argument("--resume", action="store_true",
                   help="skip bags whose output is complete with the same bag, parameters, "
                        "model sha256, lookout version and options")
    r.add_argument("--execution-providers", metavar="LIST",
                   help="passed to lookout replay (overrides the parameters file)")
    r.add_argument("--diagnostics", action="store_true",
                   help="keep /diagnostics in the detections bags (their timing differs run to "
                        "run; without it each bag is the same bytes for the same inputs)")
    r.add_argument("--json", action="store_true", help="print the fleet report instead of the table")
    r.add_argument("--profile", metavar="FILE.json",
                   help="also write the drift profile of every bag's detections, summed "
                        "(for the node's monitor.profile)")
    _common(r)
    c = sub.add_parser("compare", help="lookout diff per bag between two fleet runs")
    c.add_argument("--baseline", required=True, metavar="DIR")
    c.add_argument("--candidate", required=True, metavar="DIR")
    c.add_argument("--iou", type=float, default=None)
    c.add_argument("--score-tol", type=float, default=None)
    c.add_argument("--box-tol-px", type=float, default=None)
    c.add_argument("--max-unmatched", type=int, default=None)
    c.add_argument("--report", metavar="FILE",
                   help="where to write the comparison (default: CANDIDATE/compare_report.json)")
    c.add_argument("--json", action="store_true", help="print the comparison instead of the table")
    _common(c)
    return ap


def main(argv=None):
    args = parser().parse_args(argv)
    retries = getattr(args, "retries", 0)
    if args.cpus_per_task < 1 or args.gpus_per_task < 0 or args.timeout_s < 0 \
            or not 0 <= retries <= 100:
        print("lookout-fleet: error: --cpus-per-task must be >= 1, --gpus-per-task and "
              "--timeout-s >= 0, --retries within 0..100", file=sys.stderr)
        return EXIT_START
    from . import cluster  # Ray is imported only once the arguments are valid

    cluster.sigterm_as_interrupt()
    try:
        return replay(args, cluster) if args.command == "replay" else compare(args, cluster)
    except (bags_mod.BagError, StartError) as e:
        print(f"lookout-fleet: error: {e}", file=sys.stderr)
        return EXIT_START
    finally:
        cluster.shutdown()


class StartError(RuntimeError):
    """The run cannot start."""


class _Lock:
    """One fleet run per output folder (``DIR/.fleet.lock``, flock), held in a ``with``."""

    def __init__(self, out):
        self.out = out
        self.path = Path(out) / ".fleet.lock"
        self.f = None

    def __enter__(self):
        self.f = open(self.path, "a+")  # noqa: SIM115 - closed in __exit__
        try:
            fcntl.flock(self.f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            self.f.close()
            raise StartError(f"another lookout-fleet run is writing to {self.out} ({self.path})") from e
        return self

    def __exit__(self, *exc):
        self.f.close()


def replay(args, cluster):
    started = time.time()
    bags = bags_mod.discover(args.bags, args.bag_list)
    params = Path(args.params_file).absolute()
    if not params.is_file():
        raise StartError(f"parameters file {params}: not found")
    out = Path(args.out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    with _Lock(out):
        return _replay_locked(args, cluster, started, bags, params, out)


def _replay_locked(args, cluster, started, bags, params, out):
    run_id = uuid.uuid4().hex
    layout.claim(out, run_id)
    layout.remove_leftovers(out)
    resources = cluster.connect(args.address, args.num_cpus)
    _check_resources(args, resources)
    probe = cluster.remote(tasks.probe, cpus=0)
    import ray

    try:
        info = ray.get(probe.remote(args.lookout, str(params), os.getcwd()))
    except ray.exceptions.RayError as e:
        raise StartError(str(e).strip().splitlines()[-1]) from e
    if info["params_sha256"] != layout.sha256_file(params):
        raise StartError(f"the parameters file {params} differs on worker {info['host']}")
    replay_args = ["--intra-op-threads", str(args.cpus_per_task)]
    if not args.diagnostics:
        replay_args.append("--no-diagnostics")
    if args.execution_providers:
        replay_args += ["--execution-providers", args.execution_providers]
    sizes = {b: b.size_bytes() for b in bags}
    keys = {b: {"bag": str(b.path), "bag_bytes": sizes[b], "params_sha256": info["params_sha256"],
                "model_sha256": info["model_sha256"], "lookout_version": info["lookout_version"],
                "replay_args": replay_args} for b in bags}
    todo = [b for b in bags if not (args.resume and layout.is_complete(out / b.name, keys[b]))]
    print(f"lookout-fleet: {len(bags)} bags, {len(todo)} to replay ({len(bags) - len(todo)} "
          f"complete from before); model {info['model']} sha256 {info['model_sha256'][:12]}, "
          f"lookout {info['lookout_version']}; Ray: {resources.get('CPU', 0):g} CPUs, "
          f"{resources.get('GPU', 0):g} GPUs", file=sys.stderr)
    task = cluster.remote(tasks.replay, cpus=args.cpus_per_task, gpus=args.gpus_per_task)

    def submit(bag, attempt):
        return task.remote({
            "bag": str(bag.path), "name": bag.name, "out": str(out), "lookout": args.lookout,
            "params_file": str(params), "key": keys[bag], "replay_args": replay_args,
            "timeout_s": args.timeout_s, "attempt": attempt, "run_id": run_id, "cwd": os.getcwd(),
        })

    def lost(bag, attempt, error):
        return {"name": bag.name, "status": "failed", "error": error, "attempt": attempt}

    progress = cluster.Progress("replay", len(todo), sum(sizes[b] for b in todo))
    interrupted = False
    records = {}
    try:
        records = cluster.run(todo, submit, lambda r: r.get("status") != "ok", args.retries,
                              progress, size_of=sizes.get, lost=lost)
    except KeyboardInterrupt as e:
        interrupted = True
        records = getattr(e, "records", {})
    _note_lost(out, records)
    run = {
        "lookout_fleet_version": __version__,
        "run_id": run_id,
        "interrupted": interrupted,
        "params_file": str(params),
        "params_sha256": info["params_sha256"],
        "model": info["model"],
        "model_sha256": info["model_sha256"],
        "lookout_version": info["lookout_version"],
        "replay_args": replay_args,
        "retries": args.retries,
        "resume": args.resume,
        "ray": {"address": args.address or "local", "cpus": resources.get("CPU", 0),
                "gpus": resources.get("GPU", 0), "cpus_per_task": args.cpus_per_task,
                "gpus_per_task": args.gpus_per_task},
        "started_unix": started,
        "wall_s": round(time.time() - started, 3),
    }
    rep = report.fleet_report(bags, out, run, {b.name for b in records})
    layout.write_json_atomically(out / "fleet_report.json", rep)
    if args.profile:
        _write_profile(Path(args.profile), bags, out)
    table = report.fleet_table(rep)
    _write_text(out / "fleet_summary.txt", table + "\n")
    print(report_json(rep) if args.json else table)
    if interrupted:
        return EXIT_INTERRUPTED
    return EXIT_OK if rep["bags_ok"] == rep["bags_total"] else EXIT_FAILED


def _check_resources(args, resources):
    """A task no node can run would wait for ever: refuse it on the Ray started here; on a
    cluster (which may add nodes as tasks wait) say so."""
    short = [f"{need:g} {what} per task, the cluster has {resources.get(what, 0):g}"
             for what, need in (("CPU", args.cpus_per_task), ("GPU", args.gpus_per_task))
             if need > resources.get(what, 0)]
    if short and not args.address:
        raise StartError("; ".join(short))
    for s in short:
        print(f"lookout-fleet: warning: {s}; the tasks wait until a node that has them joins",
              file=sys.stderr)


def _note_lost(out, records):
    """A bag whose worker died wrote no record of its own: write one, so the folder says why."""
    for bag, rec in records.items():
        folder = out / bag.name
        if rec.get("status") != "ok" and not (folder / layout.TASK_FILE).is_file():
            folder.mkdir(parents=True, exist_ok=True)
            layout.write_json_atomically(folder / layout.TASK_FILE, {**rec, "input": str(bag.path)})


def compare(args, cluster):
    started = time.time()
    base, cand = Path(args.baseline).absolute(), Path(args.candidate).absolute()
    for d in (base, cand):
        if not d.is_dir():
            raise StartError(f"{d}: not a fleet run's output folder")
    ok = lambda d: {p.name for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")  # noqa: E731
                    and (layout.read_json(p / layout.TASK_FILE) or {}).get("status") == "ok"}
    a, b = ok(base), ok(cand)
    both = sorted(a & b)
    diff_args = []
    for flag, v in (("--iou", args.iou), ("--score-tol", args.score_tol),
                    ("--box-tol-px", args.box_tol_px), ("--max-unmatched", args.max_unmatched)):
        if v is not None:
            diff_args += [flag, str(v)]
    resources = cluster.connect(args.address, args.num_cpus)
    print(f"lookout-fleet: comparing {len(both)} bags; Ray: {resources.get('CPU', 0):g} CPUs",
          file=sys.stderr)
    task = cluster.remote(tasks.diff, cpus=args.cpus_per_task)

    def submit(name, attempt):
        return task.remote({"name": name, "lookout": args.lookout, "args": diff_args,
                            "a": str(base / name / layout.BAG_DIR),
                            "b": str(cand / name / layout.BAG_DIR),
                            "timeout_s": args.timeout_s, "cwd": os.getcwd()})

    progress = cluster.Progress("compare", len(both))
    interrupted = False
    try:
        records = cluster.run(
            both, submit, lambda r: r.get("exit_status") not in (0, 1), 0, progress,
            lost=lambda n, a, e: {"name": n, "error": e, "diff": None},
            label=lambda r: "same" if r.get("exit_status") == 0 else "differs")
    except KeyboardInterrupt as e:
        interrupted, records = True, getattr(e, "records", {})
    rows = [report.compare_row(n, records[n]) for n in both if n in records]
    rep = {
        "lookout_fleet_version": __version__,
        "baseline": str(base),
        "candidate": str(cand),
        "tolerances": diff_args,
        "interrupted": interrupted,
        "bags_compared": len(rows),
        "bags_same": sum(r["verdict"] == "same" for r in rows),
        "bags_regressed": sum(r["verdict"] == "regressed" for r in rows),
        "bags_error": sum(r["verdict"] == "error" for r in rows),
        "regressed": [r["name"] for r in rows if r["verdict"] == "regressed"],
        "only_in_baseline": sorted(a - b),
        "only_in_candidate": sorted(b - a),
        "wall_s": round(time.time() - started, 3),
        "bags": rows,
    }
    path = Path(args.report) if args.report else cand / "compare_report.json"
    layout.write_json_atomically(path, rep)
    print(report_json(rep) if args.json else report.compare_table(rep))
    if interrupted:
        return EXIT_INTERRUPTED
    clean = rep["bags_same"] == rep["bags_compared"] and not rep["only_in_baseline"] \
        and not rep["only_in_candidate"]
    return EXIT_OK if clean else EXIT_FAILED


def report_json(rep):
    return json.dumps(rep, indent=2, sort_keys=True)


def _write_profile(path, bags, out):
    """``--profile``: the bags' profiles summed, written whole."""
    try:
        merged, missing = report.merge_profiles(bags, out)
    except ValueError as e:
        print(f"lookout-fleet: no profile written: {e}", file=sys.stderr)
        return
    if missing:
        print(f"lookout-fleet: {len(missing)} bags have no profile (replayed by an older "
              f"lookout-fleet; replay them again without --resume): {', '.join(missing)}",
              file=sys.stderr)
    if merged is None:
        print("lookout-fleet: no bag replayed ok: no profile written", file=sys.stderr)
        return
    layout.write_json_atomically(path, merged)
    print(f"lookout-fleet: profile {path}: {merged['frames']} frames, {merged['detections']} "
          f"detections", file=sys.stderr)


def _write_text(path, text):
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)

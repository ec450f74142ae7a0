"""The one answer: ``fleet_report.json`` / ``compare_report.json`` and their tables.

The fleet report is built from the bags' folders, not from what this run's tasks returned, so a
resumed run reports the whole set: the bags done before and the ones done now.
"""

from . import histogram, layout

COUNT_KEYS = ("frames_in", "frames_processed", "dropped", "deadline_misses", "bad_inputs",
              "messages_written")
STAGES = ("preprocess", "inference", "postprocess", "e2e")
#: Up to this many bags, the table lists every bag; above it, only the failed ones.
TABLE_ALL_UP_TO = 50


def bag_row(bag, out, ran_now):
    """One bag's line of the fleet report, from its folder."""
    folder = out / bag.name
    task = layout.read_json(folder / layout.TASK_FILE) or {}
    report = layout.read_json(folder / layout.REPORT_FILE) or {}
    status = task.get("status") or "missing"
    row = {
        "name": bag.name,
        "input": str(bag.path),
        "status": status,
        "error": task.get("error", "" if status != "missing" else "no output (the run was stopped first)"),
        "attempts": task.get("attempt", 0),
        "host": task.get("host", ""),
        "replayed_in_this_run": bag.name in ran_now,
        "wall_s": task.get("wall_s", 0.0),
        "output": str(folder),
        "detections": sum((report.get("detections_by_class") or {}).values()),
    }
    for k in COUNT_KEYS:
        row[k] = int(report.get(k, 0) or 0)
    row["storage_errors"] = report.get("storage_errors", [])
    return row, report


def merge_profiles(bags, out):
    """The drift profiles of the bags replayed ok (``lookout replay --profile``, one per bag
    folder), summed into one profile of the whole set. Returns (profile or None, names of ok bags
    without a profile: replayed by an older lookout-fleet). Raises ValueError when the bags'
    profiles come from different models."""
    merged, missing = None, []
    for bag in bags:
        folder = out / bag.name
        task = layout.read_json(folder / layout.TASK_FILE) or {}
        if task.get("status") != "ok":
            continue
        p = layout.read_json(folder / layout.PROFILE_FILE)
        if not isinstance(p, dict):
            missing.append(bag.name)
            continue
        if merged is None:
            merged = {k: p[k] for k in ("lookout_version", "model", "model_sha256")}
            merged.update(frames=0, detections=0, classes={},
                          score_bins=[0] * len(p["score_bins"]), size_bins=[0] * len(p["size_bins"]))
        elif p["model_sha256"] != merged["model_sha256"]:
            raise ValueError(f"bag {bag.name}: profile of model sha256 {p['model_sha256']}, the "
                             f"others' is {merged['model_sha256']}")
        merged["frames"] += int(p["frames"])
        merged["detections"] += int(p["detections"])
        for cls, n in p["classes"].items():
            merged["classes"][cls] = merged["classes"].get(cls, 0) + int(n)
        for key in ("score_bins", "size_bins"):
            merged[key] = [a + int(b) for a, b in zip(merged[key], p[key])]
    if merged is not None:
        merged["classes"] = dict(sorted(merged["classes"].items()))
    return merged, missing


def fleet_report(bags, out, run, ran_now):
    """``run``: what describes the run (key, versions, wall time, Ray resources, interrupted)."""
    rows, ok_reports = [], []
    for bag in bags:
        row, report = bag_row(bag, out, ran_now)
        rows.append(row)
        if row["status"] == "ok":
            ok_reports.append((bag.name, report))
    totals = {k: sum(r[k] for r in rows if r["status"] == "ok") for k in COUNT_KEYS}
    by_class = {}
    for _, report in ok_reports:
        for cls, n in (report.get("detections_by_class") or {}).items():
            by_class[cls] = by_class.get(cls, 0) + int(n)
    totals["detections"] = sum(by_class.values())
    totals["detections_by_class"] = dict(sorted(by_class.items()))
    merged = histogram.merge_stages(ok_reports)
    totals["latency_ms"] = {s: merged[s].percentiles_ms() for s in STAGES if s in merged}
    totals["latency_histograms_us"] = {s: merged[s].sparse() for s in STAGES if s in merged}
    replayed_wall = sum(r["wall_s"] for r in rows if r["replayed_in_this_run"])
    return {
        **run,
        "bags_total": len(rows),
        "bags_ok": sum(r["status"] == "ok" for r in rows),
        "bags_failed": sum(r["status"] == "failed" for r in rows),
        "bags_missing": sum(r["status"] == "missing" for r in rows),
        "bags_replayed_in_this_run": sum(r["replayed_in_this_run"] for r in rows),
        "bags_skipped_as_complete": sum(
            (not r["replayed_in_this_run"]) and r["status"] == "ok" for r in rows),
        "task_wall_s_sum": round(replayed_wall, 3),
        "totals_cover": "the bags with status ok",
        "totals": totals,
        "bags": rows,
        "failed": [{k: r[k] for k in ("name", "input", "status", "error", "attempts", "output")}
                   for r in rows if r["status"] != "ok"],
    }


def _table(header, rows):
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    fmt = lambda cells: "  ".join(  # noqa: E731
        str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([fmt(header), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows])


def fleet_table(rep):
    """The summary table of a fleet report, as text."""
    header = ["bag", "status", "frames in", "processed", "dropped", "misses", "bad", "detections",
              "wall s"]
    rows = rep["bags"]
    shown = rows if len(rows) <= TABLE_ALL_UP_TO else [r for r in rows if r["status"] != "ok"]
    lines = []
    body = [[r["name"], r["status"] + ("" if r["replayed_in_this_run"] or r["status"] != "ok" else " (kept)"),
             r["frames_in"], r["frames_processed"], r["dropped"], r["deadline_misses"],
             r["bad_inputs"], r["detections"], f"{r['wall_s']:.1f}"] for r in shown]
    t = rep["totals"]
    body.append([f"total ({rep['bags_ok']} ok)", "", t["frames_in"], t["frames_processed"],
                 t["dropped"], t["deadline_misses"], t["bad_inputs"], t["detections"], ""])
    if len(shown) < len(rows):
        lines.append(f"{len(rows) - len(shown)} ok bags not listed (fleet_report.json has them all)")
    lines.append(_table(header, body))
    lat = t.get("latency_ms") or {}
    if lat:
        names = {"preprocess": "pre-processing", "inference": "inference",
                 "postprocess": "post-processing", "e2e": "end to end"}
        lines.append("")
        lines.append("latency over all frames of the ok bags (merged histograms), ms:")
        lines.append(_table(["stage", "frames", "p50", "p90", "p99", "p99.9", "max"],
                            [[names.get(s, s), p["count"]] + [f"{p[k]:.2f}" for k in
                             ("p50", "p90", "p99", "p999", "max")] for s, p in lat.items()]))
    if t["detections_by_class"]:
        lines.append("")
        lines.append("detections per class: " + ", ".join(
            f"{c} {n}" for c, n in sorted(t["detections_by_class"].items(), key=lambda x: -x[1])))
    lines.append("")
    lines.append(
        f"bags: {rep['bags_ok']} ok, {rep['bags_failed']} failed, {rep['bags_missing']} missing "
        f"of {rep['bags_total']} ({rep['bags_replayed_in_this_run']} replayed in this run, "
        f"{rep['bags_skipped_as_complete']} kept from before); wall {rep['wall_s']:.1f} s")
    if rep.get("interrupted"):
        lines.append("INTERRUPTED: the run was stopped before every bag was done "
                     "(--resume goes on from here)")
    for f in rep["failed"]:
        if f["status"] == "missing":
            lines.append(f"NOT DONE {f['name']} ({f['input']})")
        else:
            lines.append(f"FAILED {f['name']} ({f['input']}) after {f['attempts']} attempt(s): "
                         f"{f['error']}")
    return "\n".join(lines)


def compare_row(name, record):
    """One bag's verdict from its ``lookout diff`` record."""
    d = record.get("diff")
    row = {"name": name, "verdict": "", "failures": [], "max_score_diff": None,
           "max_box_diff_px": None, "unmatched_baseline": 0, "unmatched_candidate": 0,
           "class_counts": {}, "error": record.get("error", "")}
    if d is None:
        row["verdict"] = "error"
        return row
    row["verdict"] = "same" if d.get("within_tolerance") else "regressed"
    row["failures"] = d.get("failures", [])
    row["max_score_diff"] = d.get("max_score_diff")
    row["max_box_diff_px"] = d.get("max_box_diff_px")
    counts = {}
    for topic in (d.get("topics") or {}).values():
        row["unmatched_baseline"] += int(topic.get("unmatched_a", 0))
        row["unmatched_candidate"] += int(topic.get("unmatched_b", 0))
        for cls, c in (topic.get("classes") or {}).items():
            a, b = counts.get(cls, (0, 0))
            counts[cls] = (a + int(c.get("count_a", 0)), b + int(c.get("count_b", 0)))
    row["class_counts"] = {c: {"baseline": a, "candidate": b} for c, (a, b) in sorted(counts.items())}
    return row


def compare_table(rep):
    rows = [r for r in rep["bags"] if r["verdict"] != "same"]
    lines = []
    if rows:
        body = []
        for r in rows:
            changed = ", ".join(f"{c} {v['baseline']}->{v['candidate']}"
                                for c, v in r["class_counts"].items() if v["baseline"] != v["candidate"])
            how = r["error"] or "; ".join(r["failures"])[:160]
            body.append([r["name"], r["verdict"], r["unmatched_baseline"], r["unmatched_candidate"],
                         "" if r["max_score_diff"] is None else f"{r['max_score_diff']:.4f}",
                         "" if r["max_box_diff_px"] is None else f"{r['max_box_diff_px']:.2f}",
                         changed or "-", how])
        lines.append(_table(["bag", "verdict", "unmatched base", "unmatched cand", "max score diff",
                             "max box diff px", "class counts changed", "how"], body))
        lines.append("")
    lines.append(
        f"compared {rep['bags_compared']} bags: {rep['bags_same']} within tolerances, "
        f"{rep['bags_regressed']} regressed, {rep['bags_error']} unreadable; "
        f"only in baseline: {len(rep['only_in_baseline'])}, only in candidate: "
        f"{len(rep['only_in_candidate'])}")
    for which in ("only_in_baseline", "only_in_candidate"):
        if rep[which]:
            lines.append(f"{which.replace('_', ' ')}: {', '.join(rep[which])}")
    return "\n".join(lines)

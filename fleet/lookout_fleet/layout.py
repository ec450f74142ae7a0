"""One bag's output folder, ``OUT/<bag name>/``, and what "complete" means.

The folder holds:

- ``detections/``: the detections bag ``lookout replay`` wrote (with ``--no-diagnostics``
  unless the run asked for /diagnostics, so that it depends only on the key below);
- ``report.json``: the replay report;
- ``replay.log``: what ``lookout replay`` printed;
- ``fleet_task.json``: the task's record: ``status`` (``ok`` or ``failed``), ``key``, attempts,
  error, worker, run id, wall time.

It is written whole in ``OUT/.<name>.partial-<id>/`` and renamed into place when done, so the
folder under its real name is always whole. ``--resume`` skips a bag whose folder says ``ok`` with
the same key: the same input bag (path and size), parameters file (sha256), model (sha256),
lookout version and replay options. Anything else is done again.
"""

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path

TASK_FILE = "fleet_task.json"
REPORT_FILE = "report.json"
PROFILE_FILE = "profile.json"
BAG_DIR = "detections"
LOG_FILE = "replay.log"
#: Which run owns the folder now (written by the driver at its start). A task of an earlier run
#: whose driver was killed may still be running on some worker: it checks this before it starts
#: and before it puts its output in place, and gives up when a newer run has taken over.
RUN_FILE = ".fleet_run.json"
PARTIAL = ".partial-"
OLD = ".old-"


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_json(path, limit_bytes=256 * 1024 * 1024):
    """A JSON file, or None when it is missing, too large or not JSON."""
    try:
        path = Path(path)
        if path.stat().st_size > limit_bytes:
            return None
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_json_atomically(path, value):
    """Writes ``value`` to ``path`` whole or not at all (temporary file, fsync, rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def is_complete(folder, key):
    """Whether ``folder`` holds a successful replay made with ``key``."""
    folder = Path(folder)
    task = read_json(folder / TASK_FILE)
    return (
        isinstance(task, dict)
        and task.get("status") == "ok"
        and task.get("key") == key
        and (folder / REPORT_FILE).is_file()
        and (folder / BAG_DIR / "metadata.yaml").is_file()
    )


def partial_dir(out, name):
    """A fresh folder to write ``name``'s output in, beside its final place."""
    d = Path(out) / f".{name}{PARTIAL}{uuid.uuid4().hex[:12]}"
    d.mkdir(parents=True)
    return d


def commit(partial, final):
    """Puts ``partial`` in ``final``'s place: the old folder (if any) is moved aside first and
    removed after, so ``final`` is at every moment either the old whole folder, absent, or the new
    whole folder."""
    partial, final = Path(partial), Path(final)
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}{OLD}{uuid.uuid4().hex[:12]}")
        os.replace(final, old)
    os.replace(partial, final)
    _fsync_dir(final.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_leftovers(out):
    """Removes what interrupted runs left (``.<name>.partial-*``, ``.<name>.old-*``)."""
    removed = 0
    for p in Path(out).iterdir():
        if p.name.startswith(".") and (PARTIAL in p.name or OLD in p.name) and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
            removed += 1
    return removed


def claim(out, run_id):
    """Marks ``out`` as written by run ``run_id`` from now on."""
    write_json_atomically(Path(out) / RUN_FILE, {"run_id": run_id})


def owns(out, run_id):
    """Whether run ``run_id`` still owns ``out`` (a newer run has not claimed it)."""
    current = read_json(Path(out) / RUN_FILE)
    return isinstance(current, dict) and current.get("run_id") == run_id

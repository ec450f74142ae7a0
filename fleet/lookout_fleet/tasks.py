"""What runs on a Ray worker: ``lookout`` subprocesses and their output folders.

Plain functions (``cluster`` wraps them as Ray tasks). They use only the standard library, so a
worker needs Python, Ray, the ``lookout`` binary with its ONNX Runtime, and the shared folders;
``lookout_fleet`` itself is shipped to a remote cluster with the job. Every failure is returned
as a record with the error, never raised, so the driver decides about retries; only the loss of
the worker itself reaches the driver as a Ray error.
"""

import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from . import layout

#: The most of a subprocess's output kept in a record (the whole is in the log file).
TAIL_BYTES = 4000


try:  # resolved before any fork: the child only calls it
    _PRCTL = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):
    _PRCTL = None
_PR_SET_PDEATHSIG = 1


def _die_with_parent():
    """In the child before exec: SIGTERM when the worker that started it dies (a killed worker
    must not leave a replay running), and a process group of its own (a timeout kills it whole)."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, int(signal.SIGTERM))
    os.setpgid(0, 0)


class Abandoned(RuntimeError):
    """The run this task belongs to is gone: its Ray stopped under it (the worker was orphaned),
    or a newer run owns the output folder."""


#: How often a running replay checks that its run still stands, s.
WATCH_PERIOD_S = 0.5


def _run(cmd, log_path, timeout_s, cwd, still_wanted):
    """Runs ``cmd`` with stdout and stderr into ``log_path``; returns its exit status, or None
    when it ran over ``timeout_s``. Raises ``Abandoned`` (after killing it) as soon as
    ``still_wanted()`` does."""
    deadline = time.monotonic() + timeout_s if timeout_s else None
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(c) for c in cmd],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            preexec_fn=_die_with_parent,
        )
        try:
            while True:
                try:
                    return proc.wait(timeout=WATCH_PERIOD_S)
                except subprocess.TimeoutExpired:
                    pass
                if deadline is not None and time.monotonic() > deadline:
                    _kill(proc)
                    return None
                still_wanted()
        except BaseException:
            _kill(proc)
            raise


def _kill(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _tail(path):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - TAIL_BYTES))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _error_line(text, rc):
    """The line that says why, from lookout's output; else the exit status."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ln.startswith("lookout: error:"):
            return ln[len("lookout: error:"):].strip()
    for ln in reversed(lines):
        if "error" in ln.lower() or "damaged" in ln.lower():
            return ln
    return f"exit status {rc}"


def _cwd(cwd):
    return cwd if cwd and Path(cwd).is_dir() else None


def probe(lookout, params_file, cwd=None):
    """``lookout check --json`` on this worker: its lookout version and the model sha256 the
    parameters file gives there (raises ``RuntimeError`` when the check fails)."""
    proc = subprocess.run(
        [str(lookout), "check", "--params-file", str(params_file), "--json"],
        capture_output=True,
        timeout=600,
        cwd=_cwd(cwd),
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"`lookout check` failed on {socket.gethostname()}: "
            f"{proc.stderr.decode('utf-8', 'replace').strip()[-TAIL_BYTES:]}"
        )
    info = json.loads(proc.stdout.decode("utf-8"))
    info["host"] = socket.gethostname()
    info["params_sha256"] = layout.sha256_file(params_file)
    return info


def replay(spec):
    """Replays one bag into ``spec['out']/spec['name']`` (written aside, renamed into place) and
    returns its record: ``status`` ``ok`` or ``failed``, ``error``, ``host``, ``wall_s``, ...

    ``spec``: bag, name, out, lookout, params_file, key (params_sha256, model_sha256,
    lookout_version, bag, bag_bytes, replay_args), replay_args, timeout_s, attempt, run_id, cwd.
    """
    t0 = time.monotonic()
    parent = os.getppid()

    def still_wanted():
        if os.getppid() != parent:
            raise Abandoned("the Ray this task ran in stopped (its raylet is gone)")
        if not layout.owns(out, spec["run_id"]):
            raise Abandoned("a newer run has taken over the output folder")

    key = spec["key"]
    record = {
        "name": spec["name"],
        "input": spec["bag"],
        "status": "failed",
        "error": "",
        "attempt": spec["attempt"],
        "run_id": spec["run_id"],
        "host": socket.gethostname(),
        "key": key,
        "exit_status": None,
        "wall_s": 0.0,
        "finished_unix": 0.0,
    }
    out = Path(spec["out"])
    partial = None
    try:
        still_wanted()
        if not Path(spec["bag"]).exists():
            raise RuntimeError(f"the bag {spec['bag']} is not there on {record['host']}")
        here = layout.sha256_file(spec["params_file"])
        if here != key["params_sha256"]:
            raise RuntimeError(
                f"the parameters file {spec['params_file']} on {record['host']} has sha256 "
                f"{here}, the run's has {key['params_sha256']}"
            )
        partial = layout.partial_dir(out, spec["name"])
        cmd = [
            spec["lookout"], "replay", spec["bag"],
            "--params-file", spec["params_file"],
            "--out", partial / layout.BAG_DIR,
            "--report", partial / layout.REPORT_FILE,
            "--profile", partial / layout.PROFILE_FILE,
            *spec["replay_args"],
        ]
        rc = _run(cmd, partial / layout.LOG_FILE, spec.get("timeout_s"), _cwd(spec.get("cwd")),
                  still_wanted)
        record["exit_status"] = rc
        report = layout.read_json(partial / layout.REPORT_FILE)
        if rc is None:
            record["error"] = f"timed out after {spec['timeout_s']} s"
        elif rc != 0:
            errors = (report or {}).get("storage_errors") or []
            record["error"] = "; ".join(errors) or _error_line(_tail(partial / layout.LOG_FILE), rc)
        elif not isinstance(report, dict):
            record["error"] = "lookout replay exited 0 but wrote no readable report"
        elif report.get("model_sha256") != key["model_sha256"]:
            record["error"] = (
                f"the replay used model sha256 {report.get('model_sha256')}, the run's is "
                f"{key['model_sha256']} (another model on {record['host']})"
            )
        elif report.get("lookout_version") != key["lookout_version"]:
            record["error"] = (
                f"lookout {report.get('lookout_version')} on {record['host']}, the run's is "
                f"{key['lookout_version']}"
            )
        else:
            record["status"] = "ok"
    except Abandoned as e:
        return _abandon(partial, record, e)
    except Exception as e:  # noqa: BLE001 - every failure becomes the record's error
        record["error"] = f"{type(e).__name__}: {e}"
    record["wall_s"] = round(time.monotonic() - t0, 3)
    record["finished_unix"] = time.time()
    if partial is not None:
        try:
            still_wanted()
        except Abandoned as e:
            return _abandon(partial, record, e)
        try:
            layout.write_json_atomically(partial / layout.TASK_FILE, record)
            layout.commit(partial, out / spec["name"])
        except OSError as e:
            record["status"] = "failed"
            record["error"] = f"could not put the output in place: {e}"
    return record


def _abandon(partial, record, why):
    """Nobody waits for this record, and the folder may be another run's now: no trace is left."""
    if partial is not None:
        shutil.rmtree(partial, ignore_errors=True)
    record["status"] = "superseded"
    record["error"] = str(why)
    return record


def diff(spec):
    """``lookout diff BASELINE CANDIDATE --json`` on this worker: returns ``{name, exit_status,
    diff (the JSON, or None), error}`` (exit 0: within tolerances, 1: beyond, 2: unreadable)."""
    cmd = [str(spec["lookout"]), "diff", str(spec["a"]), str(spec["b"]), "--json", *spec["args"]]
    record = {"name": spec["name"], "host": socket.gethostname(), "diff": None, "error": ""}
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=spec.get("timeout_s") or None,
                              cwd=_cwd(spec.get("cwd")), check=False)
        record["exit_status"] = proc.returncode
        if proc.returncode in (0, 1):
            record["diff"] = json.loads(proc.stdout.decode("utf-8"))
        else:
            record["error"] = _error_line(proc.stderr.decode("utf-8", "replace"), proc.returncode)
    except (OSError, subprocess.TimeoutExpired, ValueError) as e:
        record["exit_status"] = None
        record["error"] = f"{type(e).__name__}: {e}"
    return record

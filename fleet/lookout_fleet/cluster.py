"""Ray: connecting, and running many tasks with retries, progress and Ctrl-C.

Without an address Ray starts in this process (``ray.init()``, the embedded default) with
``num_cpus`` CPUs and a small object store (the tasks return short records, never data); with
``--address auto`` or ``ray://HOST:PORT`` the tasks run on that cluster and ``lookout_fleet``
is shipped to its workers with the job.
"""

import logging
import sys
import time
from pathlib import Path

import ray

import lookout_fleet

MIB = 1024 * 1024


def connect(address=None, num_cpus=None, object_store_mb=256):
    """Starts or joins Ray; returns the cluster's resources."""
    # Ray's own log lines (at ERROR and above only) go to stderr; its workers' output stays in
    # the session's log folder (each bag's replay.log has lookout's).
    kwargs = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
    if address:
        # The package folder (a path, not the module: Ray Client pickles the runtime env).
        package = str(Path(lookout_fleet.__file__).parent)
        ray.init(address=address, runtime_env={"py_modules": [package]}, **kwargs)
    else:
        # "local": always a new instance of our own, never one a `ray start` left running.
        ray.init(address="local", num_cpus=num_cpus, object_store_memory=object_store_mb * MIB,
                 **kwargs)
    return ray.cluster_resources()


def shutdown():
    if ray.is_initialized():
        ray.shutdown()


def remote(fn, cpus=1.0, gpus=0.0):
    """``fn`` as a Ray task needing ``cpus`` CPUs and ``gpus`` GPUs. Ray does not retry it by
    itself: ``run`` decides, with the task's own record of what went wrong."""
    return ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=0)(fn)


class Progress:
    """Bags done / total and an ETA on stderr: one line rewritten in place on a terminal, a line
    per finished bag otherwise (logs). The ETA assumes the remaining bags go at the rate, in
    bytes of input per second, of those done so far."""

    def __init__(self, what, total, total_bytes=0, stream=sys.stderr):
        self.what, self.total, self.total_bytes = what, total, total_bytes
        self.done = self.failed = self.retried = 0
        self.done_bytes = 0
        self.t0 = time.monotonic()
        self.stream = stream
        self.tty = stream.isatty()
        self.last_draw = 0.0

    def eta_s(self):
        elapsed = time.monotonic() - self.t0
        if self.done == 0 or elapsed <= 0:
            return None
        if self.total_bytes and self.done_bytes:
            rate = self.done_bytes / elapsed
            return max(0.0, (self.total_bytes - self.done_bytes) / rate)
        return elapsed / self.done * (self.total - self.done)

    def line(self):
        eta = self.eta_s()
        eta_text = "--" if eta is None else _duration(eta)
        extra = f", {self.failed} failed" if self.failed else ""
        extra += f", {self.retried} retried" if self.retried else ""
        elapsed = _duration(time.monotonic() - self.t0)
        return f"{self.what}: {self.done}/{self.total} done{extra}, {elapsed} elapsed, ETA {eta_text}"

    def finished(self, name, ok, size_bytes=0, note="", label="ok"):
        self.done += 1
        self.failed += 0 if ok else 1
        self.done_bytes += size_bytes
        if self.tty:
            self.draw(force=True)
        else:
            state = label if ok else f"FAILED: {note}"
            print(f"{self.line()} | {name} {state}", file=self.stream, flush=True)

    def retrying(self, name, note):
        self.retried += 1
        self._print(f"{self.what}: {name} failed ({note}); retrying")

    def draw(self, force=False):
        if self.tty and (force or time.monotonic() - self.last_draw > 1.0):
            self.stream.write("\r\033[K" + self.line())
            self.stream.flush()
            self.last_draw = time.monotonic()

    def close(self):
        if self.tty:
            self.stream.write("\r\033[K" + self.line() + "\n")
            self.stream.flush()

    def _print(self, text):
        if self.tty:
            self.stream.write("\r\033[K")
        print(text, file=self.stream, flush=True)
        self.draw(force=True)


def _duration(s):
    s = int(round(s))
    h, m = divmod(s, 3600)
    m, s = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def run(items, submit, failed, retries, progress, size_of=lambda item: 0, lost=None,
        label=lambda record: "ok"):
    """Runs one task per item; returns ``{item: record}``.

    ``submit(item, attempt)`` starts a task and returns its ref; ``failed(record)`` tells whether
    it must be retried; a task whose worker died (a Ray error) becomes ``lost(item, attempt,
    error)``'s record. Each item is tried at most ``1 + retries`` times; the other items go on
    meanwhile. Ctrl-C (KeyboardInterrupt) cancels what is still running and is raised again, with
    the records so far in its ``records`` attribute.
    """
    lost = lost or (lambda item, attempt, error: {"status": "failed", "error": error, "attempt": attempt})
    pending = {}
    for item in items:
        pending[submit(item, 1)] = (item, 1)
    records = {}
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            progress.draw()
            for ref in ready:
                item, attempt = pending.pop(ref)
                try:
                    record = ray.get(ref)
                except ray.exceptions.RayError as e:
                    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
                    record = lost(item, attempt, f"{type(e).__name__}: {first}"[:500])
                if failed(record) and attempt <= retries:
                    progress.retrying(_name(item), record.get("error", ""))
                    pending[submit(item, attempt + 1)] = (item, attempt + 1)
                    continue
                records[item] = record
                progress.finished(_name(item), not failed(record), size_of(item),
                                  record.get("error", "") or "", label(record))
    except KeyboardInterrupt as e:
        for ref in pending:
            try:
                ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - cancelling is best effort on the way out
                pass
        e.records = records
        raise
    finally:
        progress.close()
    return records


def _name(item):
    return getattr(item, "name", str(item))


def sigterm_as_interrupt():
    """SIGTERM stops a run as Ctrl-C does (the report of what was done is still written)."""
    import signal

    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)

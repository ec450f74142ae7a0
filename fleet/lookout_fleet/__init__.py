"""lookout-fleet: `lookout replay` over many bags as Ray tasks, with one merged answer.

Layers, one module each:

- ``bags``: which bags a run covers and the folder name each gets under ``--out``;
- ``layout``: one bag's output folder (written aside, renamed into place; what "complete" means
  for ``--resume``);
- ``tasks``: what runs on a worker (``lookout check``, ``lookout replay``, ``lookout diff`` as
  subprocesses); nothing in them needs more than the standard library;
- ``cluster``: connecting to Ray and running tasks with retries and progress;
- ``histogram``: exact merging of the replays' latency histograms;
- ``report``: ``fleet_report.json``, ``compare_report.json`` and their tables;
- ``cli``: the ``lookout-fleet`` command.
"""

__version__ = "0.1.0"

"""Which bags a fleet run covers, and the folder name each gets under ``--out``.

A bag is a rosbag2 folder (holding ``metadata.yaml``) or a single ``.mcap`` / ``.db3`` file, as
``lookout replay`` takes them. A folder that is not a bag is searched (recursively, sorted) for
bags. ``--bag-list FILE`` names one per line (``#`` starts a comment; relative paths are taken
from the list's folder).
"""

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

#: Bags one run accepts (a regression set is thousands; a typo in a path is not millions).
MAX_BAGS = 100_000
#: The longest bag list file read, bytes.
MAX_LIST_BYTES = 64 * 1024 * 1024
SINGLE_FILE_SUFFIXES = (".mcap", ".db3")


class BagError(ValueError):
    """A path that is no bag, a list that cannot be read, or too many bags."""


@dataclass(frozen=True)
class Bag:
    """One input bag: its absolute path, and its output folder's name."""

    path: Path
    name: str

    def size_bytes(self):
        """The bag's files' total size (part of the resume key: a bag rewritten in place is redone)."""
        if self.path.is_file():
            return self.path.stat().st_size
        return sum(p.stat().st_size for p in sorted(self.path.iterdir()) if p.is_file())


def is_bag(path):
    return (path.is_dir() and (path / "metadata.yaml").is_file()) or (
        path.is_file() and path.suffix in SINGLE_FILE_SUFFIXES
    )


def _search(folder):
    """Bags under ``folder`` (not inside other bags), sorted by path."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        root = Path(root)
        if (root / "metadata.yaml").is_file():
            found.append(root)
            dirs.clear()  # its .mcap/.db3 files belong to it
            continue
        found.extend(root / f for f in sorted(files) if f.endswith(SINGLE_FILE_SUFFIXES))
        if len(found) > MAX_BAGS:
            raise BagError(f"{folder}: more than {MAX_BAGS} bags")
    return found


def read_list(path):
    """The paths a bag list names."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_LIST_BYTES:
            raise BagError(f"bag list {path}: larger than {MAX_LIST_BYTES} bytes")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise BagError(f"bag list {path}: {e}") from e
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            p = Path(line)
            out.append(p if p.is_absolute() else path.parent / p)
    return out


#: Names of the run's own files in ``--out``: a bag of that name gets ``-bag`` appended.
RESERVED = {"fleet_report.json", "fleet_summary.txt", "compare_report.json"}


def _safe(name):
    name = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".") or "bag"
    return f"{name}-bag" if name in RESERVED else name


def discover(paths, bag_list=None):
    """The bags named by ``paths`` and ``bag_list``, in order, each once, with unique names.

    A name is the bag's folder name (or file name without its suffix), made filesystem-safe; two
    bags with the same name both get ``-<8 hex digits of their path's sha256>`` appended, so the
    names do not depend on the order the bags are given in (``--resume`` finds them again).
    """
    wanted = list(paths) + (read_list(bag_list) if bag_list else [])
    found = []
    for p in wanted:
        p = Path(p).absolute()
        if is_bag(p):
            found.append(p)
        elif p.is_dir():
            inner = _search(p)
            if not inner:
                raise BagError(f"{p}: no bags in this folder (no metadata.yaml, .mcap or .db3)")
            found.extend(inner)
        else:
            raise BagError(f"{p}: not a bag (a folder with metadata.yaml, or a .mcap/.db3 file)")
        if len(found) > MAX_BAGS:
            raise BagError(f"more than {MAX_BAGS} bags")
    unique = list(dict.fromkeys(found))
    if not unique:
        raise BagError("no bags given")
    base = {p: _safe(p.stem if p.is_file() else p.name) for p in unique}
    taken = {}
    for name in base.values():
        taken[name] = taken.get(name, 0) + 1
    out = []
    for p in unique:
        name = base[p]
        if taken[name] > 1:
            name = f"{name}-{hashlib.sha256(str(p).encode()).hexdigest()[:8]}"
        out.append(Bag(path=p, name=name))
    return out

"""CPU quotas for benchmark processes: one cgroup per process.

A quota makes a process behave like one on a machine of its own with that
much CPU, so scale-out can be measured on a 2-core machine: N workers at 0.3
of a core each leave the rest of the cores to PostgreSQL, and what is left to
measure is what the design shares (locks, hot rows, claims).

cgroup v1 (``cpu`` controller mounted at /sys/fs/cgroup/cpu): a child group
with ``cpu.cfs_period_us`` / ``cpu.cfs_quota_us``. cgroup v2 (unified
hierarchy with the ``cpu`` controller enabled): a child group with
``cpu.max``. Needs root (or a delegated subtree). Groups are removed again
when the context ends.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

PERIOD_US = 100_000
V1 = Path("/sys/fs/cgroup/cpu")
V2 = Path("/sys/fs/cgroup")


class Unavailable(RuntimeError):
    pass


def _v2_root() -> Path | None:
    for root in (V2, V2 / "unified"):
        controllers = root / "cgroup.controllers"
        if controllers.exists() and "cpu" in controllers.read_text().split():
            return root
    return None


def detect() -> tuple[str, Path]:
    """("v1" | "v2", the directory to make groups in); Unavailable with why."""
    if (V1 / "cpu.cfs_quota_us").exists():
        if not os.access(V1, os.W_OK):
            raise Unavailable(f"cgroup v1 cpu controller at {V1} is not writable (run as root)")
        return "v1", V1
    root = _v2_root()
    if root is not None:
        if not os.access(root, os.W_OK):
            raise Unavailable(f"cgroup v2 at {root} is not writable (run as root, or delegate a subtree)")
        # the cpu controller must be enabled for the children of the root
        sub = root / "cgroup.subtree_control"
        if "cpu" not in sub.read_text().split():
            try:
                sub.write_text("+cpu")
            except OSError as exc:
                raise Unavailable(f"cannot enable the cpu controller in {sub}: {exc}") from None
        return "v2", root
    raise Unavailable("no cgroup cpu controller: neither v1 (/sys/fs/cgroup/cpu/cpu.cfs_quota_us) "
                      "nor v2 (cpu in /sys/fs/cgroup/cgroup.controllers) is mounted")


class Group:
    """One cgroup holding one process (and its threads and children)."""

    def __init__(self, kind: str, path: Path, quota: float) -> None:
        self.kind = kind
        self.path = path
        self.quota = quota

    def procs_file(self) -> str:
        return str(self.path / "cgroup.procs")

    def add(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))

    def throttled(self) -> tuple[int, int, float]:
        """(periods, periods throttled, seconds throttled) so far."""
        stat = dict(line.split() for line in (self.path / "cpu.stat").read_text().splitlines() if line.strip())
        if self.kind == "v1":
            return int(stat["nr_periods"]), int(stat["nr_throttled"]), int(stat["throttled_time"]) / 1e9
        return int(stat["nr_periods"]), int(stat["nr_throttled"]), int(stat["throttled_usec"]) / 1e6


@contextlib.contextmanager
def groups(n: int, quota: float | None, tag: str, weight: int = 1) -> Iterator[list[Group]]:
    """``n`` fresh groups of ``quota`` cores each (None: no cap), removed
    afterwards (their processes, if still alive, moved back to the root group
    first). ``weight``: the group's claim on the CPU against everything else
    running, in nice-0 tasks (1: as one ordinary process): on a machine
    others load, a weighted group still gets its quota."""
    kind, root = detect()
    made: list[Group] = []
    try:
        for i in range(n):
            path = root / f"ujumbe-bench-{os.getpid()}-{tag}-{i}"
            path.mkdir()
            g = Group(kind, path, quota or 0.0)
            made.append(g)
            q = int(quota * PERIOD_US) if quota else None
            if kind == "v1":
                (path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
                (path / "cpu.cfs_quota_us").write_text(str(q if q else -1))
                (path / "cpu.shares").write_text(str(1024 * weight))
            else:
                (path / "cpu.max").write_text(f"{q if q else 'max'} {PERIOD_US}")
                (path / "cpu.weight").write_text(str(min(100 * weight, 10_000)))
        yield made
    finally:
        for g in made:
            with contextlib.suppress(OSError):
                for pid in (g.path / "cgroup.procs").read_text().split():
                    with contextlib.suppress(OSError):
                        (root / "cgroup.procs").write_text(pid)
            with contextlib.suppress(OSError):
                g.path.rmdir()

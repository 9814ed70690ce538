"""A pids cgroup per worker: a cap on its processes that holds for root, and a way to kill them all.

``RLIMIT_NPROC`` counts processes per real user and the kernel ignores it for uid 0, which is what
a worker is outside its user namespace when the grader runs as root; a fork bomb would then fill the
machine's process table. A cgroup's ``pids.max`` holds for every process in it, whoever owns it,
and the cgroup lists every process the worker started, also those that left its process group
(``setsid``) or were reparented: :meth:`PidsGroup.kill` ends them all.

Where no writable pids controller exists (an unprivileged grader, a container without cgroup
access), :meth:`PidsGroup.create` returns None and the report says the cap is not in force.

The group also counts the CPU time of everything the worker ran, its dead children included
(:meth:`PidsGroup.cpu_seconds`): the check's CPU budget (:mod:`torchgrade.isolation.transport`) is
charged from it, so a child process cannot do the work uncounted. cgroup v2 keeps ``cpu.stat`` in
every group; under v1 a ``cpuacct`` group of the same name is made beside it where possible.
"""

from __future__ import annotations

import itertools
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

#: cgroup v1 mounts each controller on its own; v2 has one tree with a list of controllers.
V1_PIDS = Path("/sys/fs/cgroup/pids")
V2_ROOTS = (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified"))
#: Where cgroup v1 mounts its controllers (``cpuacct``, or ``cpu,cpuacct`` where they share a mount).
V1_ROOT = Path("/sys/fs/cgroup")
_names = itertools.count()


@dataclass(frozen=True)
class PidsGroup:
    """One worker's cgroup: ``pids.max`` caps its processes and threads together.

    Attributes:
        path: the group's folder in the pids hierarchy.
        limit: its ``pids.max``.
        cpu: the folder whose statistics count the group's CPU time: ``path`` itself under cgroup v2
            (``cpu.stat``), a ``cpuacct`` group of the same name under v1, None where neither exists.
    """

    path: Path
    limit: int
    cpu: Path | None = None

    @classmethod
    def create(cls, limit: int) -> PidsGroup | None:
        """A fresh cgroup beside this process's own, capped at ``limit`` tasks, or None where the
        machine offers no pids controller this process may write."""
        name = f"torchgrade-{os.getpid()}-{next(_names)}"
        for parent in _candidate_parents():
            _remove_stale(parent)
            group = cls(parent / name, limit)
            try:
                group.path.mkdir()
            except OSError:
                continue
            try:
                (group.path / "pids.max").write_text(str(limit))
            except OSError:
                group.remove()
                continue
            return cls(group.path, limit, _cpu_folder(group.path, name))
        return None

    def join(self) -> None:
        """Move the calling process into the group (the worker's child, before it executes)."""
        (self.path / "cgroup.procs").write_text(str(os.getpid()))
        if self.cpu is not None and self.cpu != self.path:
            try:
                (self.cpu / "cgroup.procs").write_text(str(os.getpid()))
            except OSError:  # uncounted here: cpu_seconds says so and the caller counts otherwise
                pass

    def counts_cpu_of(self, pid: int) -> bool:
        """The group's CPU statistics count process ``pid`` (it joined them, see :meth:`join`)."""
        if self.cpu is None:
            return False
        try:
            return str(pid) in (self.cpu / "cgroup.procs").read_text().split()
        except OSError:
            return False

    def cpu_seconds(self) -> float | None:
        """CPU time (user and system) used by every task that ever ran in the group, in seconds;
        None where the group has no CPU statistics."""
        if self.cpu is None:
            return None
        try:
            if self.cpu == self.path:  # v2
                for line in (self.cpu / "cpu.stat").read_text().splitlines():
                    key, _, value = line.partition(" ")
                    if key == "usage_usec":
                        return int(value) / 1e6
                return None
            return int((self.cpu / "cpuacct.usage").read_text()) / 1e9
        except (OSError, ValueError):
            return None

    def members(self) -> list[int]:
        try:
            return [int(pid) for pid in (self.path / "cgroup.procs").read_text().split()]
        except OSError:
            return []

    def stop_others(self, keep: frozenset[int], timeout: float = 5.0) -> int:
        """SIGKILL every process in the group that is not in ``keep`` (the worker and its sandbox),
        and return how many there were. While they are killed no task of the group may fork, so a
        fork bomb cannot refill the group; the worker is idle between checks and starts none."""
        others = [pid for pid in self.members() if pid not in keep]
        if not others:
            return 0
        self._set_max(1)  # below the worker's own count: no fork succeeds
        self._kill_members(keep, timeout)
        self._set_max(self.limit)
        return len(others)

    def kill(self, timeout: float = 5.0) -> None:
        """Stop the group from forking, SIGKILL every process in it until none is left, then
        remove the group."""
        self._set_max(0)  # a fork bomb cannot refill what is killed
        self._kill_members(frozenset(), timeout)
        self.remove()

    def _set_max(self, tasks: int) -> None:
        try:
            (self.path / "pids.max").write_text(str(tasks))
        except OSError:  # the group is gone already
            pass

    def _kill_members(self, keep: frozenset[int], timeout: float) -> None:
        """SIGKILL the members not in ``keep`` until none is left or ``timeout`` seconds passed."""
        deadline = time.monotonic() + timeout
        while (pids := [pid for pid in self.members() if pid not in keep]) and time.monotonic() < deadline:
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.01)

    def remove(self) -> None:
        for folder in (self.path, self.cpu) if self.cpu not in (None, self.path) else (self.path,):
            for _ in range(100):  # killed tasks leave the group a moment after SIGKILL
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.01)


def _cpu_folder(pids_path: Path, name: str) -> Path | None:
    """The folder that will count the CPU time of the group at ``pids_path`` (see :class:`PidsGroup`)."""
    if (pids_path / "cpu.stat").is_file():
        return pids_path  # cgroup v2: the same group
    for parent in _cpuacct_parents():
        _remove_stale(parent)
        folder = parent / name
        try:
            folder.mkdir()
        except OSError:
            continue
        if (folder / "cpuacct.usage").is_file():
            return folder
        try:
            folder.rmdir()
        except OSError:
            pass
    return None


def _cpuacct_parents() -> list[Path]:
    """This process's own cgroup in the v1 ``cpuacct`` hierarchy (empty under v2 alone)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return []
    parents = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "cpuacct" in controllers.split(","):
            for mount in (V1_ROOT / controllers, V1_ROOT / "cpuacct"):
                if mount.is_dir():
                    parents.append(mount / path.lstrip("/"))
                    break
    return parents


def _remove_stale(parent: Path) -> None:
    """Remove the empty groups of grading processes that are gone (killed before they could clean
    up, e.g. by a batch's time limit)."""
    for folder in parent.glob("torchgrade-*-*"):
        try:
            os.kill(int(folder.name.split("-")[1]), 0)
        except ProcessLookupError:
            try:
                folder.rmdir()  # refused while processes remain in it
            except OSError:
                pass
        except (ValueError, PermissionError):
            continue


def _candidate_parents() -> list[Path]:
    """Folders where a pids cgroup could be made: this process's own cgroup in the v1 pids
    hierarchy, or in a v2 tree that offers the pids controller."""
    parents = []
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return parents
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "pids" in controllers.split(","):
            parents.append(V1_PIDS / path.lstrip("/"))
        elif controllers == "":
            for root in V2_ROOTS:
                own = root / path.lstrip("/")
                try:
                    if "pids" in (own / "cgroup.subtree_control").read_text().split():
                        parents.append(own)
                except OSError:
                    continue
    return parents

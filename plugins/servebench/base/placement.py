"""CPU placement: which CPUs the server and the load generator may use.

On one machine the two compete for the same cores, and a load generator starved by the server (or the
reverse) measures itself. With enough cores they are pinned to disjoint CPU sets; the sets are logged
with every trial so two results can be told apart.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

_CPUS = r"\d+(-\d+)?(,\d+(-\d+)?)*"
CPUSET_PATTERN = rf"^{_CPUS}$"
SPLIT_PATTERN = rf"^(auto|off|{_CPUS}:{_CPUS})$"
AUTO_MIN_CPUS = 4  # below this, halving the machine would change what the server is (one core, or none)


def cpus_of(cpuset: str) -> tuple[int, ...]:
    """The CPUs of a cpuset such as "0-1,3", sorted."""
    cpus: set[int] = set()
    for part in cpuset.split(","):
        first, _, last = part.partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return tuple(sorted(cpus))


def cpuset_of(cpus: tuple[int, ...]) -> str:
    return ",".join(str(c) for c in cpus)


def machine_cpus() -> tuple[int, ...]:
    return tuple(sorted(os.sched_getaffinity(0)))


@dataclass(frozen=True)
class Placement:
    split: str  # as asked: "auto", "off" or "S:L"
    server_cpus: tuple[int, ...]  # () = not pinned
    loadgen_cpus: tuple[int, ...]
    note: str = ""  # why "auto" did not split

    def params(self) -> dict[str, str]:
        return {
            "cpu_split": self.split,
            "server_cpus": cpuset_of(self.server_cpus) or "all",
            "loadgen_cpus": cpuset_of(self.loadgen_cpus) or "all",
        }

    def loadgen_cores(self, processes: int) -> int:
        """How many cores the load generator can keep busy: one per process, at most its CPUs."""
        return min(processes, len(self.loadgen_cpus or machine_cpus()))


def check(split: str, cpuset: str | None) -> None:
    """Raise ValueError for a split this machine cannot honour, or one that contradicts `cpuset`."""
    available = set(machine_cpus())
    if cpuset is not None:
        missing = sorted(set(cpus_of(cpuset)) - available)
        if missing:
            raise ValueError(
                f"cpuset {cpuset!r}: this machine has no CPU {missing} (it has {cpuset_of(tuple(sorted(available)))})"
            )
    if split in ("auto", "off"):
        return
    server, loadgen = (cpus_of(part) for part in split.split(":"))
    missing = sorted((set(server) | set(loadgen)) - available)
    if missing:
        raise ValueError(
            f"cpu_split {split!r}: this machine has no CPU {missing} (it has {cpuset_of(tuple(sorted(available)))})"
        )
    if set(server) & set(loadgen):
        raise ValueError(
            f"cpu_split {split!r}: server and load generator CPUs overlap ({sorted(set(server) & set(loadgen))})"
        )
    if cpuset is not None and cpus_of(cpuset) != server:
        raise ValueError(f"cpu_split {split!r} and cpuset {cpuset!r} name different server CPUs: give them once")


def resolve(split: str, cpuset: str | None = None) -> Placement:
    """The CPU sets of a checked split. "auto": the container's cpuset and the other CPUs when a cpuset is
    given, else halves of the machine when it has AUTO_MIN_CPUS or more, else no pinning (and says why)."""
    cpus = machine_cpus()
    pinned_server = cpus_of(cpuset) if cpuset else ()
    if split == "off":
        return Placement(split, pinned_server, ())
    if split != "auto":
        server, loadgen = (cpus_of(part) for part in split.split(":"))
        return Placement(split, server, loadgen)
    if pinned_server:
        rest = tuple(c for c in cpus if c not in pinned_server)
        return Placement(split, pinned_server, rest, "" if rest else "the server's cpuset holds every CPU")
    if len(cpus) < AUTO_MIN_CPUS:
        return Placement(split, (), (), f"{len(cpus)} CPUs: too few to split (auto splits from {AUTO_MIN_CPUS})")
    half = len(cpus) // 2
    return Placement(split, cpus[:half], cpus[half:])

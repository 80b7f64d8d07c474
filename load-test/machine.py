"""How busy the whole machine was over a benchmark's window, and how much of its CPU the host
took (steal), from /proc/stat's aggregate "cpu" line.

Steal is the time this virtual machine's vCPUs wanted to run and the hypervisor ran something
else. On a shared machine it can reach a fifth of the CPU in some
windows and was ~0 in others, and the same command at the same commit then gave very different
latencies: every benchmark here prints it, so a run can be judged by it.
"""
from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class CpuTimes:
    busy: int  # user + nice + system + irq + softirq (ticks; guest time is inside user)
    steal: int
    total: int  # busy + idle + iowait + steal

    @classmethod
    def now(cls) -> CpuTimes:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:9]]
        fields += [0] * (8 - len(fields))
        user, nice, system, idle, iowait, irq, softirq, steal = fields
        busy = user + nice + system + irq + softirq
        return cls(busy=busy, steal=steal, total=busy + idle + iowait + steal)


def usage(start: CpuTimes, end: CpuTimes) -> tuple[float, float]:
    """(busy %, steal %) of all the machine's CPU time between two readings."""
    total = max(1, end.total - start.total)
    return 100 * (end.busy - start.busy) / total, 100 * (end.steal - start.steal) / total


def descendants_cpu_s(root: int, exclude: frozenset[int] = frozenset()) -> float:
    """CPU seconds (user + system) used so far by the live processes below ``root`` (its children,
    theirs, ...), leaving out those in ``exclude`` and what is below them: what the exchange's
    own processes spent, apart from the load generator's and PostgreSQL's."""
    parent: dict[int, int] = {}
    spent: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # ended meanwhile
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
        parent[int(entry.name)] = int(fields[1])
        spent[int(entry.name)] = int(fields[11]) + int(fields[12])  # utime, stime
    ticks = 0
    for pid in spent:
        up = pid
        while up not in (root, 0, 1) and up not in exclude:
            up = parent.get(up, 0)
        if up == root and pid != root and pid not in exclude:
            ticks += spent[pid]
    return ticks / os.sysconf("SC_CLK_TCK")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> str:
    # Other processes on this machine share the cores; say how busy it was.
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def describe() -> dict[str, Any]:
    """The machine a run measured on: CPU model, cores, memory, kernel, Python, load average."""
    return {
        "cpu": cpu_model(), "cpus": os.cpu_count(), "memory_gib": memory_gib(),
        "system": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "load_average": load_average(),
    }

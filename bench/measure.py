"""Timing and memory of a command, shared by the benchmark scripts.

Memory comes from /proc, sampled every few milliseconds over the command's live process tree
(connc validate forks worker processes):
- `largest_mb`: the peak of the largest single process, from each process's own high-water
  mark (VmHWM), so a peak between two samples is not missed;
- `tree_rss_mb` / `tree_pss_mb`: the peak of the sum over the tree. RSS counts pages that forked
  workers share with their parent once per process (an upper bound); PSS splits them among the
  sharers (what the tree really costs). A peak shorter than the interval can be missed.

Not ru_maxrss (getrusage(RUSAGE_CHILDREN), os.wait4, /usr/bin/time): Linux keeps the high-water
mark of the image a child replaced at exec, and a child of Python starts as a copy of the
Python process, so a 200 MB benchmark script would make /bin/true "use" 200 MB.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

SAMPLE_SECONDS = 0.005

Command = Sequence[str] | Callable[[], Sequence[str]]  # a callable: a new command per run


@dataclasses.dataclass
class Memory:
    largest_mb: float = 0.0
    tree_rss_mb: float = 0.0
    tree_pss_mb: float = 0.0


@dataclasses.dataclass
class Stats:
    seconds: list[float]
    memory: Memory

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def spread(self) -> tuple[float, float]:
        return min(self.seconds), max(self.seconds)


def run(command: Sequence[str], *, cwd: Path | None = None, env: dict[str, str] | None = None,
        sample: bool = False) -> tuple[float, Memory]:
    """Run `command` once: wall seconds, and its memory when `sample` (else zeros)."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    sampler = _TreeSampler(proc.pid) if sample else None
    returncode = proc.wait()
    seconds = time.perf_counter() - started
    memory = sampler.stop() if sampler else Memory()
    # A benchmark of the error path is not the one we want: every command must succeed.
    if returncode != 0:
        raise SystemExit(f"{' '.join(command)[:200]} exited with {returncode}; fix the setup")
    return seconds, memory


class _TreeSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.memory = pid, Memory()
        self.done = threading.Event()
        self.start()

    def run(self) -> None:
        peak = self.memory
        while not self.done.is_set():
            rss = pss = 0.0
            for pid in _tree(self.pid):
                status = _fields(f"/proc/{pid}/status", ("VmRSS:", "VmHWM:"))
                peak.largest_mb = max(peak.largest_mb, status.get("VmHWM:", 0) / 1024)
                rss += status.get("VmRSS:", 0) / 1024
                pss += _fields(f"/proc/{pid}/smaps_rollup", ("Pss:",)).get("Pss:", 0) / 1024
            peak.tree_rss_mb = max(peak.tree_rss_mb, rss)
            peak.tree_pss_mb = max(peak.tree_pss_mb, pss)
            self.done.wait(SAMPLE_SECONDS)

    def stop(self) -> Memory:
        self.done.set()
        self.join()
        return self.memory


def _tree(pid: int) -> list[int]:
    """pid and its live descendants (from /proc/PID/task/TID/children)."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as children:
                    pending += [int(child) for child in children.read().split()]
        except OSError:  # exited between two reads
            continue
    return found


def _fields(path: str, names: tuple[str, ...]) -> dict[str, int]:
    """The kB values of `names` in a /proc file; {} when the process has gone."""
    found = {}
    try:
        with open(path) as lines:
            for line in lines:
                if line.startswith(names):
                    name, value = line.split()[:2]
                    found[name] = int(value)
    except OSError:
        pass
    return found


def bench(commands: Mapping[str, Command], runs: int, *, cwd: Path | None = None,
          env: dict[str, str] | None = None) -> dict[str, Stats]:
    """Each command once sampled for memory (which also warms the page cache and the bytecode
    cache), then `runs` timed rounds, each running every command once, so that drift
    (thermal, other load) hits all commands alike; the order turns each round, so that no
    command always runs first. `Stats.seconds[i]` is round i's. Exits when a command fails."""
    stats = {name: Stats([], run(_argv(command), cwd=cwd, env=env, sample=True)[1])
             for name, command in commands.items()}
    names = list(commands)
    for round_ in range(runs):
        turn = round_ % len(names)
        for name in names[turn:] + names[:turn]:
            stats[name].seconds.append(run(_argv(commands[name]), cwd=cwd, env=env)[0])
    return stats


def round_ratio(numerator: Stats, denominator: Stats) -> float:
    """The median over rounds of one command's time over another's in the same round: drift
    from one round to the next (this machine's speed varies by a fifth) cancels out."""
    return statistics.median(a / b for a, b in zip(numerator.seconds, denominator.seconds,
                                                   strict=True))


def _argv(command: Command) -> Sequence[str]:
    return command() if callable(command) else command


def load_average() -> str:
    """The 1-minute load average and the CPU count, to judge how busy the machine was."""
    return f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"


def environment(**extra: str) -> dict[str, str]:
    """This environment for the measured commands, with bytecode caching on: a sandbox may set
    PYTHONDONTWRITEBYTECODE, and then every run would compile connc's modules from source,
    which an installed connc (pip writes .pyc files) never does."""
    env = {name: value for name, value in os.environ.items()
           if name != "PYTHONDONTWRITEBYTECODE"}
    return {**env, **extra}

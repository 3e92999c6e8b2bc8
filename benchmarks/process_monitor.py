"""CPU seconds and peak memory of a hub and of the user servers below it (psutil).

``ResourceMonitor`` samples in a thread of its own (every ``interval`` seconds) so that the
benchmark's event loop is never blocked by reading /proc. A user server is the topmost
process below the hub whose command line runs ``jupyterhub-singleuser`` (KioskHub's launcher
execs into it), or that a fork server forked and named so; its memory counts its children
too (kernels). Fork servers' parents are measured on their own (RSS and PSS: their pages are
shared with the servers they forked, which PSS divides among them).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

import psutil

SERVER_COMMAND = "jupyterhub-singleuser"
FORKED_SERVER_NAME = SERVER_COMMAND[:15]
"""The process name (comm) of a server forked by a fork server: its command line is the
parent's."""
FORK_PARENT = "fork_parent.py"


@dataclass
class ResourceUsage:
    """What a monitor saw between start and stop."""

    hub_cpu_seconds: float = 0.0
    hub_peak_rss: int = 0
    server_peak_rss: dict[str, int] = field(default_factory=dict)
    """Peak RSS (bytes) of each server, by JupyterHub user name (else by pid)."""
    server_peak_pss: dict[str, int] = field(default_factory=dict)
    """Peak PSS (bytes) of each server and its kernels: shared pages divided among sharers."""
    fork_parent_peak: dict[str, int] = field(default_factory=dict)
    """Peak RSS and PSS (bytes) of the fork servers' parents, all together."""
    samples: int = 0
    wall_seconds: float = 0.0
    hub_tree_cpu_seconds: float = 0.0
    """CPU of the hub and every process below it (proxy, servers) while monitored."""
    other_cpu_seconds: float = 0.0
    """CPU that the rest of the machine used meanwhile (busy CPU time minus the hub's tree
    and this benchmark's own process): how shared the machine was."""
    load_average: tuple[float, float] = (0.0, 0.0)
    """1-minute load average at start and at stop."""


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def tree_cpu_seconds(root: psutil.Process) -> float:
    """CPU of ``root``, its reaped children and every live process below it."""
    times = root.cpu_times()
    total = times.user + times.system + times.children_user + times.children_system
    for proc in root.children(recursive=True):
        try:
            total += cpu_seconds(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine spent busy (not idle, not waiting for I/O) so far."""
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def server_processes(hub: psutil.Process) -> list[psutil.Process]:
    """The topmost ``jupyterhub-singleuser`` processes below ``hub``."""
    found = []
    for proc in hub.children(recursive=True):
        try:
            cmdline = proc.cmdline()
            forked = proc.name() == FORKED_SERVER_NAME and any(FORK_PARENT in p for p in cmdline)
            if forked or (
                any(SERVER_COMMAND in part for part in cmdline)
                and not any(FORK_PARENT in p for p in cmdline)
            ):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    pids = {p.pid for p in found}
    top = []
    for proc in found:
        try:
            if proc.ppid() not in pids:
                top.append(proc)
        except psutil.NoSuchProcess:
            continue
    return top


def fork_parents(hub: psutil.Process) -> list[psutil.Process]:
    """The topmost processes that run ``fork_parent.py``: what they forked (servers, their
    kernel zygotes and kernels) shows the parent's command line too."""
    forked = {}
    for proc in hub.children(recursive=True):
        try:
            if any(FORK_PARENT in p for p in proc.cmdline()):
                forked[proc.pid] = proc
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    parents = []
    for proc in forked.values():
        try:
            if proc.ppid() not in forked:
                parents.append(proc)
        except psutil.NoSuchProcess:
            continue
    return parents


def tree_pss(proc: psutil.Process) -> int:
    total = 0
    for member in [proc, *proc.children(recursive=True)]:
        try:
            total += member.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied, AttributeError):
            continue
    return total


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for member in [proc, *proc.children(recursive=True)]:
        try:
            total += member.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


class ResourceMonitor:
    """Samples the hub at ``pid`` and its servers until ``stop()``; see the module doc."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        self.hub = psutil.Process(pid)
        self.interval = interval
        self.usage = ResourceUsage()
        self._names: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="resource-monitor", daemon=True)

    def start(self) -> ResourceMonitor:
        self._marks = self._mark()
        self._load = os.getloadavg()[0]
        self._thread.start()
        return self

    def stop(self) -> ResourceUsage:
        self._stop.set()
        self._thread.join()
        self.sample()
        end, start, usage = self._mark(), self._marks, self.usage
        usage.wall_seconds = end["wall"] - start["wall"]
        usage.hub_cpu_seconds = end["hub"] - start["hub"]
        usage.hub_tree_cpu_seconds = end["tree"] - start["tree"]
        usage.other_cpu_seconds = max(
            0.0,
            (end["busy"] - start["busy"]) - usage.hub_tree_cpu_seconds
            - (end["self"] - start["self"]),
        )
        usage.load_average = (self._load, os.getloadavg()[0])
        return usage

    def _mark(self) -> dict[str, float]:
        return {
            "wall": time.monotonic(),
            "hub": cpu_seconds(self.hub),
            "tree": tree_cpu_seconds(self.hub),
            "busy": busy_cpu_seconds(),
            "self": cpu_seconds(psutil.Process()),
        }

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        try:
            rss = self.hub.memory_info().rss
        except psutil.NoSuchProcess:
            return
        usage = self.usage
        usage.samples += 1
        usage.hub_peak_rss = max(usage.hub_peak_rss, rss)
        for proc in server_processes(self.hub):
            name = self._name(proc)
            try:
                size = tree_rss(proc)
            except psutil.NoSuchProcess:
                continue
            usage.server_peak_rss[name] = max(usage.server_peak_rss.get(name, 0), size)
            pss = tree_pss(proc)
            usage.server_peak_pss[name] = max(usage.server_peak_pss.get(name, 0), pss)
        parents = fork_parents(self.hub)
        if parents:
            rss = sum(p.memory_info().rss for p in parents if p.is_running())
            pss = sum(p.memory_full_info().pss for p in parents if p.is_running())
            peak = usage.fork_parent_peak
            peak["rss"], peak["pss"] = max(peak.get("rss", 0), rss), max(peak.get("pss", 0), pss)
            peak["count"] = max(peak.get("count", 0), len(parents))

    def _name(self, proc: psutil.Process) -> str:
        if proc.pid not in self._names:
            try:
                # A forked server's environ is its parent's; its account names it (kh-<user>).
                name = proc.environ().get("JUPYTERHUB_USER") or proc.username().split("-", 1)[-1]
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                name = str(proc.pid)
            self._names[proc.pid] = name
        return self._names[proc.pid]


def mib(size: float | None) -> float | None:
    return None if size is None else size / 2**20

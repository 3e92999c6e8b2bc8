"""The default set of benchmarks (``make bench``): each script in turn, then every target.

Each benchmark runs as a process of its own (one that fails does not stop the others) and
writes its JSON and PNG to ``benchmarks/results/``. The sizes are the scripts' defaults;
pass a script's own flags after its name to change them, e.g.

    .venv/bin/python -m benchmarks.run_all --only spawn_latency --spawn_latency="-n 50 -c 1 10 25"
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time

import psutil

from . import report
from .stats import verdict

BENCHMARKS = (
    "spawn_latency",
    "user_simulation",
    "environment_builds",
    "container_build",
    "dask_startup",
    "dask_user_environment",
    "pods",
    "hub_scale",
    "usage_report",
    "usage_overhead",
    "workshop_join",
)


def targets_of(name: str) -> list[tuple[str, bool | None, str]]:
    """(what, met, detail) for each target in a benchmark's last JSON."""
    path = report.RESULTS / f"{name}.json"
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    found = []
    for check in data.get("targets", []):
        if "concurrency" in check:
            what = f"spawn p50/p95 within 10% of plain JupyterHub at C={check['concurrency']}"
            detail = f"×{check['p50_ratio'] or 0:.2f} / ×{check['p95_ratio'] or 0:.2f}"
        else:
            what, detail = check["target"], f"×{check['ratio'] or 0:.2f}"
        found.append((what, check["met"], detail))
    for run in data.get("runs", []):
        if "success_rate" in run:
            rate = run["success_rate"] or 0
            found.append((f"user simulation on {run['hub']}: no failures", rate == 1.0,
                          f"{run['sessions_complete']}/{run['users']} complete"))
    if data.get("measured") is False:
        found.append((name, None, f"not measured: {data['reason']}"))
    return found


def settle(idle_percent: float = 15, longest: float = 90) -> None:
    """Wait until the machine is idle (the last benchmark's processes have gone), at most
    ``longest`` seconds, so that no benchmark starts on a machine still busy with the last."""
    started = time.monotonic()
    while (busy := psutil.cpu_percent(interval=1)) > idle_percent:
        if time.monotonic() - started > longest:
            report.progress(f"the machine is still {busy:.0f}% busy; starting anyway")
            return
        report.progress(f"waiting for the machine to settle ({busy:.0f}% busy)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS))
    for name in BENCHMARKS:
        p.add_argument(f"--{name}", default="", metavar="FLAGS",
                       help=f"flags for benchmarks.{name}, quoted")
    args = p.parse_args(argv)
    durations: dict[str, tuple[float, int]] = {}
    for name in args.only:
        flags = shlex.split(getattr(args, name))
        settle()
        report.progress(f"=== {name} {' '.join(flags)}")
        started = time.monotonic()
        status = subprocess.call([sys.executable, "-m", f"benchmarks.{name}", *flags])
        durations[name] = (time.monotonic() - started, status)
    print()
    report.print_table(
        ["benchmark", "minutes", "exit"],
        [[name, seconds / 60, status] for name, (seconds, status) in durations.items()],
        title="Benchmarks run",
    )
    total = sum(seconds for seconds, _ in durations.values())
    print(f"total {total / 60:.1f} minutes; load average now "
          f"{' '.join(f'{x:.2f}' for x in report.machine()['load_average'])}")
    rows = [[what, verdict(met), detail] for name in args.only
            for what, met, detail in targets_of(name)]
    print()
    report.print_table(["target", "result", "measured"], rows, title="Targets")
    return 0 if all(status == 0 for _, status in durations.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""User simulation in the style of hubtraf: M people arrive over a ramp and use the hub.

Each simulated person signs in on the login form with the shared password (and gets an API
token, as the token page does), starts their server and waits until it answers, starts a
kernel, executes code over the kernel's websocket (the first execution also waits for the
kernel to come up), then stops the kernel and the server. Person i starts at i × ramp / M.
A failed step ends that person's session; the table counts failures per step.

    .venv/bin/python -m benchmarks.user_simulation --users 30 --ramp 30
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time

from . import report
from .hub_client import HubClient, HubError
from .hubs import USER_PASSWORD, BenchHub, start_kioskhub, start_plain_jupyterhub
from .process_monitor import ResourceMonitor, mib
from .stats import Stopwatch, success_rate, summarize, verdict

NAME = "user_simulation"
STEPS = ("login", "spawn", "kernel_start", "execute", "stop")
CODE = "import math\nprint(round(sum(math.sqrt(i) for i in range(200_000))))"
EXPECTED = "59628256"
HUBS = ("kioskhub", "jupyterhub")


async def simulated_user(url: str, name: str, delay: float, timeout: float) -> Stopwatch:
    """One person's session; returns the laps of the steps that ran."""
    await asyncio.sleep(delay)
    watch = Stopwatch()
    client = HubClient(url, connections=10)
    try:
        with watch.lap("login"):
            await client.login(name, USER_PASSWORD)
            await client.request_token(name)
        with watch.lap("spawn"):
            outcome = await client.spawn(name, timeout=timeout)
            if not outcome.ok:
                raise HubError(outcome.error)
        with watch.lap("kernel_start"):
            kernel = await client.start_kernel(name)
        with watch.lap("execute"):
            output = await client.execute(name, kernel, CODE, timeout=timeout)
            if output.strip() != EXPECTED:
                raise HubError(f"unexpected output {output.strip()[:80]!r}")
        with watch.lap("stop"):
            await client.stop_kernel(name, kernel)
            await client.stop(name, timeout=timeout)
    except Exception:  # recorded in watch.failed by the lap that raised
        pass
    finally:
        await client.close()
    return watch


async def simulate(hub: BenchHub, users: int, ramp: float, timeout: float, prefix: str) -> dict:
    names = [f"{prefix}-{i:03d}" for i in range(users)]
    started = time.perf_counter()
    finished = 0

    async def person(index: int, name: str) -> Stopwatch:
        nonlocal finished
        watch = await simulated_user(hub.url, name, index * ramp / max(users, 1), timeout)
        finished += 1
        laps = " ".join(f"{step} {watch.laps[step]:.2f}s" for step in STEPS if step in watch.laps)
        failed = "".join(f"  FAILED at {step}: {why}" for step, why in watch.failed.items())
        report.progress(f"  {hub.kind:10s} {finished:3d}/{users} {name}: {laps}{failed}")
        return watch

    monitor = ResourceMonitor(hub.pid).start()
    watches = await asyncio.gather(*(person(i, n) for i, n in enumerate(names)))
    usage = monitor.stop()
    steps = {}
    for step in STEPS:
        ok = [w.laps[step] for w in watches if step in w.laps and step not in w.failed]
        failed = sum(step in w.failed for w in watches)
        steps[step] = {"ok": len(ok), "failed": failed, "latency_s": summarize(ok)}
    complete = sum(not w.failed and len(w.laps) == len(STEPS) for w in watches)
    return {
        "hub": hub.kind,
        "users": users,
        "ramp_s": ramp,
        "wall_s": time.perf_counter() - started,
        "sessions_complete": complete,
        "success_rate": success_rate(complete, users),
        "steps": steps,
        "errors": {n: w.failed for n, w in zip(names, watches, strict=True) if w.failed},
        "hub_cpu_seconds": usage.hub_cpu_seconds,
        "hub_tree_cpu_seconds": usage.hub_tree_cpu_seconds,
        "other_cpu_seconds": usage.other_cpu_seconds,
        "load_average_start_end": usage.load_average,
        "hub_peak_rss_mib": mib(usage.hub_peak_rss),
        "server_peak_rss_mib": summarize([mib(v) for v in usage.server_peak_rss.values()]),
    }


def print_results(runs: list[dict], cond: dict) -> None:
    print()
    print(report.conditions_line(cond))
    rows = []
    for run in runs:
        for step, data in run["steps"].items():
            lat = data["latency_s"]
            rows.append([run["hub"], step, data["ok"], data["failed"],
                         lat["p50"], lat["p95"], lat["max"]])
    report.print_table(["hub", "step", "ok", "failed", "p50 s", "p95 s", "max s"], rows,
                       title="User simulation (per step)")
    for run in runs:
        rate = run["success_rate"]
        print(f"{run['hub']}: {run['sessions_complete']}/{run['users']} sessions complete "
              f"({rate:.0%}) in {run['wall_s']:.0f} s; hub CPU {run['hub_cpu_seconds']:.1f} s, "
              f"hub peak RSS {run['hub_peak_rss_mib']:.0f} MiB; others' CPU "
              f"{run['other_cpu_seconds'] / run['wall_s']:.2f} cores; target (no failures): "
              f"{verdict(rate == 1.0)}")


def plot(runs: list[dict], cond: dict) -> None:
    figure, axes = report.new_figure(1, width=8, height=4.5)
    ax = axes[0]
    width = 0.8 / max(len(runs), 1)
    for i, run in enumerate(runs):
        xs = [s + i * width for s in range(len(STEPS))]
        p50 = [run["steps"][s]["latency_s"]["p50"] or 0 for s in STEPS]
        p95 = [run["steps"][s]["latency_s"]["p95"] or 0 for s in STEPS]
        ax.bar(xs, p95, width, alpha=0.35, label=f"{run['hub']} p95")
        ax.bar(xs, p50, width, label=f"{run['hub']} p50")
    ax.set_xticks([s + width * (len(runs) - 1) / 2 for s in range(len(STEPS))], STEPS)
    ax.set_ylabel("seconds")
    ax.set_title(f"User simulation: M={runs[0]['users']} users over {runs[0]['ramp_s']:.0f} s")
    ax.legend()
    figure.text(0.01, 0.005, report.caption(cond), fontsize=6, wrap=True)
    report.save_figure(NAME, figure)


async def run(args) -> dict:
    cond = report.conditions(M=args.users, ramp_s=args.ramp, hubs=list(args.hubs))
    print(report.conditions_line(cond), flush=True)
    runs = []
    for kind in args.hubs:
        report.progress(f"starting {kind}")
        hub = (start_kioskhub("sim") if kind == "kioskhub"
               else start_plain_jupyterhub("sim", concurrent_spawn_limit=max(100, args.users)))
        try:
            report.progress(f"{kind}: {args.users} simulated users over {args.ramp:.0f} s")
            runs.append(await simulate(hub, args.users, args.ramp, args.timeout, "sim"))
        finally:
            report.progress(f"stopping {kind}")
            with contextlib.suppress(Exception):
                hub.stop()
            hub.remove()
    print_results(runs, cond)
    result = {"benchmark": NAME, "conditions": cond, "code": CODE, "runs": runs}
    report.write_json(NAME, result)
    plot(runs, cond)
    return result


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", "-m", type=int, default=30, help="M: simulated users (30)")
    p.add_argument("--ramp", type=float, default=30.0,
                   help="seconds over which the users arrive (30)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per step (300)")
    p.add_argument("--hubs", nargs="+", choices=HUBS, default=["kioskhub"],
                   help="hubs to simulate on (kioskhub; add jupyterhub to compare)")
    return p


def main(argv: list[str] | None = None) -> int:
    asyncio.run(run(parser().parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Spawn latency: KioskHub's local backend against plain JupyterHub, same machine, same run.

For each concurrency C, N users each request their server through the REST API (as the hub's
admin); the clock runs from the first request to the moment that the progress stream says
ready *and* the server's own ``/api/status`` answers 200 through the proxy. Then a kernel
starts and runs one cell: "Start → first cell" is the time from the request to that cell's
result, what a user waits for. Rounds alternate between the hubs; after each round every
server is stopped. The first round is each user's first start (KioskHub then also makes their
system account and home); later rounds are returning users.

Four hubs: plain JupyterHub, KioskHub as it comes (fork servers, ``spawner.fork_server``, the
default environment pre-warmed, whose servers fork their kernels too, ``spawner.fork_kernels``),
KioskHub with fork servers but ``fork_kernels: false`` (each kernel a new process) and
KioskHub with ``fork_server: false`` (every server and kernel a fresh process).

    .venv/bin/python -m benchmarks.spawn_latency --users 20 --concurrency 1 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time

from . import report
from .hub_client import HubClient, admin_client
from .hubs import (
    ADMIN,
    ADMIN_PASSWORD,
    DEFAULT_CONCURRENT_SPAWN_LIMIT,
    BenchHub,
    start_kioskhub,
    start_plain_jupyterhub,
)
from .process_monitor import ResourceMonitor, mib
from .stats import percentile, ratio, summarize, verdict, within

NAME = "spawn_latency"
TOLERANCE = 0.10
FORK_TARGETS = {1: 0.3, 10: 0.2}
"""Fork-server spawn p50 at most this share of plain JupyterHub's, by concurrency."""
FIRST_CELL_TARGET = 0.3
HUBS = ("jupyterhub", "kioskhub-fresh", "kioskhub-new-kernels", "kioskhub")
LABELS = {"jupyterhub": "plain JupyterHub (SimpleLocalProcessSpawner)",
          "kioskhub-fresh": "KioskHub (local backend, fork_server: false)",
          "kioskhub-new-kernels": "KioskHub (local backend, fork server, fork_kernels: false)",
          "kioskhub": "KioskHub (local backend, fork server and forked kernels)"}
CELL, CELL_OUTPUT = "print(6 * 7)", "42"


def user_names(count: int, prefix: str = "bench") -> list[str]:
    return [f"{prefix}-{i:03d}" for i in range(count)]


async def create_users(client: HubClient, names: list[str], batch: int = 100) -> None:
    """Register ``names`` through the admin API (those that exist already are skipped)."""
    status, body, _ = await client.api("GET", "/users?limit=10000")
    existing = {user["name"] for user in body} if status == 200 else set()
    missing = [n for n in names if n not in existing]
    for i in range(0, len(missing), batch):
        chunk = {"usernames": missing[i : i + batch]}
        status, body, _ = await client.api("POST", "/users", json=chunk)
        if status != 201:
            raise RuntimeError(f"creating users answered {status}: {str(body)[:200]}")


async def stop_all(client: HubClient, names: list[str], concurrency: int) -> list[float]:
    """Stop the named users' servers, ``concurrency`` at a time; return each stop's seconds."""
    gate = asyncio.Semaphore(concurrency)

    async def one(name: str) -> float | None:
        async with gate:
            try:
                return await client.stop(name)
            except Exception as error:  # a stop failure is reported, not fatal
                report.progress(f"  stopping {name} failed: {error}")
                return None

    return [s for s in await asyncio.gather(*(one(n) for n in names)) if s is not None]


async def spawn_round(hub: BenchHub, client: HubClient, names: list[str], concurrency: int,
                      first_start: bool, first_cells: bool = False) -> dict:
    """Spawn every user in ``names`` with at most ``concurrency`` in flight (and, with
    ``first_cells``, run a first cell in each); then stop all."""
    gate = asyncio.Semaphore(concurrency)
    done = 0

    async def one(name: str):
        nonlocal done
        async with gate:
            outcome = await client.spawn(name)
            if outcome.ok and first_cells:
                outcome.first_cell = await first_cell(client, name, outcome.seconds)
        done += 1
        state = f"ready in {outcome.seconds:6.2f} s" if outcome.ok else f"FAILED ({outcome.error})"
        if outcome.first_cell:
            state += f", first cell at {outcome.first_cell:6.2f} s"
        extra = f", {outcome.answers_429} × 429" if outcome.answers_429 else ""
        report.progress(f"  {hub.kind:10s} C={concurrency:<3d} {done:3d}/{len(names)} "
                        f"{name}: {state}{extra}")
        return outcome

    monitor = ResourceMonitor(hub.pid).start()
    outcomes = await asyncio.gather(*(one(n) for n in names))
    usage = monitor.stop()
    report.progress(f"  {hub.kind}: stopping {len(names)} servers")
    stops = await stop_all(client, names, max(concurrency, 10))
    latencies = [o.seconds for o in outcomes if o.ok]
    first_cells = [o.first_cell for o in outcomes if o.first_cell]
    server_peaks = [mib(v) for v in usage.server_peak_rss.values()]
    server_pss = [mib(v) for v in usage.server_peak_pss.values()]
    return {
        "hub": hub.kind,
        "concurrency": concurrency,
        "users": len(names),
        "first_start": first_start,
        "latency_s": summarize(latencies),
        "latencies_s": {o.user: o.seconds for o in outcomes if o.ok},
        "first_cell_s": summarize(first_cells),
        "first_cell_failures": sum(o.ok and not o.first_cell for o in outcomes) if first_cells
        else 0,
        "failures": sum(not o.ok for o in outcomes),
        "errors": {o.user: o.error for o in outcomes if not o.ok},
        "answers_429": sum(o.answers_429 for o in outcomes),
        "hub_cpu_seconds": usage.hub_cpu_seconds,
        "hub_tree_cpu_seconds": usage.hub_tree_cpu_seconds,
        "other_cpu_seconds": usage.other_cpu_seconds,
        "wall_s": usage.wall_seconds,
        "load_average_start_end": usage.load_average,
        "hub_peak_rss_mib": mib(usage.hub_peak_rss),
        "server_peak_rss_mib": {
            **{k: v for k, v in summarize(server_peaks).items() if k in ("count", "p50", "max")},
            "per_server": {name: mib(v) for name, v in sorted(usage.server_peak_rss.items())},
        },
        "server_peak_pss_mib": {
            k: v for k, v in summarize(server_pss).items() if k in ("count", "p50", "max")
        },
        "fork_parents_peak_mib": {k: mib(v) if k != "count" else v
                                  for k, v in usage.fork_parent_peak.items()},
        "stop_s": summarize(stops),
        "progress_at_s": progress_breakdown(outcomes),
    }


def progress_breakdown(outcomes) -> dict[str, float]:
    """Median arrival (seconds after the request) of each progress message, in order."""
    arrivals: dict[str, list[float]] = {}
    for outcome in outcomes:
        for event in outcome.events:
            if "at" in event:
                message = event.get("message", "").replace(outcome.user, "<user>")
                arrivals.setdefault(message, []).append(event["at"])
    medians = {message: percentile(times, 50) for message, times in arrivals.items()}
    return dict(sorted(medians.items(), key=lambda item: item[1]))


async def first_cell(client: HubClient, name: str, spawn_seconds: float) -> float | None:
    """Seconds from the spawn request to a new kernel's first cell result (None: failed)."""
    began = time.perf_counter()
    try:
        kernel = await client.start_kernel(name)
        output = await client.execute(name, kernel, CELL)
        seconds = spawn_seconds + time.perf_counter() - began
        await client.stop_kernel(name, kernel)
    except Exception as error:  # reported per round as first_cell_failures
        report.progress(f"  {name}: first cell failed: {error}")
        return None
    return seconds if output.strip() == CELL_OUTPUT else None


async def wait_prewarmed(hub: BenchHub, timeout: float = 120) -> None:
    """Until the pre-warmed fork server is ready (it starts with the hub, as a site's would)."""
    deadline = time.monotonic() + timeout
    while "Fork server of" not in hub.handle.log_text() and time.monotonic() < deadline:
        await asyncio.sleep(0.5)


def target_checks(rounds: list[dict]) -> list[dict]:
    """The fresh start within 10% of plain JupyterHub; the fork server's spawn p50 at
    ``FORK_TARGETS`` and its Start → first cell p50 at ``FIRST_CELL_TARGET`` of it."""
    checks = []
    for c in sorted({r["concurrency"] for r in rounds}):
        by_hub = {r["hub"]: r for r in rounds if r["concurrency"] == c}
        if "jupyterhub" not in by_hub:
            continue
        plain = by_hub["jupyterhub"]
        if "kioskhub-fresh" in by_hub:
            fresh = by_hub["kioskhub-fresh"]["latency_s"]
            p50 = within(fresh["p50"], plain["latency_s"]["p50"], TOLERANCE)
            p95 = within(fresh["p95"], plain["latency_s"]["p95"], TOLERANCE)
            checks.append({
                "concurrency": c,
                "hub": "kioskhub-fresh",
                "target": f"p50 and p95 within {TOLERANCE:.0%} of plain JupyterHub",
                "p50_ratio": ratio(fresh["p50"], plain["latency_s"]["p50"]),
                "p95_ratio": ratio(fresh["p95"], plain["latency_s"]["p95"]),
                "met": None if p50 is None or p95 is None else (p50 and p95),
            })
        if "kioskhub" in by_hub:
            fork = by_hub["kioskhub"]
            spawn = ratio(fork["latency_s"]["p50"], plain["latency_s"]["p50"])
            cell = ratio(fork["first_cell_s"]["p50"], plain["first_cell_s"]["p50"])
            limit = FORK_TARGETS.get(c, min(FORK_TARGETS.values()))
            checks.append({
                "concurrency": c,
                "hub": "kioskhub",
                "target": f"spawn p50 ≤ {limit}×, first cell p50 ≤ {FIRST_CELL_TARGET}× "
                "plain JupyterHub, no failure",
                "p50_ratio": spawn,
                "first_cell_ratio": cell,
                "met": None if spawn is None or cell is None else (
                    spawn <= limit and cell <= FIRST_CELL_TARGET and fork["failures"] == 0
                ),
            })
    return checks


def print_results(rounds: list[dict], checks: list[dict], cond: dict, limits: dict) -> None:
    print()
    print(report.conditions_line(cond))
    for kind, hub_limits in limits.items():
        print(f"  {kind}: concurrent_spawn_limit {hub_limits['concurrent_spawn_limit']}, "
              f"active_server_limit {hub_limits['active_server_limit']} (0: none), "
              f"{hub_limits['source']}")
    rows = []
    for r in rounds:
        lat, mem, pss = r["latency_s"], r["server_peak_rss_mib"], r["server_peak_pss_mib"]
        rows.append([r["hub"], r["concurrency"], r["users"], lat["p50"], lat["p95"], lat["max"],
                     r["first_cell_s"]["p50"], r["failures"] + r["first_cell_failures"],
                     r["answers_429"], r["hub_cpu_seconds"], mem.get("p50"), pss.get("p50"),
                     r["fork_parents_peak_mib"].get("pss"), r["stop_s"]["p50"],
                     r["hub_tree_cpu_seconds"] / r["users"],
                     r["other_cpu_seconds"] / max(r["wall_s"], 1e-9)])
    report.print_table(
        ["hub", "C", "N", "p50 s", "p95 s", "max s", "1st cell p50 s", "fail", "429",
         "hub CPU s", "server RSS p50", "server PSS p50", "parents PSS", "stop p50 s",
         "CPU s/server", "others' cores"],
        rows, title="Spawn latency (request → ready + /api/status 200; → first cell result)")
    print("  hub CPU: the hub process only; RSS/PSS in MiB (a server with its kernel; PSS "
          "shares the pages a forked server\n  has in common with its parent); parents PSS: the "
          "fork servers' parents together; CPU s/server: the hub,\n  proxy and servers together, "
          "per server started; others' cores: CPU the rest of the machine used meanwhile")
    for check in checks:
        ratios = f"p50 ×{_x(check['p50_ratio'])}"
        if "p95_ratio" in check:
            ratios += f", p95 ×{_x(check['p95_ratio'])}"
        if "first_cell_ratio" in check:
            ratios += f", first cell ×{_x(check['first_cell_ratio'])}"
        print(f"target {check['hub']} ({check['target']}) at C={check['concurrency']}: "
              f"{verdict(check['met'])} ({ratios})")


def plot(rounds: list[dict], cond: dict) -> None:
    concurrencies = sorted({r["concurrency"] for r in rounds})
    figure, axes = report.new_figure(len(concurrencies), width=5.5, height=4.5)
    for ax, c in zip(axes, concurrencies, strict=True):
        mine = sorted((r for r in rounds if r["concurrency"] == c),
                      key=lambda r: HUBS.index(r["hub"]))
        data = [list(r["latencies_s"].values()) or [0] for r in mine]
        ax.boxplot(data, tick_labels=[r["hub"] for r in mine], whis=(5, 95), showfliers=True)
        for i, values in enumerate(data, start=1):
            ax.plot([i] * len(values), values, "o", alpha=0.4, markersize=4)
        cells = [(i, r["first_cell_s"].get("p50")) for i, r in enumerate(mine, start=1)]
        cells = [(i, p50) for i, p50 in cells if p50 is not None]
        if cells:
            ax.plot(*zip(*cells, strict=True), "D", color="black", markersize=5,
                    label="Start → first cell, p50")
            ax.legend(fontsize=7, loc="upper right")
        ax.tick_params(axis="x", labelrotation=20, labelsize=8)
        ax.set_title(f"C={c}, N={mine[0]['users']}")
        ax.set_ylabel("seconds to ready")
        ax.set_ylim(bottom=0)
    figure.suptitle("Spawn latency (whiskers: p5–p95)", fontsize=11)
    figure.text(0.01, 0.005, report.caption(cond), fontsize=6, wrap=True)
    report.save_figure(NAME, figure)


async def run(args) -> dict:
    concurrencies = list(args.concurrency)
    peak = max(concurrencies)
    cond = report.conditions(N=args.users, C=concurrencies, hubs=list(args.hubs))
    print(report.conditions_line(cond), flush=True)
    if peak > DEFAULT_CONCURRENT_SPAWN_LIMIT and "kioskhub" in args.hubs:
        report.progress(f"warning: C={peak} is above KioskHub's concurrent_spawn_limit "
                        f"({DEFAULT_CONCURRENT_SPAWN_LIMIT}): expect 429 answers")
    hubs: dict[str, BenchHub] = {}
    clients: dict[str, HubClient] = {}
    rounds: list[dict] = []
    names = user_names(args.users)
    try:
        for kind in args.hubs:
            report.progress(f"starting {LABELS[kind]}")
            if kind == "kioskhub":
                hubs[kind] = start_kioskhub(
                    "spawn", spawner={"fork_server_prewarm": ["default"]})
            elif kind == "kioskhub-new-kernels":
                hubs[kind] = start_kioskhub("spawn-new-kernels", spawner={
                    "fork_server_prewarm": ["default"], "fork_kernels": False})
                hubs[kind].kind = kind
            elif kind == "kioskhub-fresh":
                hubs[kind] = start_kioskhub("spawn-fresh", spawner={"fork_server": False})
                hubs[kind].kind = kind
            else:
                hubs[kind] = start_plain_jupyterhub(
                    "spawn", concurrent_spawn_limit=max(DEFAULT_CONCURRENT_SPAWN_LIMIT, peak))
            clients[kind] = await admin_client(hubs[kind].url, ADMIN, ADMIN_PASSWORD)
            await create_users(clients[kind], names)
            report.progress(f"  {kind} at {hubs[kind].url}, limits {hubs[kind].limits}")
        for index, c in enumerate(concurrencies):
            order = list(args.hubs) if index % 2 == 0 else list(reversed(args.hubs))
            if index == 0:
                for kind in ("kioskhub", "kioskhub-new-kernels"):
                    if kind in hubs:
                        await wait_prewarmed(hubs[kind])
            for kind in order:
                report.progress(f"{LABELS[kind]}: {len(names)} spawns at C={c}")
                rounds.append(await spawn_round(hubs[kind], clients[kind], names, c, index == 0,
                                                first_cells=True))
    finally:
        for client in clients.values():
            await client.close()
        for hub in hubs.values():
            report.progress(f"stopping {hub.kind}")
            with contextlib.suppress(Exception):
                hub.stop()
            hub.remove()
    checks = target_checks(rounds)
    limits = {k: h.limits for k, h in hubs.items()}
    print_results(rounds, checks, cond, limits)
    result = {"benchmark": NAME, "conditions": cond, "limits": limits,
              "rounds": rounds, "targets": checks}
    report.write_json(NAME, result)
    plot(rounds, cond)
    return result


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", "-n", type=int, default=20, help="N: servers per round (20)")
    p.add_argument("--concurrency", "-c", type=int, nargs="+", default=[1, 10],
                   help="C: spawns in flight, one round per value (1 10)")
    p.add_argument("--hubs", nargs="+", choices=HUBS, default=list(HUBS))
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

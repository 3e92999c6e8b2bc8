"""Spawn latency: KioskHub's local backend against plain JupyterHub, same machine, same run.

For each concurrency C, N users each request their server through the REST API (as the hub's
admin); the clock runs from the first request to the moment that the progress stream says
ready *and* the server's own ``/api/status`` answers 200 through the proxy. Rounds alternate
between the hubs; after each round every server is stopped. The first round is each user's
first start (KioskHub then also makes their system account and home); later rounds are
returning users.

    .venv/bin/python -m benchmarks.spawn_latency --users 20 --concurrency 1 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

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
HUBS = ("jupyterhub", "kioskhub")
LABELS = {"jupyterhub": "plain JupyterHub (SimpleLocalProcessSpawner)",
          "kioskhub": "KioskHub (local backend)"}


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
                      first_start: bool) -> dict:
    """Spawn every user in ``names`` with at most ``concurrency`` in flight; then stop all."""
    gate = asyncio.Semaphore(concurrency)
    done = 0

    async def one(name: str):
        nonlocal done
        async with gate:
            outcome = await client.spawn(name)
        done += 1
        state = f"ready in {outcome.seconds:6.2f} s" if outcome.ok else f"FAILED ({outcome.error})"
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
    server_peaks = [mib(v) for v in usage.server_peak_rss.values()]
    return {
        "hub": hub.kind,
        "concurrency": concurrency,
        "users": len(names),
        "first_start": first_start,
        "latency_s": summarize(latencies),
        "latencies_s": {o.user: o.seconds for o in outcomes if o.ok},
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


def target_checks(rounds: list[dict]) -> list[dict]:
    checks = []
    for c in sorted({r["concurrency"] for r in rounds}):
        by_hub = {r["hub"]: r for r in rounds if r["concurrency"] == c}
        if set(by_hub) != set(HUBS):
            continue
        kiosk, plain = by_hub["kioskhub"]["latency_s"], by_hub["jupyterhub"]["latency_s"]
        p50 = within(kiosk["p50"], plain["p50"], TOLERANCE)
        p95 = within(kiosk["p95"], plain["p95"], TOLERANCE)
        checks.append({
            "concurrency": c,
            "p50_ratio": ratio(kiosk["p50"], plain["p50"]),
            "p95_ratio": ratio(kiosk["p95"], plain["p95"]),
            "met": None if p50 is None or p95 is None else (p50 and p95),
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
        lat, mem = r["latency_s"], r["server_peak_rss_mib"]
        rows.append([r["hub"], r["concurrency"], r["users"], lat["p50"], lat["p95"], lat["max"],
                     r["failures"], r["answers_429"], r["hub_cpu_seconds"], r["hub_peak_rss_mib"],
                     mem.get("p50"), mem.get("max"), r["stop_s"]["p50"],
                     r["hub_tree_cpu_seconds"] / r["users"],
                     r["other_cpu_seconds"] / max(r["wall_s"], 1e-9)])
    report.print_table(
        ["hub", "C", "N", "p50 s", "p95 s", "max s", "fail", "429", "hub CPU s",
         "hub RSS MiB", "server RSS p50", "server RSS max", "stop p50 s", "CPU s/server",
         "others' cores"],
        rows, title="Spawn latency (request → ready + /api/status 200)")
    print("  hub CPU: the hub process only; RSS in MiB; CPU s/server: the hub, proxy and "
          "servers together, per server started;\n  others' cores: CPU that the rest of the "
          "machine used meanwhile, in cores (the machine was shared when > 0.1)")
    for check in checks:
        print(f"target (KioskHub p50 and p95 within {TOLERANCE:.0%} of plain JupyterHub) at "
              f"C={check['concurrency']}: {verdict(check['met'])} "
              f"(p50 ×{_x(check['p50_ratio'])}, p95 ×{_x(check['p95_ratio'])})")


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
                hubs[kind] = start_kioskhub("spawn")
            else:
                hubs[kind] = start_plain_jupyterhub(
                    "spawn", concurrent_spawn_limit=max(DEFAULT_CONCURRENT_SPAWN_LIMIT, peak))
            clients[kind] = await admin_client(hubs[kind].url, ADMIN, ADMIN_PASSWORD)
            await create_users(clients[kind], names)
            report.progress(f"  {kind} at {hubs[kind].url}, limits {hubs[kind].limits}")
        for index, c in enumerate(concurrencies):
            order = list(args.hubs) if index % 2 == 0 else list(reversed(args.hubs))
            for kind in order:
                report.progress(f"{LABELS[kind]}: {len(names)} spawns at C={c}")
                rounds.append(await spawn_round(hubs[kind], clients[kind], names, c, index == 0))
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

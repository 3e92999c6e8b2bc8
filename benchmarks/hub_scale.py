"""Hub at scale: 1,000 registered users, 50 active servers; user-list latency and restart.

Users are created through the admin API in batches; the active servers are started with
the REST API (C at a time). Then, R times each: ``GET /hub/api/users`` (one page, the
hub's default page size), the whole list page by page (``Accept:
application/jupyterhub-pagination+json``), and ``GET /hub/api/users?state=active``. Then the
hub restarts with its servers left running (``cleanup_servers: false``): the time to stop,
the time until the hub's API answers again, and until every active server answers
``/api/status`` through the proxy again (re-adopted).

    .venv/bin/python -m benchmarks.hub_scale --users 1000 --active 50
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time

import psutil

from . import report
from .hub_client import HubClient, admin_client
from .hubs import ADMIN, ADMIN_PASSWORD, BenchHub, start_kioskhub, start_plain_jupyterhub
from .process_monitor import mib
from .spawn_latency import create_users, stop_all
from .stats import summarize

NAME = "hub_scale"
HUBS = ("kioskhub", "jupyterhub")
PAGINATION = {"Accept": "application/jupyterhub-pagination+json"}


async def timed(call) -> tuple[float, object]:
    started = time.perf_counter()
    value = await call()
    return time.perf_counter() - started, value


async def list_all(client: HubClient) -> int:
    """Every user, page by page; returns how many."""
    count, offset = 0, 0
    while True:
        status, body, _ = await client.api("GET", f"/users?offset={offset}", headers=PAGINATION)
        if status != 200:
            raise RuntimeError(f"GET /users answered {status}")
        count += len(body["items"])
        nxt = body["_pagination"].get("next")
        if not nxt:
            return count
        offset = nxt["offset"]


async def one_page(client: HubClient, query: str = "") -> int:
    status, body, _ = await client.api("GET", f"/users{query}")
    if status != 200:
        raise RuntimeError(f"GET /users{query} answered {status}")
    return len(body)


async def latencies(client: HubClient, repeat: int) -> dict:
    calls = {
        "GET /users (one page)": lambda: one_page(client),
        "GET /users (all pages)": lambda: list_all(client),
        "GET /users?state=active": lambda: one_page(client, "?state=active"),
    }
    found = {}
    for name, call in calls.items():
        times, count = [], None
        for _ in range(repeat):
            seconds, count = await timed(call)
            times.append(seconds)
        found[name] = {"users_returned": count, "latency_s": summarize(times)}
        lat = found[name]["latency_s"]
        report.progress(f"  {name:26s} {count:5d} users: p50 {lat['p50'] * 1000:.0f} ms, "
                        f"p95 {lat['p95'] * 1000:.0f} ms")
    return found


async def wait_all_answer(client: HubClient, names: list[str], timeout: float) -> float:
    """Seconds until every named server answers /api/status 200 through the proxy."""
    started = time.perf_counter()
    deadline = time.monotonic() + timeout
    await asyncio.gather(*(client.wait_server_status(n, deadline) for n in names))
    return time.perf_counter() - started


async def scale_run(kind: str, args) -> dict:
    users = [f"scale-{i:04d}" for i in range(args.users)]
    active = users[: args.active]
    result: dict = {"hub": kind, "users": args.users, "active": args.active}
    hub: BenchHub | None = None
    client: HubClient | None = None
    try:
        report.progress(f"starting {kind} (servers survive a hub restart)")
        hub = (start_kioskhub("scale", hub={"cleanup_servers": False}) if kind == "kioskhub"
               else start_plain_jupyterhub("scale", cleanup_servers=False))
        result["limits"] = hub.limits
        client = await admin_client(hub.url, ADMIN, ADMIN_PASSWORD)
        report.progress(f"  registering {args.users} users in batches of {args.batch}")
        seconds, _ = await timed(lambda: create_users(client, users, args.batch))
        result["create_users_s"] = seconds
        report.progress(f"  registered in {seconds:.1f} s; starting {args.active} servers, "
                        f"{args.concurrency} at a time")
        gate = asyncio.Semaphore(args.concurrency)
        started = 0

        async def start(name: str):
            nonlocal started
            async with gate:
                outcome = await client.spawn(name)
            started += 1
            if not outcome.ok or started % 10 == 0 or started == len(active):
                state = "ok" if outcome.ok else f"FAILED {outcome.error}"
                report.progress(f"  {started:3d}/{len(active)} servers ({name}: {state})")
            return outcome

        seconds, outcomes = await timed(lambda: asyncio.gather(*(start(n) for n in active)))
        result["start_active_s"] = seconds
        result["start_failures"] = sum(not o.ok for o in outcomes)
        running = [o.user for o in outcomes if o.ok]
        hub.record()
        result["hub_rss_mib"] = mib(psutil.Process(hub.pid).memory_info().rss)
        report.progress(f"{kind}: user list latency, {args.repeat} times each")
        result["before_restart"] = await latencies(client, args.repeat)
        report.progress(f"{kind}: restart with {len(running)} servers running")
        result["restart"] = await restart(hub, client, running)
        report.progress(f"{kind}: user list latency after the restart")
        result["after_restart"] = await latencies(client, args.repeat)
        report.progress(f"{kind}: stopping {len(running)} servers")
        await stop_all(client, running, args.concurrency)
    finally:
        if client is not None:
            await client.close()
        if hub is not None:
            report.progress(f"stopping {kind}")
            with contextlib.suppress(Exception):
                hub.stop()
            hub.remove()
    return result


async def restart(hub: BenchHub, client: HubClient, running: list[str]) -> dict:
    stop_s = hub.stop(keep_servers=True)
    started = time.perf_counter()
    hub.handle = await asyncio.to_thread(hub.restart)
    hub.record()
    api_s = time.perf_counter() - started
    servers_s = await wait_all_answer(client, running, timeout=300)
    status, body, _ = await client.api("GET", "/users?state=active&limit=200")
    active = len(body) if status == 200 else None
    report.progress(f"  stopped in {stop_s:.1f} s, API answered {api_s:.1f} s after start, "
                    f"all {len(running)} servers answered {api_s + servers_s:.1f} s after start; "
                    f"{active} active")
    return {"stop_s": stop_s, "api_ready_s": api_s, "servers_ready_s": api_s + servers_s,
            "active_after": active}


def print_results(runs: list[dict], cond: dict) -> None:
    print()
    print(report.conditions_line(cond))
    rows = []
    for run in runs:
        for phase in ("before_restart", "after_restart"):
            for call, data in run.get(phase, {}).items():
                lat = data["latency_s"]
                rows.append([run["hub"], phase.replace("_", " "), call, data["users_returned"],
                             lat["p50"] * 1000, lat["p95"] * 1000, lat["max"] * 1000])
    report.print_table(["hub", "when", "call", "users", "p50 ms", "p95 ms", "max ms"], rows,
                       title="Hub at scale: user list latency")
    rows = [[r["hub"], r["users"], r["active"], r.get("create_users_s"), r.get("start_active_s"),
             r.get("start_failures"), r.get("restart", {}).get("stop_s"),
             r.get("restart", {}).get("api_ready_s"), r.get("restart", {}).get("servers_ready_s"),
             r.get("restart", {}).get("active_after")] for r in runs]
    report.print_table(["hub", "users", "active", "register s", "start active s", "failed",
                        "stop s", "restart: API s", "restart: servers s", "active after"],
                       rows, title="Hub at scale: registration, start and restart")


def plot(runs: list[dict], cond: dict) -> None:
    figure, axes = report.new_figure(2, width=5.5, height=4.5)
    calls = list(runs[0].get("before_restart", {}))
    width = 0.8 / max(len(runs), 1)
    for i, run in enumerate(runs):
        xs = [c + i * width for c in range(len(calls))]
        p50 = [run["before_restart"][c]["latency_s"]["p50"] * 1000 for c in calls]
        axes[0].bar(xs, p50, width, label=run["hub"])
        restart_data = run.get("restart", {})
        axes[1].bar([j + i * width for j in range(2)],
                    [restart_data.get("api_ready_s", 0), restart_data.get("servers_ready_s", 0)],
                    width, label=run["hub"])
    axes[0].set_xticks([c + width * (len(runs) - 1) / 2 for c in range(len(calls))],
                       [c.replace("GET /users", "/users") for c in calls], fontsize=7)
    axes[0].set_ylabel("p50 ms")
    axes[0].set_title(f"User list, {runs[0]['users']} users, {runs[0]['active']} active")
    axes[1].set_xticks([j + width * (len(runs) - 1) / 2 for j in range(2)],
                       ["API answers", "all servers answer"])
    axes[1].set_ylabel("seconds after start")
    axes[1].set_title("Hub restart")
    for ax in axes:
        ax.legend()
    figure.text(0.01, 0.005, report.caption(cond), fontsize=6, wrap=True)
    report.save_figure(NAME, figure)


async def run(args) -> dict:
    cond = report.conditions(users=args.users, active=args.active, C=args.concurrency,
                             repeat=args.repeat, hubs=list(args.hubs))
    print(report.conditions_line(cond), flush=True)
    runs = [await scale_run(kind, args) for kind in args.hubs]
    print_results(runs, cond)
    result = {"benchmark": NAME, "conditions": cond, "runs": runs}
    report.write_json(NAME, result)
    plot(runs, cond)
    return result


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=1000, help="registered users (1000)")
    p.add_argument("--active", type=int, default=50, help="running servers (50)")
    p.add_argument("--batch", type=int, default=100, help="users per admin API call (100)")
    p.add_argument("--concurrency", "-c", type=int, default=10,
                   help="servers started at a time (10)")
    p.add_argument("--repeat", "-r", type=int, default=20, help="calls per latency (20)")
    p.add_argument("--hubs", nargs="+", choices=HUBS, default=["kioskhub"],
                   help="hubs to measure (kioskhub; add jupyterhub to compare)")
    return p


def main(argv: list[str] | None = None) -> int:
    asyncio.run(run(parser().parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Usage accounting's cost: KioskHub's spawn latency with accounting on vs off, and the
recorder's cost per update for N running servers.

Part 1: two KioskHubs (local backend) on the same machine, one with ``accounting.enabled``
and the shortest ``update_interval`` (5 s, the most updates), one without. Each round
spawns N users' servers with C in flight (the clock as in ``spawn_latency``: request to
ready and ``/api/status`` 200), then stops them; rounds alternate between the hubs.
Target: the p50 with accounting within 5% of the p50 without, at C=10.

Part 2: in this process, the work of one update (``UsageRecorder.update``): read a cgroup's
CPU time and memory peak (this process's own cgroup folders), move the record on in the
SQLite store and count the increments, for N open records one after the other. Shown per
update, and as the share of one core it takes at the default interval (60 s).

    .venv/bin/python -m benchmarks.usage_overhead --users 10 --concurrency 10 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from pathlib import Path

from kioskhub.hub.schema.site import Site
from kioskhub.spawner import usage_store
from kioskhub.spawner.cgroup_layout import current_layout
from kioskhub.spawner.usage_metrics import RecordCounter
from kioskhub.spawner.usage_recorder import cgroup_usage

from . import report
from .hub_client import HubClient, admin_client
from .hubs import ADMIN, ADMIN_PASSWORD, BenchHub, start_kioskhub
from .spawn_latency import create_users, spawn_round, user_names
from .stats import ratio, summarize, verdict, within

NAME = "usage_overhead"
TOLERANCE = 0.05
DEFAULT_INTERVAL = 60
SETTINGS = {"on": {"enabled": True, "update_interval": 5}, "off": {"enabled": False}}


async def spawn_rounds(args) -> list[dict]:
    hubs: dict[str, BenchHub] = {}
    clients: dict[str, HubClient] = {}
    rounds: list[dict] = []
    names = user_names(args.users, prefix="acct")
    try:
        for kind, accounting in SETTINGS.items():
            report.progress(f"starting KioskHub with accounting {kind}")
            hubs[kind] = start_kioskhub(f"usage-{kind}", accounting=accounting)
            clients[kind] = await admin_client(hubs[kind].url, ADMIN, ADMIN_PASSWORD)
            await create_users(clients[kind], names)
        for index in range(args.rounds):
            order = list(SETTINGS) if index % 2 == 0 else list(reversed(SETTINGS))
            for kind in order:
                report.progress(f"accounting {kind}: {len(names)} spawns at C={args.concurrency}")
                found = await spawn_round(
                    hubs[kind], clients[kind], names, args.concurrency, index == 0
                )
                rounds.append({**found, "hub": f"accounting {kind}", "round": index})
    finally:
        for client in clients.values():
            await client.close()
        for hub in hubs.values():
            with contextlib.suppress(Exception):
                hub.stop()
            hub.remove()
    return rounds


def update_costs(counts: list[int], repeat: int) -> list[dict]:
    """Seconds per update (cgroup read + store update + counters) for N open records."""
    layout = current_layout()
    dirs = tuple(d for d in (layout.cpuacct_dir, layout.memory_dir) if d) if layout else ()
    results = []
    with tempfile.TemporaryDirectory(prefix="kioskhub-usage-bench-") as folder:
        site = Site.model_validate({"hub": {"state_dir": folder}})
        path = Path(folder) / "usage.sqlite"
        for n in counts:
            now = time.time()
            records = [bench_record(f"{n}-{i}", now) for i in range(n)]
            for record in records:
                usage_store.open_record(path, record)
            counters = [RecordCounter(record, site) for record in records]
            samples, cpu_samples = [], []
            for _ in range(repeat):
                for record, counter in zip(records, counters, strict=True):
                    began, began_cpu = time.perf_counter(), time.process_time()
                    cpu, peak = cgroup_usage(dirs)
                    seen = time.time()
                    if usage_store.update_record(path, record.record_id, seen, cpu, peak):
                        counter.count(cpu, seen)
                    samples.append(time.perf_counter() - began)
                    cpu_samples.append(time.process_time() - began_cpu)
            per_update, cpu_per_update = summarize(samples), summarize(cpu_samples)
            results.append({
                "servers": n,
                "per_update_ms": _ms(per_update),
                "cpu_per_update_ms": _ms(cpu_per_update),
                "core_share_at_default_interval": n * cpu_per_update["mean"] / DEFAULT_INTERVAL,
                "cgroup_dirs": list(dirs),
            })
            report.progress(f"  {n} records: {per_update['p50'] * 1000:.2f} ms per update (p50)")
    return results


def _ms(summary: dict) -> dict:
    return {k: v * 1000 if isinstance(v, float) else v for k, v in summary.items()}


def bench_record(key: str, now: float) -> usage_store.UsageRecord:
    return usage_store.UsageRecord(
        record_id=f"bench-{key}", username=f"acct-{key}", groups="physics", server_name="",
        backend="local", profile="bench", environment="python3", environment_ref="python3",
        cpu_cores=1.0, memory_requested=2**30, gpu_count=0, start=now, last_seen=now,
        end=None, cpu_seconds=0.0, memory_peak=0,
    )


def target_checks(rounds: list[dict], concurrency: int) -> list[dict]:
    """On the returning users' rounds when there are any: in the first, the hub that runs
    first also creates the users' system accounts, which the other then finds."""
    returning = [r for r in rounds if not r["first_start"]] or rounds
    p50s = {kind: [r["latency_s"]["p50"] for r in returning
                   if r["hub"] == f"accounting {kind}"]
            for kind in SETTINGS}
    on, off = (summarize([v for v in p50s[k] if v is not None])["p50"] for k in ("on", "off"))
    return [{
        "target": f"spawn p50 with accounting within {TOLERANCE:.0%} of without at "
                  f"C={concurrency} (returning users)",
        "ratio": ratio(on, off),
        "met": within(on, off, TOLERANCE),
    }]


def print_results(rounds, costs, checks, cond) -> None:
    print()
    print(report.conditions_line(cond))
    report.print_table(
        ["hub", "round", "C", "N", "p50 s", "p95 s", "max s", "fail", "hub CPU s",
         "others' cores"],
        [[r["hub"], r["round"], r["concurrency"], r["users"], r["latency_s"]["p50"],
          r["latency_s"]["p95"], r["latency_s"]["max"], r["failures"], r["hub_cpu_seconds"],
          r["other_cpu_seconds"] / max(r["wall_s"], 1e-9)] for r in rounds],
        title="Spawn latency with usage accounting on (update every 5 s) and off",
    )
    report.print_table(
        ["open records N", "p50 ms/update", "p95 ms/update", "max ms", "CPU ms/update",
         "core share @60 s"],
        [[c["servers"], c["per_update_ms"]["p50"], c["per_update_ms"]["p95"],
          c["per_update_ms"]["max"], c["cpu_per_update_ms"]["mean"],
          c["core_share_at_default_interval"]] for c in costs],
        title="Usage recorder: one update = cgroup read + SQLite update + counters",
    )
    print("  ms/update: wall time (mostly SQLite's commit to disk); core share: the CPU time "
          "of N updates per 60 s interval,\n  in cores of the hub's machine (the updates run "
          "in threads, off the event loop)")
    for check in checks:
        print(f"target ({check['target']}): {verdict(check['met'])} "
              f"(×{check['ratio'] or 0:.3f})")


def plot(rounds, costs, cond) -> None:
    figure, (left, right) = report.new_figure(2, width=5.5, height=4.5)
    kinds = [f"accounting {k}" for k in SETTINGS]
    data = [[s for r in rounds if r["hub"] == k for s in r["latencies_s"].values()] or [0]
            for k in kinds]
    left.boxplot(data, tick_labels=kinds, whis=(5, 95))
    left.set_ylabel("seconds to ready")
    left.set_ylim(bottom=0)
    left.set_title(f"Spawn latency, C={rounds[0]['concurrency']}, N={rounds[0]['users']}")
    right.plot([c["servers"] for c in costs], [c["per_update_ms"]["p50"] for c in costs], "o-")
    right.set_xscale("log")
    right.set_xlabel("open records")
    right.set_ylabel("ms per update (p50)")
    right.set_ylim(bottom=0)
    right.set_title("Usage recorder: cost of one update")
    figure.text(0.01, 0.005, report.caption(cond), fontsize=6, wrap=True)
    report.save_figure(NAME, figure)


async def run(args) -> dict:
    cond = report.conditions(N=args.users, C=args.concurrency, rounds=args.rounds,
                             records=args.records, repeat=args.repeat)
    print(report.conditions_line(cond), flush=True)
    report.progress("usage recorder: cost of one update")
    costs = update_costs(args.records, args.repeat)
    rounds = await spawn_rounds(args)
    checks = target_checks(rounds, args.concurrency)
    print_results(rounds, costs, checks, cond)
    result = {"benchmark": NAME, "conditions": cond, "rounds": rounds,
              "update_costs": costs, "targets": checks}
    report.write_json(NAME, result)
    plot(rounds, costs, cond)
    return result


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", "-n", type=int, default=10, help="N: servers per round (10)")
    p.add_argument("--concurrency", "-c", type=int, default=10, help="C: spawns in flight (10)")
    p.add_argument("--rounds", "-r", type=int, default=2, help="rounds per hub (2)")
    p.add_argument("--records", type=int, nargs="+", default=[10, 100, 1000],
                   help="open records for the update cost (10 100 1000)")
    p.add_argument("--repeat", type=int, default=1, help="updates of each record (1)")
    return p


def main(argv: list[str] | None = None) -> int:
    asyncio.run(run(parser().parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Dask from a user-built environment against the default environment: from
``Gateway().new_cluster()`` to the first task's result, same hub, same run.

One KioskHub with the builder and ``dask.enabled``. ``envbench`` registers a repository with
a small package (``pyproject.toml``); the local builder builds it into a private venv, and
envbench's server launches from it, so its clusters run that venv (scheduler and workers),
and the first task imports the package. ``ownbench``'s server runs the default environment
(KioskHub's own), whose clusters run as before. Each kernel times the same client code:
``new_cluster()``, ``scale(1)``, one worker ready, the first task's result, shutdown.
Repetitions alternate between the two; each cluster is shut down before the next.

    .venv/bin/python -m benchmarks.dask_user_environment --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import time
from pathlib import Path

from tests.support.hub_process import free_port
from tests.support.package_repository import make_package_repository

from . import report
from .dask_startup import parse_result, remove_scratch_space
from .hub_client import HubClient
from .hubs import USER_PASSWORD, open_folder, start_kioskhub
from .stats import ratio, summarize, verdict, within

NAME = "dask_user_environment"
TOLERANCE = 0.20
BUILT, OWN = "envbench", "ownbench"
KINDS = {BUILT: "user-built venv", OWN: "default environment"}
TASKS = {
    BUILT: "import beamline\n    return beamline.focus(x)",
    OWN: "import operator\n    return operator.mul(2, x)",
}
REP = """
import json, time
from dask_gateway import Gateway
t0 = time.perf_counter()
gateway = Gateway()
cluster = gateway.new_cluster()
t1 = time.perf_counter()
cluster.scale(1)
client = cluster.get_client()
client.wait_for_workers(1, timeout=300)
t2 = time.perf_counter()
def task(x):
    {task}
answer = client.submit(task, 21, pure=False).result(timeout=300)
t3 = time.perf_counter()
assert answer == 42, answer
client.close()
cluster.shutdown()
t4 = time.perf_counter()
gateway.close()
print("RESULT " + json.dumps({{"new_cluster": t1 - t0, "ready": t2 - t0,
                               "first_task": t3 - t0, "shutdown": t4 - t3}}))
"""
async def build_environment(client: HubClient, hub_url: str, repo: Path) -> tuple[str, float]:
    """Register ``repo`` as ``beam`` and wait for its build: (spawn name, seconds)."""
    api = f"{hub_url}/services/environments/api/environments"
    headers = {"Authorization": f"token {client.token}"}
    started = time.perf_counter()
    body = {"name": "beam", "repository": str(repo)}
    async with client.session.post(api, json=body, headers=headers) as reply:
        created = await reply.json()
        if reply.status != 201:
            raise RuntimeError(f"registering the repository answered {reply.status}: {created}")
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        async with client.session.get(f"{api}/{created['id']}", headers=headers) as reply:
            environment = await reply.json()
        if environment["status"] == "ready":
            return environment["spawn_name"], time.perf_counter() - started
        if environment["status"] == "failed":
            raise RuntimeError(f"the build failed: {environment['latest_build']}")
        await asyncio.sleep(2)
    raise TimeoutError("the build did not finish within 900 s")


async def signed_in(hub_url: str, user: str) -> HubClient:
    client = HubClient(hub_url)
    await client.login(user, USER_PASSWORD)
    await client.request_token(user)
    return client


async def start_server(client: HubClient, user: str, environment: str | None) -> str:
    """``user``'s server, launched from ``environment`` (None: the default), and a kernel."""
    outcome = await client.spawn(user, {"environment": environment} if environment else None)
    if not outcome.ok:
        raise RuntimeError(f"spawning {user} failed: {outcome.error}")
    return await client.start_kernel(user)


async def run(args) -> dict:
    cond = report.conditions(repeat=args.repeat, workers=1, worker_cores=1, worker_memory="1G")
    print(report.conditions_line(cond), flush=True)
    samples: dict[str, list[dict]] = {BUILT: [], OWN: []}
    errors: list[str] = []
    clients: dict[str, HubClient] = {}
    kernels: dict[str, str] = {}
    build_seconds = None
    hub = repo = None
    try:
        report.progress("starting KioskHub with the builder and dask.enabled")
        hub = start_kioskhub(
            "dask-env",
            builder={"enabled": True, "port": free_port(), "allow_local_paths": True,
                     "build_timeout": 900},
            dask={
                "enabled": True,
                "workers": {"worker_cores": 1, "worker_memory": "1G", "max_workers": 1},
                "scheduler": {"cores": 1, "memory": "1G"},
                "ports": {"http": free_port(), "scheduler_proxy": free_port(),
                          "api": free_port()},
            },
        )
        repo = make_package_repository(open_folder("dask-env-repo"))
        for user in (BUILT, OWN):
            clients[user] = await signed_in(hub.url, user)
        report.progress(f"  {BUILT}: building the repository into a venv")
        spawn_name, build_seconds = await build_environment(clients[BUILT], hub.url, repo)
        report.progress(f"  built {spawn_name} in {build_seconds:.1f} s")
        for user, environment in ((BUILT, spawn_name), (OWN, None)):
            report.progress(f"  {user}: start the server ({environment or 'default'}), a kernel")
            kernels[user] = await start_server(clients[user], user, environment)
        for i in range(args.repeat):
            for user in (BUILT, OWN)[:: 1 if i % 2 == 0 else -1]:
                code = REP.format(task=TASKS[user])
                try:
                    output = await clients[user].execute(user, kernels[user], code, timeout=600)
                    result = parse_result(output)
                except Exception as error:
                    errors.append(f"{KINDS[user]} #{i + 1}: {error}")
                    report.progress(f"  {KINDS[user]:20s} #{i + 1}: FAILED {error}")
                    continue
                samples[user].append(result)
                report.progress(
                    f"  {KINDS[user]:20s} #{i + 1}: new_cluster {result['new_cluster']:.2f} s, "
                    f"worker ready {result['ready']:.2f} s, first task {result['first_task']:.2f} s"
                )
    finally:
        for user, client in clients.items():
            with contextlib.suppress(Exception):
                await client.stop(user)
            await client.close()
        if hub is not None:
            report.progress("stopping KioskHub")
            with contextlib.suppress(Exception):
                hub.stop()
            hub.remove()
            for user in (BUILT, OWN):
                remove_scratch_space(f"kh-{user}")
        if repo is not None:
            shutil.rmtree(repo.parent, ignore_errors=True)
    return finish(samples, errors, cond, build_seconds)


def finish(samples, errors, cond, build_seconds) -> dict:
    keys = ("new_cluster", "ready", "first_task", "shutdown")
    summary = {KINDS[user]: {key: summarize([s[key] for s in values]) for key in keys}
               for user, values in samples.items()}
    built = summary[KINDS[BUILT]]["first_task"]["p50"]
    own = summary[KINDS[OWN]]["first_task"]["p50"]
    check = {"target": f"user-built venv p50 within {TOLERANCE:.0%} of the default environment",
             "ratio": ratio(built, own), "met": within(built, own, TOLERANCE)}
    print()
    print(report.conditions_line(cond))
    rows = [[kind, s["first_task"]["count"], s["new_cluster"]["p50"], s["ready"]["p50"],
             s["first_task"]["p50"], s["first_task"]["max"], s["shutdown"]["p50"]]
            for kind, s in summary.items()]
    report.print_table(["environment", "runs", "new_cluster p50 s", "worker ready p50 s",
                        "first task p50 s", "first task max s", "shutdown p50 s"], rows,
                       title="Dask: new_cluster() → 1 worker → first task's result")
    ratio_text = "-" if check["ratio"] is None else f"×{check['ratio']:.2f}"
    print(f"target {check['target']}: {verdict(check['met'])} ({ratio_text})")
    if build_seconds is not None:
        print(f"(the environment's build took {build_seconds:.1f} s, not counted above)")
    for error in errors:
        print(f"error: {error}")
    result = {"benchmark": NAME, "conditions": cond,
              "samples": {KINDS[user]: values for user, values in samples.items()},
              "summary": summary, "targets": [check], "errors": errors,
              "build_seconds": build_seconds}
    report.write_json(NAME, result)
    plot(result["samples"], cond)
    return result


def plot(samples: dict[str, list[dict]], cond: dict) -> None:
    figure, axes = report.new_figure(1, width=6, height=4.5)
    ax = axes[0]
    marks = (("new_cluster", "s", "tab:gray", "new_cluster() returned"),
             ("ready", "^", "tab:green", "1 worker ready"),
             ("first_task", "o", "tab:blue", "first task's result"))
    for i, kind in enumerate(samples):
        for offset, (key, marker, color, label) in zip((-0.15, 0, 0.15), marks, strict=True):
            values = [s[key] for s in samples[kind]]
            ax.plot([i + offset] * len(values), values, marker, alpha=0.7, color=color,
                    label=label if i == 0 else None)
    ax.set_xticks(range(len(samples)), list(samples))
    ax.set_ylabel("seconds after Gateway()")
    ax.set_ylim(bottom=0)
    ax.legend()
    ax.set_title("Dask cluster start and first task, by environment")
    figure.text(0.01, 0.005, report.caption(cond), fontsize=6, wrap=True)
    report.save_figure(NAME, figure)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", "-r", type=int, default=3, help="clusters per environment (3)")
    return p


def main(argv: list[str] | None = None) -> int:
    asyncio.run(run(parser().parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Pods: time to ready of a podman pod against a local process, both started by KioskHub.

KioskHubs run side by side, one per variant:

- ``podman``: ``spawner.backend: podman`` (the Pod manifest run by ``podman kube play``) from
  the site base image, which holds jupyterhub, jupyterlab and ipykernel at the hub's versions;
- ``podman, parked``: the same with ``pods.park_minutes``: every user has started and stopped
  once before, so each start finds the pod parked for it (its Python has imported the
  server and waits for the start); timed like the others, once the parked pods wait;
- ``local, same packages``: the local backend with a venv of exactly those packages (made
  here with uv, bytecode compiled as pip does in the image), so that the server software is
  the same as in the pod; its servers are forked from a warm parent (the fork server, on by
  default for a venv the site config names);
- ``local, fresh``: the same, with ``spawner.fork_server: false``: each server imports
  everything itself, as a server in a pod does;
- ``local, own env``: the local backend with KioskHub's own environment (more server
  extensions: dask-labextension, jupyter-server-proxy, ...), as in ``spawn_latency``.

Each starts N servers one at a time (the order rotates), then C servers at once, timed as in
``spawn_latency``: from the API request until the progress stream says ready and
``/api/status`` answers 200. A pod's start is split by its progress messages: the hub's part
(the image, the home folder) until "Starting pod", ``podman kube play`` until "Waiting for
JupyterLab", and the server's own start in the pod until it answers.

Then ``pod_breakdown`` measures with podman directly what podman itself costs (a pod whose
command is trivial), what the server's imports cost inside a pod, what adding a container
to a pod made ahead would still cost, the memory of idle and warm pods, and whether
checkpoint/restore works here: the figures behind the choice of what could make a pod start
faster (README, "Container pods").

It needs the podman backend (``spawner/podman.py``), podman, and the site base image in
podman's storage (``kioskhub image build-base``, a few minutes, so never built here);
without them it says what is missing and stores that as JSON.

    .venv/bin/python -m benchmarks.pods --users 3 --concurrency 1 5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import subprocess
from pathlib import Path

import psutil

from . import pod_breakdown, report
from .hub_client import HubClient, admin_client
from .hubs import ADMIN, ADMIN_PASSWORD, BenchHub, open_folder, start_kioskhub
from .pod_breakdown import STEPS
from .spawn_latency import create_users, stop_all
from .stats import ratio, summarize

NAME = "pods"
SPAWNER = Path(__file__).resolve().parents[1] / "spawner"
VARIANTS = ("podman", "local, same packages", "local, fresh", "local, own env", "podman, parked")
PARKED = "podman, parked"


def missing_piece() -> str | None:
    """Why pods cannot be measured on this machine now, or None when they can."""
    if not (SPAWNER / "podman.py").exists():
        return "no podman backend yet"
    if shutil.which("podman") is None:
        return "podman is not installed (apt-get install podman runc)"
    try:
        from kioskhub.spawner.pod_image import BaseImageRecipe
        from kioskhub.spawner.podman_cli import podman_command, podman_env

        image = BaseImageRecipe().image_ref
        found = subprocess.run(podman_command("image", "exists", image), env=podman_env(),
                               capture_output=True, timeout=60)
    except Exception as error:  # the backend is young: say what broke instead of failing
        return f"the podman backend could not be used: {type(error).__name__}: {error}"
    if found.returncode != 0:
        return (f"the site base image {image} is not in podman's storage; build it once with "
                "`.venv/bin/kioskhub image build-base`")
    return None


async def park_ahead(client: HubClient, names: list[str], state_dir: Path) -> None:
    """Start and stop each user's server once, so that a pod is parked for each; then wait
    until every parked pod's Python has imported the server."""
    for name in names:
        await client.spawn(name)
        await stop_all(client, [name], 1)
    await parked_and_waiting(state_dir, len(names))


async def parked_and_waiting(state_dir: Path, count: int, timeout: float = 600) -> None:
    """Until ``count`` pods of the hub at ``state_dir`` are parked and their waiter waits."""
    from kioskhub.spawner.parked_pods import PARKED_LAUNCH, WAITING
    from kioskhub.spawner.podman_cli import run_podman
    from kioskhub.spawner.podman_plan import hub_tag

    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        listed = await run_podman("pod", "ps", "--format", "{{.Name}}",
                                  "--filter", f"label=kioskhub/hub={hub_tag(state_dir)}",
                                  "--filter", f"label={PARKED_LAUNCH}")
        waiting = 0
        for pod in listed.stdout.split():
            logs = await run_podman("logs", f"{pod}-notebook", check=False)
            waiting += WAITING in logs.stdout + logs.stderr
        if waiting >= count:
            return
        await asyncio.sleep(1)
    raise TimeoutError(f"fewer than {count} parked pods wait after {timeout:.0f} s")


async def rounds(clients: dict[str, HubClient], pids: dict[str, int], users: int,
                 hubs: dict[str, BenchHub], parked_users: int) -> dict:
    """C=1: each variant starts ``users`` servers one at a time, the order rotating."""
    outcomes: dict[str, list] = {kind: [] for kind in clients}
    helpers = dict.fromkeys(clients, 0.0)
    kinds = list(clients)
    for i in range(users):
        shift = i % len(kinds)
        for kind in kinds[shift:] + kinds[:shift]:
            name = f"pod-{i:03d}"
            if kind == PARKED:
                await parked_and_waiting(hubs[kind].folder / "state", parked_users)
            before = helpers_cpu(pids[kind])
            outcome = await clients[kind].spawn(name)
            helpers[kind] += helpers_cpu(pids[kind]) - before
            outcomes[kind].append(outcome)
            say(kind, f"{i + 1}/{users} {name}", outcome)
            await stop_all(clients[kind], [name], 1)
    return {kind: summary(found, helpers[kind]) for kind, found in outcomes.items()}


async def burst(clients: dict[str, HubClient], pids: dict[str, int], concurrency: int,
                hubs: dict[str, BenchHub], parked_users: int) -> dict:
    """Each variant in turn starts ``concurrency`` servers at once."""
    results = {}
    for kind, client in clients.items():
        names = [f"pod-{i:03d}" for i in range(concurrency)]
        if kind == PARKED:
            await parked_and_waiting(hubs[kind].folder / "state", parked_users)
        before = helpers_cpu(pids[kind])
        found = await asyncio.gather(*(client.spawn(name) for name in names))
        helpers = helpers_cpu(pids[kind]) - before
        for name, outcome in zip(names, found, strict=True):
            say(kind, f"C={concurrency} {name}", outcome)
        await stop_all(client, names, concurrency)
        results[kind] = summary(list(found), helpers)
    return results


def helpers_cpu(hub_pid: int) -> float:
    """CPU seconds of the hub's finished subprocesses so far (the podman commands it ran;
    a local server counts only once it has ended, so not while it starts)."""
    times = psutil.Process(hub_pid).cpu_times()
    return times.children_user + times.children_system


def say(kind: str, label: str, outcome) -> None:
    state = (f"ready in {outcome.seconds:.2f} s" if outcome.ok else f"FAILED {outcome.error}")
    report.progress(f"  {kind:22s} {label}: {state}")


PHASES = {"prepare": "Starting pod", "play": "Waiting for JupyterLab"}
"""Each phase of a pod's start ends with the progress message that starts with this."""


def phases(outcome) -> dict[str, float] | None:
    """Seconds of a pod start in the hub (image, home), in ``podman kube play``, and in the
    server until it answers; None where the progress did not show the podman steps."""
    arrivals = {}
    for phase, prefix in PHASES.items():
        found = [e["at"] for e in outcome.events if e.get("message", "").startswith(prefix)]
        if not found:
            return None
        arrivals[phase] = found[0]
    return {"prepare": arrivals["prepare"], "play": arrivals["play"] - arrivals["prepare"],
            "server": outcome.seconds - arrivals["play"]}


def summary(outcomes: list, helpers_cpu_s: float | None = None) -> dict:
    ok = [o for o in outcomes if o.ok]
    split = [p for p in (phases(o) for o in ok) if p]
    return {"latency_s": summarize([o.seconds for o in ok]),
            "hub_subprocess_cpu_s_per_start": helpers_cpu_s / len(outcomes)
            if helpers_cpu_s is not None and outcomes else None,
            "latencies_s": [o.seconds for o in ok],
            "phases_s": {name: summarize([p[name] for p in split])
                         for name in ("prepare", "play", "server")} if split else None,
            "failures": [f"{o.user}: {o.error}" for o in outcomes if not o.ok]}


def site_overrides(kind: str, lean_venv: Path) -> dict:
    if kind == "podman":
        return {"spawner": {"backend": "podman"}}
    if kind == PARKED:
        return {"spawner": {"backend": "podman"}, "pods": {"park_minutes": 60}}
    lean = {"environments": [{"name": "lean", "display_name": "Server packages only",
                              "path": str(lean_venv), "default": True}]}
    if kind == "local, same packages":
        return lean
    if kind == "local, fresh":
        return {**lean, "spawner": {"fork_server": False}}
    return {}


async def measure(users: int, variants: tuple[str, ...], concurrencies: tuple[int, ...]) -> dict:
    from tests.support.venvs import make_server_venv

    hubs: dict[str, BenchHub] = {}
    clients: dict[str, HubClient] = {}
    names = [f"pod-{i:03d}" for i in range(max(users, *concurrencies))]
    venv_folder = open_folder("pods-venv")
    try:
        lean = venv_folder / "lean"
        if {"local, same packages", "local, fresh"} & set(variants):
            report.progress("making a venv with the pod image's server packages (uv)")
            await asyncio.to_thread(make_server_venv, lean)
            # pip (in the image) writes bytecode, uv does not; the servers' accounts cannot
            # write it into a root-owned venv, so without this every start would compile.
            await asyncio.to_thread(subprocess.run, [str(lean / "bin" / "python"), "-m",
                                    "compileall", "-q", str(lean)], capture_output=True)
        for kind in variants:
            report.progress(f"starting KioskHub: {kind}")
            hubs[kind] = start_kioskhub("pods", **site_overrides(kind, lean))
            clients[kind] = await admin_client(hubs[kind].url, ADMIN, ADMIN_PASSWORD)
            await create_users(clients[kind], names)
            if kind == PARKED:
                report.progress(f"parking a pod for each of {len(names)} users")
                await park_ahead(clients[kind], names, hubs[kind].folder / "state")
        pids = {kind: hub.pid for kind, hub in hubs.items()}
        return {f"C={c}": await (rounds(clients, pids, users, hubs, len(names)) if c == 1
                                 else burst(clients, pids, c, hubs, len(names)))
                for c in concurrencies}
    finally:
        for client in clients.values():
            await client.close()
        for kind, hub in hubs.items():
            report.progress(f"stopping the hub: {kind}")
            with contextlib.suppress(Exception):
                hub.stop()
            if kind.startswith("podman"):
                remove_home_volumes(hub.folder / "state")
            hub.remove()
        shutil.rmtree(venv_folder, ignore_errors=True)


def remove_home_volumes(state_dir: Path) -> None:
    """Remove the pods left (parked ones) and the home volumes that this run's podman hub
    made (homes outlive pods)."""
    from kioskhub.spawner.podman_cli import podman_command, podman_env
    from kioskhub.spawner.podman_plan import hub_tag

    pods = subprocess.run(podman_command("pod", "ps", "--format", "{{.Name}}", "--filter",
                                         f"label=kioskhub/hub={hub_tag(state_dir)}"),
                          env=podman_env(), capture_output=True, text=True, timeout=60)
    for pod in pods.stdout.split():
        subprocess.run(podman_command("pod", "rm", "--force", "--time", "0", pod),
                       env=podman_env(), capture_output=True, timeout=120)

    listing = subprocess.run(podman_command("volume", "ls", "--format", "{{.Name}}"),
                             env=podman_env(), capture_output=True, text=True, timeout=60)
    mine = [n for n in listing.stdout.split() if n.startswith(f"kh-{hub_tag(state_dir)}-")]
    if mine:
        subprocess.run(podman_command("volume", "rm", *mine), env=podman_env(),
                       capture_output=True, timeout=120)


def plot(results: dict, breakdown: dict, cond: dict) -> None:
    figure, axes = report.new_figure(2, width=10, height=4.5)
    ax = axes[0]
    labels, series = [], []
    for level, by_kind in results.items():
        for kind, found in by_kind.items():
            labels.append(f"{kind.replace(', ', chr(10))}\n{level}")
            series.append(found["latencies_s"] or [0])
    ax.boxplot(series, tick_labels=labels)
    for i, values in enumerate(series, start=1):
        ax.plot([i] * len(values), values, "o", alpha=0.5)
    ax.set_ylabel("seconds to ready (through the hub)")
    ax.set_ylim(bottom=0)
    ax.set_title("podman pod vs local process", fontsize=9)
    ax.tick_params(axis="x", labelsize=7)
    ax = axes[1]
    levels = [k for k in breakdown if k.startswith("C=")]
    parts = (("play", "kube play of a trivial pod"), ("imports", "server imports in a pod"),
             ("add", "a container into an existing pod"),
             ("fresh_server", "jupyter server in a pod, fresh"),
             ("parked_server", "jupyter server in a pod, parked (imported ahead)"))
    width = 0.8 / len(parts)
    for j, (step, label) in enumerate(parts):
        values = [breakdown[level][f"{step}_s"]["p50"] or 0 for level in levels]
        ax.bar([i + (j - (len(parts) - 1) / 2) * width for i in range(len(levels))], values,
               width, label=label)
    ax.set_xticks(range(len(levels)), levels)
    ax.set_ylabel("seconds, p50 (podman directly)")
    ax.set_title("where a pod's start goes", fontsize=9)
    ax.legend(fontsize=7)
    figure.text(0.01, 0.005, report.caption(cond), fontsize=6, wrap=True)
    report.save_figure(NAME, figure)


def print_results(results: dict, breakdown: dict, cond: dict) -> float | None:
    """The tables; returns podman's p50 over the local same-packages p50 at C=1."""
    print()
    print(report.conditions_line(cond))
    rows = [[kind, level, r["latency_s"]["count"], r["latency_s"]["p50"], r["latency_s"]["p95"],
             r["latency_s"]["max"], len(r["failures"]), r["hub_subprocess_cpu_s_per_start"]]
            for level, by_kind in results.items() for kind, r in by_kind.items()]
    report.print_table(["backend", "C", "runs", "p50 s", "p95 s", "max s", "fail",
                        "hub's subprocess CPU-s per start"], rows,
                       title="Pods: time to ready through the hub")
    rows = [[level, phase, values["p50"], values["max"]]
            for level, by_kind in results.items()
            for phase, values in (by_kind.get("podman", {}).get("phases_s") or {}).items()]
    report.print_table(["C", "phase", "p50 s", "max s"], rows,
                       title="podman through the hub: request → 'Starting pod' (image, home) "
                             "→ kube play → server answers")
    levels = [k for k in breakdown if k.startswith("C=")]
    rows = [[level, step, breakdown[level][f"{step}_s"]["p50"],
             breakdown[level][f"{step}_s"]["max"]]
            for level in levels for step in STEPS]
    rows += [[level, what, breakdown[level][what]["p50"], breakdown[level][what]["max"]]
             for level in levels for what in ("idle_pod_mib", "imported_rss_mib")]
    report.print_table(["C", "step", "p50", "max"], rows,
                       title="podman directly: seconds per step (MiB for memory)")
    checkpoint = breakdown["checkpoint"]
    print(f"checkpoint/restore (CRIU): {'works' if checkpoint['works'] else 'fails'}: "
          f"{checkpoint['criu_says']}")
    factor = ratio(results.get("C=1", {}).get("podman", {}).get("latency_s", {}).get("p50"),
                   results.get("C=1", {}).get("local, same packages", {})
                   .get("latency_s", {}).get("p50"))
    if factor is not None:
        print(f"a podman pod takes ×{factor:.2f} the time of a local process with the same "
              "packages (p50, C=1)")
    return factor


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", "-n", type=int, default=3, help="servers per variant at C=1 (3)")
    p.add_argument("--concurrency", "-c", type=int, nargs="+", default=[1, 5],
                   help="servers started at once (1 5); above 1, one batch of that many")
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS[:3]),
                   help="what to start (podman, and the local backend with the same packages "
                        "forked and fresh)")
    args = p.parse_args(argv)
    cond = report.conditions(N=args.users, C=args.concurrency, variants=list(args.variants),
                             podman=shutil.which("podman"))
    missing = missing_piece()
    if missing:
        print(f"Pods: not measured: {missing}", flush=True)
        report.write_json(NAME, {"benchmark": NAME, "conditions": cond, "measured": False,
                                 "reason": missing})
        return 0
    print(report.conditions_line(cond), flush=True)
    results = asyncio.run(measure(args.users, tuple(args.variants), tuple(args.concurrency)))
    report.progress("podman directly: trivial pods, imports, a container into an existing pod")
    breakdown = asyncio.run(direct_breakdown(args.users, tuple(args.concurrency)))
    factor = print_results(results, breakdown, cond)
    report.write_json(NAME, {"benchmark": NAME, "conditions": cond, "measured": True,
                             "results": results, "breakdown": breakdown,
                             "podman_over_local_p50": factor})
    plot(results, breakdown, cond)
    return 0


async def direct_breakdown(users: int, concurrencies: tuple[int, ...]) -> dict:
    from kioskhub.spawner.pod_image import BaseImageRecipe

    data = open_folder("pods-data")
    try:
        return await pod_breakdown.measure(BaseImageRecipe().image_ref, users, concurrencies,
                                           data)
    finally:
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())

"""Pods: time to ready of a podman pod against a local process, both started by KioskHub.

KioskHubs run side by side, one per variant:

- ``podman``: ``spawner.backend: podman`` (the Pod manifest run by ``podman kube play``) from
  the site base image, which holds jupyterhub, jupyterlab and ipykernel at the hub's versions;
- ``local, same packages``: the local backend with a venv of exactly those packages (made
  here with uv, bytecode compiled as pip does in the image), so that the server software is
  the same as in the pod;
- ``local, own env``: the local backend with KioskHub's own environment (more server
  extensions: dask-labextension, jupyter-server-proxy, ...), as in ``spawn_latency``.

Each starts N servers one at a time (the order rotates), timed as in ``spawn_latency``: from
the API request until the progress stream says ready and ``/api/status`` answers 200.

It needs the podman backend (``spawner/podman.py``), podman, and the site base image in
podman's storage (``kioskhub image build-base``, a few minutes, so never built here);
without them it says what is missing and stores that as JSON.

    .venv/bin/python -m benchmarks.pods --users 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import subprocess
from pathlib import Path

from . import report
from .hub_client import HubClient, admin_client
from .hubs import ADMIN, ADMIN_PASSWORD, BenchHub, open_folder, start_kioskhub
from .spawn_latency import create_users, stop_all
from .stats import ratio, summarize

NAME = "pods"
SPAWNER = Path(__file__).resolve().parents[1] / "spawner"
VARIANTS = ("podman", "local, same packages", "local, own env")


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


async def rounds(clients: dict[str, HubClient], users: int) -> dict:
    times: dict[str, list[float]] = {kind: [] for kind in clients}
    failures: dict[str, list[str]] = {kind: [] for kind in clients}
    kinds = list(clients)
    for i in range(users):
        shift = i % len(kinds)
        for kind in kinds[shift:] + kinds[:shift]:
            name = f"pod-{i:03d}"
            outcome = await clients[kind].spawn(name)
            if outcome.ok:
                times[kind].append(outcome.seconds)
                report.progress(f"  {kind:22s} {i + 1}/{users} {name}: ready in "
                                f"{outcome.seconds:.2f} s")
            else:
                failures[kind].append(f"{name}: {outcome.error}")
                report.progress(f"  {kind:22s} {i + 1}/{users} {name}: FAILED {outcome.error}")
            await stop_all(clients[kind], [name], 1)
    return {kind: {"latency_s": summarize(times[kind]), "latencies_s": times[kind],
                   "failures": failures[kind]} for kind in clients}


def site_overrides(kind: str, lean_venv: Path) -> dict:
    if kind == "podman":
        return {"spawner": {"backend": "podman"}}
    if kind == "local, same packages":
        return {"environments": [{"name": "lean", "display_name": "Server packages only",
                                  "path": str(lean_venv), "default": True}]}
    return {}


async def measure(users: int, variants: tuple[str, ...]) -> dict:
    from tests.support.venvs import make_server_venv

    hubs: dict[str, BenchHub] = {}
    clients: dict[str, HubClient] = {}
    names = [f"pod-{i:03d}" for i in range(users)]
    venv_folder = open_folder("pods-venv")
    try:
        lean = venv_folder / "lean"
        if "local, same packages" in variants:
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
        return await rounds(clients, users)
    finally:
        for client in clients.values():
            await client.close()
        for kind, hub in hubs.items():
            report.progress(f"stopping the hub: {kind}")
            with contextlib.suppress(Exception):
                hub.stop()
            if kind == "podman":
                remove_home_volumes(hub.folder / "state")
            hub.remove()
        shutil.rmtree(venv_folder, ignore_errors=True)


def remove_home_volumes(state_dir: Path) -> None:
    """Remove the home volumes that this run's podman hub made (homes outlive pods)."""
    from kioskhub.spawner.podman_cli import podman_command, podman_env
    from kioskhub.spawner.podman_plan import hub_tag

    listing = subprocess.run(podman_command("volume", "ls", "--format", "{{.Name}}"),
                             env=podman_env(), capture_output=True, text=True, timeout=60)
    mine = [n for n in listing.stdout.split() if n.startswith(f"kh-{hub_tag(state_dir)}-")]
    if mine:
        subprocess.run(podman_command("volume", "rm", *mine), env=podman_env(),
                       capture_output=True, timeout=120)


def plot(results: dict, cond: dict) -> None:
    figure, axes = report.new_figure(1, width=5, height=4)
    ax = axes[0]
    kinds = list(results)
    ax.boxplot([results[k]["latencies_s"] or [0] for k in kinds],
               tick_labels=[k.replace(", ", "\n") for k in kinds])
    for i, kind in enumerate(kinds, start=1):
        values = results[kind]["latencies_s"]
        ax.plot([i] * len(values), values, "o", alpha=0.5)
    ax.set_ylabel("seconds to ready")
    ax.set_ylim(bottom=0)
    ax.set_title("KioskHub: podman pod vs local process")
    figure.text(0.01, 0.005, report.caption(cond), fontsize=6, wrap=True)
    report.save_figure(NAME, figure)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", "-n", type=int, default=3, help="servers per variant (3)")
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS[:2]),
                   help="what to start (podman and the local backend with the same packages)")
    args = p.parse_args(argv)
    cond = report.conditions(N=args.users, C=1, variants=list(args.variants),
                             podman=shutil.which("podman"))
    missing = missing_piece()
    if missing:
        print(f"Pods: not measured: {missing}", flush=True)
        report.write_json(NAME, {"benchmark": NAME, "conditions": cond, "measured": False,
                                 "reason": missing})
        return 0
    print(report.conditions_line(cond), flush=True)
    results = asyncio.run(measure(args.users, tuple(args.variants)))
    print()
    print(report.conditions_line(cond))
    rows = [[kind, r["latency_s"]["count"], r["latency_s"]["p50"], r["latency_s"]["p95"],
             r["latency_s"]["max"], len(r["failures"])] for kind, r in results.items()]
    report.print_table(["backend", "runs", "p50 s", "p95 s", "max s", "fail"], rows,
                       title="Pods: time to ready, C=1")
    factor = ratio(results.get("podman", {}).get("latency_s", {}).get("p50"),
                   results.get("local, same packages", {}).get("latency_s", {}).get("p50"))
    if factor is not None:
        print(f"a podman pod takes ×{factor:.2f} the time of a local process with the same "
              "packages (p50)")
    report.write_json(NAME, {"benchmark": NAME, "conditions": cond, "measured": True,
                             "results": results, "podman_over_local_p50": factor})
    plot(results, cond)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

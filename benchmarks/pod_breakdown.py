"""Where a podman pod's start goes: podman's own work against the server's Python inside.

Measured with podman directly (no hub), on the site base image, with pods shaped like a
server's (slirp4netns with the host's loopback, a port published on 127.0.0.1, CPU and
memory limits, a non-root account with no capabilities, a read-only host folder):

- ``play``: ``podman kube play`` of a pod whose command is trivial (``sleep``): the infra
  container, the network, the mounts, the account and the cgroup; everything podman does
  for a start, and nothing of the server;
- ``imports``: ``podman exec`` of Python importing what ``jupyterhub-singleuser`` imports
  (the server, JupyterLab, KioskHub's extensions) in such a pod; ``exec`` is the cost of
  ``podman exec true``, so that imports minus exec is the interpreter's own time;
- ``add``: ``podman run --pod`` of a trivial container into a pod that already exists:
  what a start would still pay to podman if the pod (infra, network, port) were made ahead;
- ``remove``: ``podman pod rm`` of the pod;
- the memory an idle pod holds (its cgroup, infra and sleeping container) and the largest
  resident size of a Python that has imported the server (what a pod kept warm with the
  server imported would hold while nobody uses it);
- checkpoint/restore: whether ``podman container checkpoint`` (CRIU) works on this machine,
  with podman's own words when it does not.

Each step runs C pods at once (C=1 repeated N times, then one batch of C).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import time
from pathlib import Path

import yaml

from kioskhub.spawner.cgroup_layout import current_usage_dirs
from kioskhub.spawner.pod_image import SERVER_EXTENSIONS
from kioskhub.spawner.podman_cli import run_podman
from kioskhub.spawner.podman_plan import POD_NETWORK

from . import report
from .stats import summarize

PREFIX = "kh-bench-breakdown"
SERVER_IMPORTS = ("jupyterhub.singleuser", "jupyterlab", "jupyter_server.serverapp",
                  *SERVER_EXTENSIONS)
IMPORT_CODE = ("import importlib, resource\n"
               f"for name in {list(SERVER_IMPORTS)!r}:\n"
               "    importlib.import_module(name)\n"
               "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n")
STEPS = ("play", "exec", "imports", "add", "remove")


def trivial_pod(name: str, image: str, port: int, data: Path) -> dict:
    """A pod shaped like a server's, whose container only sleeps."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"kioskhub/bench": "breakdown"}},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {"runAsUser": 1000, "runAsGroup": 100, "runAsNonRoot": True},
            "volumes": [{"name": "data", "hostPath": {"path": str(data), "type": "Directory"}}],
            "containers": [{
                "name": "notebook",
                "image": image,
                "command": ["sleep", "infinity"],
                "ports": [{"containerPort": 8888, "hostIP": "127.0.0.1", "hostPort": port}],
                "resources": {"limits": {"cpu": "1", "memory": "1Gi"},
                              "requests": {"cpu": "1", "memory": "1Gi"}},
                "securityContext": {"allowPrivilegeEscalation": False,
                                    "capabilities": {"drop": ["ALL"]}},
                "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": True}],
            }],
        },
    }


async def timed(*args: str, stdin: bytes | None = None) -> tuple[float, str]:
    began = time.perf_counter()
    result = await run_podman(*args, stdin=stdin)
    return time.perf_counter() - began, result.stdout


async def one_pod(index: int, image: str, data: Path, port: int) -> dict:
    """Every step once, on a pod of its own; seconds per step and the memory figures."""
    name = f"{PREFIX}-{index}"
    pod = yaml.safe_dump(trivial_pod(name, image, port, data)).encode()
    container = f"{name}-notebook"
    out: dict = {}
    try:
        out["play"], _ = await timed("kube", "play", "--network", POD_NETWORK, "-", stdin=pod)
        out["idle_pod_mib"] = await pod_memory_mib(name)
        out["exec"], _ = await timed("exec", container, "true")
        out["imports"], printed = await timed("exec", container, "python", "-c", IMPORT_CODE)
        out["imported_rss_mib"] = int(printed.split()[-1]) / 1024
        out["add"], _ = await timed("run", "-d", "--pod", name, "--user", "1000:100",
                                    "--cap-drop", "all", "--name", f"{name}-added", image,
                                    "sleep", "infinity")
    finally:
        began = time.perf_counter()
        await run_podman("pod", "rm", "--force", "--ignore", "--time", "0", name, check=False)
        out["remove"] = time.perf_counter() - began
    return out


async def pod_memory_mib(pod: str) -> float | None:
    """The pod's cgroup memory (infra, container, conmon), from podman's record of it."""
    found = await run_podman("pod", "inspect", "--format", "{{.CgroupPath}}", pod, check=False)
    with contextlib.suppress(OSError, ValueError):
        for folder in current_usage_dirs(found.stdout.strip()):
            for file in ("memory.current", "memory.usage_in_bytes"):
                path = Path(folder) / file
                if path.exists():
                    return int(path.read_text()) / 2**20
    return None


async def batch(concurrency: int, image: str, data: Path, first: int) -> list[dict]:
    return list(await asyncio.gather(*(
        one_pod(first + i, image, data, 47100 + first + i) for i in range(concurrency))))


async def checkpoint_check(image: str) -> dict:
    """Whether podman can checkpoint a running container here (CRIU), in podman's words."""
    name = f"{PREFIX}-checkpoint"
    await run_podman("run", "-d", "--name", name, image, "sleep", "infinity")
    try:
        result = await run_podman("container", "checkpoint", "--export", "/dev/null", name,
                                  check=False)
        words = (result.stderr or result.stdout).strip().splitlines()
        return {"works": result.returncode == 0, "podman_says": words[-1] if words else "",
                "criu_says": criu_check()}
    finally:
        await run_podman("rm", "--force", "--time", "0", name, check=False)


def criu_check() -> str:
    """The last line of ``criu check`` (the reason podman's checkpoint fails), if installed."""
    if shutil.which("criu") is None:
        return "criu is not installed (apt-get install criu)"
    found = subprocess.run(["criu", "check"], capture_output=True, text=True, timeout=60)
    lines = (found.stderr + found.stdout).strip().splitlines()
    return "\n".join(lines[-3:])


async def measure(image: str, users: int, concurrencies: tuple[int, ...], data: Path) -> dict:
    results: dict = {}
    for concurrency in concurrencies:
        runs: list[dict] = []
        batches = users if concurrency == 1 else 1
        for b in range(batches):
            runs += await batch(concurrency, image, data, b * concurrency)
            report.progress(f"  breakdown C={concurrency}: {len(runs)} pods, last play "
                            f"{runs[-1]['play']:.2f} s, imports {runs[-1]['imports']:.2f} s")
        results[f"C={concurrency}"] = {
            **{f"{step}_s": summarize([r[step] for r in runs]) for step in STEPS},
            "idle_pod_mib": summarize([r["idle_pod_mib"] for r in runs
                                       if r["idle_pod_mib"] is not None]),
            "imported_rss_mib": summarize([r["imported_rss_mib"] for r in runs]),
        }
    results["checkpoint"] = await checkpoint_check(image)
    return results

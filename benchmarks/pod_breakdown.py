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
- ``fresh_server``: ``jupyter server`` started in such a pod by ``podman exec`` until it
  answers (a fresh Python, as every pod start is now);
- ``parked_server``: the same server from a Python in the pod that has imported it ahead and
  waits for its token on stdin: from handing over the token until it answers (what a pod
  made ahead for its user, with the server imported, would take to start);
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
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import aiohttp
import yaml

from kioskhub.spawner.cgroup_layout import current_usage_dirs
from kioskhub.spawner.pod_image import SERVER_EXTENSIONS
from kioskhub.spawner.podman_cli import podman_command, podman_env, podman_workdir, run_podman
from kioskhub.spawner.podman_plan import POD_NETWORK

from . import report
from .stats import summarize

PREFIX = "kh-bench-breakdown"
TOKEN = secrets.token_hex(16)
SERVER_IMPORTS = ("jupyterhub.singleuser", "jupyterlab", "jupyter_server.serverapp",
                  *SERVER_EXTENSIONS)
IMPORT_CODE = ("import importlib, resource\n"
               f"for name in {list(SERVER_IMPORTS)!r}:\n"
               "    importlib.import_module(name)\n"
               "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n")
SERVER_ARGS = ("--ip=0.0.0.0", "--ServerApp.root_dir=/tmp", "--ServerApp.open_browser=False")
PARKED_CODE = ("import importlib, sys\n"
               f"for name in {list(SERVER_IMPORTS)!r}:\n"
               "    importlib.import_module(name)\n"
               "print('parked', flush=True)\n"
               "token = sys.stdin.readline().strip()\n"
               "from jupyter_server.serverapp import ServerApp\n"
               "ServerApp.launch_instance(argv=[*sys.argv[1:], '--port=8889',\n"
               "                                f'--IdentityProvider.token={token}'])\n")
PARKED_PORT_OFFSET = 1000
STEPS = ("play", "exec", "imports", "add", "fresh_server", "parked_server", "remove")


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
                "ports": [{"containerPort": 8888, "hostIP": "127.0.0.1", "hostPort": port},
                          {"containerPort": 8889, "hostIP": "127.0.0.1",
                           "hostPort": port + PARKED_PORT_OFFSET}],
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
    parked = None
    try:
        out["play"], _ = await timed("kube", "play", "--network", POD_NETWORK, "-", stdin=pod)
        out["idle_pod_mib"] = await pod_memory_mib(name)
        out["exec"], _ = await timed("exec", container, "true")
        out["imports"], printed = await timed("exec", container, "python", "-c", IMPORT_CODE)
        out["imported_rss_mib"] = int(printed.split()[-1]) / 1024
        out["add"], _ = await timed("run", "-d", "--pod", name, "--user", "1000:100",
                                    "--cap-drop", "all", "--name", f"{name}-added", image,
                                    "sleep", "infinity")
        out["fresh_server"] = await fresh_server(container, port)
        parked = await park(container)
        out["parked_server"] = await unpark(parked, port + PARKED_PORT_OFFSET)
    finally:
        began = time.perf_counter()
        await run_podman("pod", "rm", "--force", "--ignore", "--time", "0", name, check=False)
        out["remove"] = time.perf_counter() - began
        if parked is not None:
            await parked.wait()
    return out


async def fresh_server(container: str, port: int) -> float:
    """Seconds from ``podman exec`` of ``jupyter server`` (a fresh Python) until it answers."""
    began = time.perf_counter()
    await run_podman("exec", "-d", container, "jupyter", "server", "--port=8888",
                     f"--IdentityProvider.token={TOKEN}", *SERVER_ARGS)
    await answers(port)
    return time.perf_counter() - began


async def park(container: str) -> asyncio.subprocess.Process:
    """A Python in the pod that has imported the server and waits for its token."""
    process = await asyncio.create_subprocess_exec(
        *podman_command("exec", "-i", container, "python", "-c", PARKED_CODE, *SERVER_ARGS),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL, env=podman_env(), cwd=podman_workdir())
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 300)
    if line.strip() != b"parked":
        raise RuntimeError(f"the parked Python said {line!r}")
    return process


async def unpark(process: asyncio.subprocess.Process, port: int) -> float:
    """Seconds from handing the parked Python its token until its server answers."""
    assert process.stdin is not None
    began = time.perf_counter()
    process.stdin.write(f"{TOKEN}\n".encode())
    await process.stdin.drain()
    await answers(port)
    return time.perf_counter() - began


async def answers(port: int, timeout: float = 300) -> None:
    """Until ``/api/status`` answers 200 on the host's loopback ``port``."""
    url = f"http://127.0.0.1:{port}/api/status?token={TOKEN}"
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(url) as reply:
                    if reply.status == 200:
                        return
            await asyncio.sleep(0.05)
    raise TimeoutError(f"no server answered on 127.0.0.1:{port} in {timeout:.0f} s")


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

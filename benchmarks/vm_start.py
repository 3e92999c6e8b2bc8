"""VM start: a server in a qemu VM against the same server in a podman pod, same machine.

Both sides start ``jupyterhub-singleuser`` at the hub's versions for one user of a real
(plain) JupyterHub, which authenticates every request to the server:

- ``vm``: the OpenStack simulation's compute (``tests/openstack_sim/qemu.py``) boots the
  KioskHub VM image (built once, a few minutes, and cached where the tests keep it) on a
  qcow2 overlay, with user-data that writes the server's environment to a 0600 file and
  starts the server as ``jovyan``, as the OpenStack backend's cloud-init does. KVM when it
  works on this machine, software emulation (TCG) otherwise: the conditions say which.
- ``pod``: a podman pod (infra container + the site base image, ``kioskhub image
  build-base``) on slirp4netns, the network of KioskHub's pods, with the same environment.

Each is timed from the request (``QemuMachine.start()``; ``podman pod create``) to the
server's ``/api/status`` answering 200 with the user's token, then to a kernel started
through the server that executes ``print(6 * 7)``. The Nova API of the simulation is not
in the VM figure: it is the runner's own time, which a real cloud's scheduler replaces.

    .venv/bin/python -m benchmarks.vm_start --rounds 1
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import secrets
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import yaml

from . import report
from .hub_client import HubClient, admin_client
from .hubs import ADMIN, ADMIN_PASSWORD, start_plain_jupyterhub
from .stats import ratio, summarize

NAME = "vm_start"
SIDES = ("vm", "pod")
USER = "bench"
PORT = 8888
TIMEOUT = 600.0
REPO = Path(__file__).resolve().parents[1]
IMAGE_CACHE = REPO / ".pytest_cache" / "d" / "kioskhub-vm-images"
"""Where the tests' fixture keeps the VM image (pytest's cache), so both share one build."""
HOST_FROM_GUEST = "10.0.2.2"
"""The host's loopback as qemu's user network and slirp4netns both show it."""


def server_env(hub_url: str, token: str) -> dict[str, str]:
    """The environment JupyterHub gives a server of ``USER`` (pure)."""
    api = f"{hub_url}/hub/api"
    return {
        "JUPYTERHUB_API_TOKEN": token,
        "JUPYTERHUB_API_URL": api,
        "JUPYTERHUB_ACTIVITY_URL": f"{api}/users/{USER}/activity",
        "JUPYTERHUB_BASE_URL": "/",
        "JUPYTERHUB_CLIENT_ID": f"jupyterhub-user-{USER}",
        "JUPYTERHUB_HOST": "",
        "JUPYTERHUB_OAUTH_CALLBACK_URL": f"/user/{USER}/oauth_callback",
        "JUPYTERHUB_OAUTH_ACCESS_SCOPES": json.dumps(
            [f"access:servers!server={USER}/", f"access:servers!user={USER}"]),
        "JUPYTERHUB_OAUTH_SCOPES": json.dumps(
            [f"access:servers!server={USER}/", f"access:servers!user={USER}"]),
        "JUPYTERHUB_SERVER_NAME": "",
        "JUPYTERHUB_SERVICE_PREFIX": f"/user/{USER}/",
        "JUPYTERHUB_SERVICE_URL": f"http://0.0.0.0:{PORT}/user/{USER}/",
        "JUPYTERHUB_USER": USER,
    }


def server_user_data(env: dict[str, str]) -> str:
    """cloud-init user-data: the environment in a 0600 file, the server started as jovyan."""
    environment = "".join(f"{name}={shlex.quote(value)}\n" for name, value in sorted(env.items()))
    start = (
        "#!/bin/sh\nset -a\n. /etc/kioskhub/server.env\nset +a\ncd /home/jovyan\n"
        f"exec /opt/kioskhub/bin/jupyterhub-singleuser --ip=0.0.0.0 --port={PORT}\n"
    )
    document = {
        "write_files": [
            {"path": "/etc/kioskhub/server.env", "permissions": "0600",
             "owner": "jovyan:users", "content": environment},
            {"path": "/usr/local/bin/kioskhub-start-server", "permissions": "0755",
             "content": start},
        ],
        "runcmd": [["sh", "-c", "setsid runuser -u jovyan -- /usr/local/bin/kioskhub-start-server"
                    " > /var/log/kioskhub-server.log 2>&1 &"]],
    }
    return "#cloud-config\n" + yaml.safe_dump(document, sort_keys=False)


def free_port(address: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((address, 0))
        return probe.getsockname()[1]


def free_loopback_address() -> str:
    for _ in range(50):
        address = f"127.0.0.{random.randint(10, 250)}"
        with socket.socket() as probe:
            try:
                probe.bind((address, PORT))
            except OSError:
                continue
        return address
    raise RuntimeError(f"no 127.0.0.x address has port {PORT} free")


async def until_kernel_answers(server_url: str, token: str, began: float) -> dict[str, float]:
    """Seconds from ``began`` to /api/status answering and to a kernel's ``42``."""
    client = HubClient(server_url)
    client.token = token
    try:
        await client.wait_server_status(USER, time.monotonic() + TIMEOUT)
        ready = time.perf_counter() - began
        kernel = await client.start_kernel(USER)
        output = await client.execute(USER, kernel, "print(6 * 7)")
        if output.strip() != "42":
            raise RuntimeError(f"the kernel printed {output!r}, not 42")
        return {"ready_s": ready, "kernel_s": time.perf_counter() - began}
    finally:
        await client.close()


async def start_in_vm(image: Path, hub_url: str, token: str, workdir: Path) -> dict:
    from tests.openstack_sim.qemu import QemuMachine, VmRequest

    address = free_loopback_address()
    request = VmRequest(
        name=f"bench-{secrets.token_hex(3)}", image_path=image,
        user_data=server_user_data(server_env(hub_url.replace("127.0.0.1", HOST_FROM_GUEST),
                                              token)),
        meta_data={}, cpus=1, memory_mb=1536, volumes=[], address=address,
        forward_ports=[PORT], workdir=workdir,
    )
    machine = QemuMachine(request)
    began = time.perf_counter()
    await machine.start()
    try:
        times = await until_kernel_answers(f"http://{address}:{PORT}", token, began)
        times["accelerator"] = machine.accelerator
        return times
    except Exception as error:
        tail = "\n".join(machine.console_log().splitlines()[-20:])
        raise RuntimeError(f"{error}\nconsole:\n{tail}") from error
    finally:
        await machine.stop()


async def start_in_pod(image: str, hub_url: str, token: str) -> dict:
    from kioskhub.spawner.podman_cli import podman_command, podman_env

    name = f"kh-bench-vmstart-{secrets.token_hex(3)}"
    port = free_port()
    env = server_env(hub_url.replace("127.0.0.1", HOST_FROM_GUEST), token)

    async def podman(*args: str) -> None:
        process = await asyncio.create_subprocess_exec(
            *podman_command(*args), env=podman_env(), stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT)
        output, _ = await process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"podman {args[0]} {args[1]} failed: {output.decode()[-500:]}")

    began = time.perf_counter()
    try:
        await podman("pod", "create", "--name", name,
                     "--network", "slirp4netns:allow_host_loopback=true",
                     "--publish", f"127.0.0.1:{port}:{PORT}")
        env_args = [arg for key, value in env.items() for arg in ("--env", f"{key}={value}")]
        await podman("run", "--detach", "--pod", name, *env_args, image,
                     "jupyterhub-singleuser", "--ip=0.0.0.0", f"--port={PORT}")
        return await until_kernel_answers(f"http://127.0.0.1:{port}", token, began)
    finally:
        await podman("pod", "rm", "--force", "--time", "5", name)


def pod_image() -> tuple[str | None, str | None]:
    """The site base image's reference, or why pods cannot be measured."""
    if shutil.which("podman") is None:
        return None, "podman is not installed (apt-get install podman runc)"
    from kioskhub.spawner.pod_image import BaseImageRecipe
    from kioskhub.spawner.podman_cli import podman_command, podman_env

    image = BaseImageRecipe().image_ref
    found = subprocess.run(podman_command("image", "exists", image), env=podman_env(),
                           capture_output=True, timeout=60)
    if found.returncode != 0:
        return None, (f"the site base image {image} is not in podman's storage; build it once "
                      "with `.venv/bin/kioskhub image build-base`")
    return image, None


async def measure(rounds: int, sides: tuple[str, ...], vm_image: Path | None,
                  pod: str | None) -> dict:
    hub = start_plain_jupyterhub("vmstart")
    admin = await admin_client(hub.url, ADMIN, ADMIN_PASSWORD)
    results = {side: {"ready": [], "kernel": [], "failures": [], "notes": {}} for side in sides}
    workdir = Path(tempfile.mkdtemp(prefix="kioskhub-bench-vm-", dir="/var/tmp"))
    try:
        status, body, _ = await admin.api("POST", f"/users/{USER}")
        if status not in (201, 409):
            raise RuntimeError(f"creating {USER} answered {status}: {body}")
        status, body, _ = await admin.api(
            "POST", f"/users/{USER}/tokens",
            json={"note": "vm_start", "expires_in": 7200,
                  "scopes": [f"access:servers!user={USER}", f"users:activity!user={USER}"]})
        if status != 201:
            raise RuntimeError(f"the token request answered {status}: {body}")
        token = body["token"]
        for i in range(rounds):
            order = sides if i % 2 == 0 else tuple(reversed(sides))
            for side in order:
                report.progress(f"round {i + 1}/{rounds}: {side}")
                try:
                    if side == "vm":
                        times = await start_in_vm(vm_image, hub.url, token, workdir / f"vm{i}")
                        results[side]["notes"]["accelerator"] = times.pop("accelerator")
                    else:
                        times = await start_in_pod(pod, hub.url, token)
                except Exception as error:
                    results[side]["failures"].append(str(error)[:2000])
                    report.progress(f"  {side}: FAILED {error}")
                    continue
                results[side]["ready"].append(times["ready_s"])
                results[side]["kernel"].append(times["kernel_s"])
                report.progress(f"  {side}: server answers after {times['ready_s']:.1f} s, "
                                f"a kernel prints 42 after {times['kernel_s']:.1f} s")
    finally:
        await admin.close()
        with contextlib.suppress(Exception):
            hub.stop()
        hub.remove()
        shutil.rmtree(workdir, ignore_errors=True)
    return {side: {"ready_s": summarize(r["ready"]), "kernel_s": summarize(r["kernel"]),
                   "ready_samples_s": r["ready"], "kernel_samples_s": r["kernel"],
                   "failures": r["failures"], **r["notes"]} for side, r in results.items()}


def plot(results: dict, cond: dict) -> None:
    figure, axes = report.new_figure(1, width=5, height=4)
    ax = axes[0]
    sides = list(results)
    width = 0.35
    for offset, (key, label) in enumerate((("ready_s", "server answers"),
                                           ("kernel_s", "kernel prints 42"))):
        values = [results[side][key].get("p50") or 0 for side in sides]
        ax.bar([i + offset * width for i in range(len(sides))], values, width, label=label)
    ax.set_xticks([i + width / 2 for i in range(len(sides))],
                  [f"{side} ({results[side].get('accelerator', 'podman')})" if side == "vm"
                   else side for side in sides])
    ax.set_ylabel("seconds from the request (p50)")
    ax.set_title("Server start: qemu VM vs podman pod")
    ax.legend()
    figure.text(0.01, 0.005, report.caption(cond), fontsize=6, wrap=True)
    report.save_figure(NAME, figure)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", "-n", type=int, default=1, help="starts per side (1)")
    p.add_argument("--sides", nargs="+", choices=SIDES, default=list(SIDES))
    args = p.parse_args(argv)
    from tests.openstack_sim.qemu import accelerator, missing_tools

    vm_image = None
    reasons = {}
    if "vm" in args.sides:
        missing = missing_tools()
        if missing:
            reasons["vm"] = f"install the Debian package(s) {' '.join(missing)}"
        else:
            from tests.openstack_sim.vm_image import build_vm_image

            vm_image = build_vm_image(IMAGE_CACHE, report=report.progress)
    pod = None
    if "pod" in args.sides:
        pod, why = pod_image()
        if why:
            reasons["pod"] = why
    sides = tuple(side for side in args.sides if side not in reasons)
    cond = report.conditions(rounds=args.rounds, sides=list(sides), not_measured=reasons,
                             accelerator=accelerator() if "vm" in sides else None,
                             vm_cpus=1, vm_memory_mb=1536)
    for side, why in reasons.items():
        print(f"VM start: {side} not measured: {why}", flush=True)
    if not sides:
        report.write_json(NAME, {"benchmark": NAME, "conditions": cond, "measured": False})
        return 0
    print(report.conditions_line(cond), flush=True)
    results = asyncio.run(measure(args.rounds, sides, vm_image, pod))
    print()
    print(report.conditions_line(cond))
    rows = [[side, r["ready_s"]["count"], r["ready_s"]["p50"], r["ready_s"]["max"],
             r["kernel_s"]["p50"], r["kernel_s"]["max"], len(r["failures"])]
            for side, r in results.items()]
    report.print_table(["side", "runs", "answers p50 s", "answers max s", "kernel p50 s",
                        "kernel max s", "fail"], rows,
                       title="VM start: request → server answers → kernel prints 42")
    factor = ratio(results.get("vm", {}).get("kernel_s", {}).get("p50"),
                   results.get("pod", {}).get("kernel_s", {}).get("p50"))
    if factor is not None:
        print(f"a VM takes ×{factor:.1f} the time of a pod to a kernel's answer (p50)")
    report.write_json(NAME, {"benchmark": NAME, "conditions": cond, "measured": True,
                             "results": results, "vm_over_pod_kernel_p50": factor})
    plot(results, cond)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

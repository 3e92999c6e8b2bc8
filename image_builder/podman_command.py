"""Running podman from the image builder: always with the project's own ``containers.conf``.

The same rule as the spawner's podman commands (which the image builder may not import):
``CONTAINERS_CONF`` points at ``spawner/containers.conf`` (cgroupfs, runc, no default
ulimits), nothing under /etc is edited, and root's podman runs in a folder of root's own.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from .builder_base import BuildFailed

CONTAINERS_CONF = Path(__file__).resolve().parents[1] / "spawner" / "containers.conf"
ROOT_WORKDIR = Path("/run/kioskhub/podman")


def find_podman() -> str:
    """The podman executable, or BuildFailed saying how to install it."""
    found = shutil.which("podman")
    if not found:
        raise BuildFailed(
            "podman is not installed on this machine; install the Debian packages podman "
            "and runc (apt-get install podman runc)"
        )
    return found


def podman_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with the project's CONTAINERS_CONF."""
    env = dict(os.environ if base is None else base)
    env["CONTAINERS_CONF"] = str(CONTAINERS_CONF)
    return env


def podman_workdir() -> Path:
    """Where podman runs: root's own folder under /run, else the account's home."""
    if os.geteuid() != 0:
        return Path.home()
    ROOT_WORKDIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    return ROOT_WORKDIR


@dataclass(frozen=True)
class PodmanResult:
    returncode: int
    output: str


async def start_podman(*args: str) -> asyncio.subprocess.Process:
    """Start ``podman ARGS``; its stdout and stderr come together through ``stdout``."""
    return await asyncio.create_subprocess_exec(
        find_podman(),
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=podman_env(),
        cwd=podman_workdir(),
    )


async def run_podman(*args: str, timeout: float = 120) -> PodmanResult:
    """Run ``podman ARGS`` with its output captured (stdout and stderr together)."""
    process = await start_podman(*args)
    try:
        async with asyncio.timeout(timeout):
            out, _ = await process.communicate()
    except (TimeoutError, asyncio.CancelledError):
        process.kill()
        await process.wait()
        raise
    return PodmanResult(process.returncode, out.decode(errors="replace"))

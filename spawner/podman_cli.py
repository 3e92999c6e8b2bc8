"""Running podman: always with the project's own ``containers.conf``, never touching /etc.

Every podman command KioskHub runs goes through ``podman_command`` (argv and environment)
or ``run_podman`` (async, output captured), so ``CONTAINERS_CONF`` points at
``spawner/containers.conf`` (cgroupfs, runc, no default ulimits) wherever podman is run
from: the hub, the ``kioskhub image`` command, or the tests.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

CONTAINERS_CONF = Path(__file__).resolve().parent / "containers.conf"
ROOT_WORKDIR = Path("/run/kioskhub/podman")
"""Where podman runs as root: conmon writes files (``oom``) into its working folder, which
must not be wherever the hub happened to be started from, nor a folder users can write."""


class PodmanError(RuntimeError):
    """A podman command failed; the message names the command and podman's own words."""


class PodmanMissing(PodmanError):
    """podman is not installed on this machine."""


def find_podman() -> str:
    """The podman executable, or PodmanMissing saying how to install it."""
    found = shutil.which("podman")
    if not found:
        raise PodmanMissing(
            "podman is not installed on this machine; install the Debian packages podman "
            "and runc (apt-get install podman runc)"
        )
    return found


def podman_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for podman: ``base`` (default: ours) with the project's CONTAINERS_CONF."""
    env = dict(os.environ if base is None else base)
    env["CONTAINERS_CONF"] = str(CONTAINERS_CONF)
    return env


def podman_command(*args: str) -> list[str]:
    """The argv of ``podman ARGS``."""
    return [find_podman(), *args]


def podman_workdir() -> Path:
    """The working folder for podman: root's own under /run, else the account's home."""
    if os.geteuid() != 0:
        return Path.home()
    ROOT_WORKDIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    return ROOT_WORKDIR


@dataclass(frozen=True)
class PodmanResult:
    returncode: int
    stdout: str
    stderr: str


async def run_podman(
    *args: str,
    stdin: bytes | None = None,
    check: bool = True,
    env: dict[str, str] | None = None,
) -> PodmanResult:
    """Run ``podman ARGS``; with ``check``, a non-zero exit raises PodmanError. ``env`` adds
    to podman's environment (values that ``--env NAME`` passes on, kept out of the argv)."""
    process = await asyncio.create_subprocess_exec(
        *podman_command(*args),
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=podman_env({**os.environ, **(env or {})}),
        cwd=podman_workdir(),
    )
    out, err = await process.communicate(stdin)
    result = PodmanResult(
        process.returncode, out.decode(errors="replace"), err.decode(errors="replace")
    )
    if check and result.returncode != 0:
        raise PodmanError(
            f"`podman {' '.join(args[:3])}` failed (exit status {result.returncode}): "
            f"{result.stderr.strip() or result.stdout.strip()}"
        )
    return result


async def stream_podman(*args: str, on_line: Callable[[str], None]) -> PodmanResult:
    """Run ``podman ARGS``, handing each line of its output (stdout and stderr) to
    ``on_line`` as it comes; a non-zero exit raises PodmanError quoting the last lines."""
    process = await asyncio.create_subprocess_exec(
        *podman_command(*args),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=podman_env(),
        cwd=podman_workdir(),
    )
    assert process.stdout is not None
    lines = []
    async for raw in process.stdout:
        line = raw.decode(errors="replace").rstrip()
        if line:
            lines.append(line)
            on_line(line)
    returncode = await process.wait()
    output = "\n".join(lines)
    if returncode != 0:
        raise PodmanError(
            f"`podman {' '.join(args[:3])}` failed (exit status {returncode}): "
            + "\n".join(lines[-5:])
        )
    return PodmanResult(returncode, output, "")


def free_loopback_port() -> int:
    """A loopback port for a pod's published server port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]

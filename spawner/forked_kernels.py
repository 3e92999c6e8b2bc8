"""Kernels from a forked server's zygote (``kernel_zygote``): a KernelProvisioner.

Loaded into a forked server by ``fork_parent`` (by file path, as a private package), which
calls ``install`` with the zygote's control socket before the server starts. ``install``
makes ``ForkedKernelProvisioner`` jupyter_client's default provisioner for the server
(kernelspecs that name their own ``metadata.kernel_provisioner`` keep theirs).

The provisioner is jupyter_client's ``LocalProvisioner`` with one difference: a kernel
whose command is this environment's own ``python -m ipykernel_launcher -f FILE`` (with any
options of the kernel's own after it, which the kernel reads as a fresh one does), and whose
environment neither changes how python starts nor sets what the preloaded debugger read at
import, is forked from the zygote; anything else,
or a zygote that does not answer, starts as a fresh process, with a line in the server's
log. A forked kernel is a ``ForkedKernel``, which behaves as the ``Popen`` that
``LocalProvisioner`` drives (poll, wait, signals): the zygote reports its exit status. As
for a fresh kernel, ``LocalProvisioner`` signals the kernel's process group (the kernel
leads its own session); where that fails, ``ForkedKernel`` signals the kernel through a
pidfd, which never reaches a process that reused its pid.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import shlex
import signal
import socket
import sys
import time
from collections.abc import Mapping
from importlib.metadata import EntryPoint
from typing import Any

from jupyter_client.provisioning import LocalProvisioner
from jupyter_client.provisioning.factory import KernelProvisionerFactory

PROVISIONER_NAME = "kioskhub-forked-kernel"
START_TIMEOUT = 30
STARTUP_VARIABLES = ("PYTHON", "LD_", "GLIBC_TUNABLES", "MALLOC_")
"""Variables (by prefix) that change how python starts or what it loads: a kernel whose
environment sets them otherwise than its server starts fresh."""
DEBUGGER_VARIABLES = (
    "PYDEVD",
    "PYDEV_",
    "DEBUGPY",
    "DEBUG_PYDEVD",
    "IDE_PROJECT_ROOTS",
    "LIBRARY_ROOTS",
    "PATHS_FROM_ECLIPSE_TO_PYTHON",
)
"""Variables (by prefix) that ipykernel's debugger (debugpy's pydevd) reads when it is
imported, which the fork server's parent did without them: a kernel whose environment sets
one starts fresh."""
LAUNCH_OPTIONS = frozenset({"env", "cwd", "kernel_id", "extra_arguments"})
"""What ``launch_kernel`` may be given for a forked start; other ``Popen`` options
(pipes, a new console) start the kernel fresh."""

ZYGOTE: KernelZygote | None = None


class ZygoteError(Exception):
    """The zygote cannot start this kernel; the message says why."""


def kernel_fork_refusal(
    cmd: list[str], options: Mapping[str, Any], server_env: Mapping[str, str], python: str
) -> str | None:
    """Why this kernel starts fresh, or None when the zygote may fork it. Pure."""
    if len(cmd) < 5 or cmd[:4] != [python, "-m", "ipykernel_launcher", "-f"]:
        command = shlex.join(cmd)
        command = command if len(command) <= 300 else command[:300] + "…"
        return f"its command ({command}) is not {python} -m ipykernel_launcher -f FILE …"
    unusual = sorted(set(options) - LAUNCH_OPTIONS)
    if unusual:
        return f"it is started with {', '.join(unusual)}"
    env = options.get("env") or {}
    changed = sorted(
        key
        for key in {*env, *server_env}
        if key.startswith(STARTUP_VARIABLES) and env.get(key) != server_env.get(key)
    )
    if changed:
        return f"its environment changes how python starts ({', '.join(changed)})"
    debugger = sorted(key for key in env if key.startswith(DEBUGGER_VARIABLES))
    if debugger:
        return f"its environment sets what the debugger reads at import ({', '.join(debugger)})"
    return None


class ForkedKernel:
    """A kernel the zygote forked, with what ``LocalProvisioner`` uses of a ``Popen``."""

    stdin = stdout = stderr = None

    def __init__(self, pid: int, channel: socket.socket):
        self.pid = pid
        self.returncode: int | None = None
        self._channel = channel
        try:
            self._pidfd: int | None = os.pidfd_open(pid)
        except ProcessLookupError:
            self._pidfd = None  # it has exited already; the zygote says how

    def poll(self) -> int | None:
        if self.returncode is not None:
            return self.returncode
        try:
            report = self._channel.recv(4096)
        except BlockingIOError:
            return None
        if report:
            self.returncode = int(json.loads(report)["exit"])
        elif not self._running():
            self.returncode = -signal.SIGKILL  # its zygote died with it: status unknown
        if self.returncode is not None:
            self._close()
        return self.returncode

    def _running(self) -> bool:
        if self._pidfd is None:
            return False
        exited, _, _ = select.select([self._pidfd], [], [], 0)
        return not exited

    def wait(self) -> int:
        """Called once ``poll`` saw the exit; waits a moment for the zygote's report."""
        while self.poll() is None:
            time.sleep(0.05)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.returncode is None and self._pidfd is not None:
            signal.pidfd_send_signal(self._pidfd, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def _close(self) -> None:
        self._channel.close()
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None


class KernelZygote:
    """The server's end of its zygote: forks a kernel, or says why it cannot."""

    def __init__(self, control: socket.socket, pid: int, server_env: Mapping[str, str]):
        self.control = control
        self.pid = pid
        self.server_env = dict(server_env)

    async def fork(self, cmd: list[str], env: Mapping[str, str], cwd: str) -> ForkedKernel:
        server_end, kernel_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            try:
                socket.send_fds(self.control, [b"kernel"], [kernel_end.fileno()])
            except OSError as error:
                raise ZygoteError(f"the zygote does not answer ({error.strerror})") from None
            finally:
                kernel_end.close()
            server_end.sendall(json.dumps({"argv": cmd, "env": dict(env), "cwd": cwd}).encode())
            server_end.setblocking(False)
            loop = asyncio.get_running_loop()
            try:
                reply = await asyncio.wait_for(loop.sock_recv(server_end, 65536), START_TIMEOUT)
            except TimeoutError:
                raise ZygoteError(f"no answer within {START_TIMEOUT} s") from None
        except BaseException:
            server_end.close()
            raise
        answer = json.loads(reply) if reply else {}
        if "running" not in answer:
            server_end.close()
            raise ZygoteError(answer.get("error") or "the kernel exited before it started")
        return ForkedKernel(int(answer["running"]), server_end)


class ForkedKernelProvisioner(LocalProvisioner):
    """``LocalProvisioner`` that forks this environment's ipykernel from the zygote."""

    async def launch_kernel(self, cmd: list[str], **kwargs: Any):
        zygote = ZYGOTE
        why = (
            "no kernel zygote in this server"
            if zygote is None
            else kernel_fork_refusal(cmd, kwargs, zygote.server_env, sys.executable)
        )
        if why is None:
            cwd = str(kwargs.get("cwd") or os.getcwd())
            # As jupyter_client's launcher sets it, to its parent: the kernel stops when
            # the zygote does (which stops with the server), as a fresh one with its server.
            env = {**(kwargs.get("env") or os.environ), "JPY_PARENT_PID": str(zygote.pid)}
            try:
                kernel = await zygote.fork(cmd, env, cwd)
            except ZygoteError as error:
                why = str(error)
        if why is not None:
            self.log.info("Kernel %s starts as a new process: %s", self.kernel_id, why)
            return await super().launch_kernel(cmd, **kwargs)
        self.process = kernel
        self.pid = self.pgid = kernel.pid  # the kernel leads its own session
        self.cwd = cwd
        self.log.info("Forked kernel %s (pid %d)", self.kernel_id, kernel.pid)
        return self.connection_info


def install(control: socket.socket, pid: int) -> None:
    """Use the zygote on ``control`` for this server's kernels."""
    global ZYGOTE
    ZYGOTE = KernelZygote(control, pid, os.environ)
    factory = KernelProvisionerFactory.instance()
    factory.provisioners[PROVISIONER_NAME] = EntryPoint(
        PROVISIONER_NAME, f"{__name__}:ForkedKernelProvisioner", KernelProvisionerFactory.GROUP_NAME
    )
    factory.default_provisioner_name = PROVISIONER_NAME

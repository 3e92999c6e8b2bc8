"""The hub's fork servers: one warm parent (``fork_parent``) per environment.

Parents start on the first start they serve, or with the hub (``prewarm``); a parent
whose environment changed (a rebuild, an upgrade: its venv's fingerprint differs) is
replaced, and one that died is started again. The hub talks to each parent over a socket
pair only the two of them hold (no name in the file system, not inherited by servers).
Anything that goes wrong here is a ``ForkServerError``: the spawner logs it and starts
the server normally.
"""

from __future__ import annotations

import asyncio
import glob
import hashlib
import json
import logging
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .fork_choice import KERNEL_MODULES, parent_environment

log = logging.getLogger("JupyterHub")

PARENT_SCRIPT = Path(__file__).with_name("fork_parent.py")
READY_TIMEOUT = 120
CHILD_TIMEOUT = 30
RESTART_DELAY = 5.0


class ForkServerError(Exception):
    """A fork server cannot serve this start; the message says why."""


class ChildFailed(Exception):
    """The forked child could not isolate itself (as the launcher's exit status 70)."""

    def __init__(self, line: str, status: int):
        super().__init__(line)
        self.status = status


def fingerprint(prefix: Path) -> tuple:
    """What changes when a venv is rebuilt or its packages change: its folder, its python
    and its site-packages folders (their inode and modification time)."""
    paths = [prefix, prefix / "pyvenv.cfg", (prefix / "bin" / "python").resolve()]
    paths += sorted(Path(p) for p in glob.glob(str(prefix / "lib" / "python*" / "site-packages")))
    marks = []
    for path in paths:
        try:
            info = os.stat(path)
        except OSError:
            marks.append((str(path), None))
            continue
        marks.append((str(path), info.st_ino, info.st_mtime_ns))
    return tuple(marks)


def unsafe_for_root(prefix: Path) -> str | None:
    """Why root must not import ``prefix``'s code, or None: every file of the venv, its
    interpreter and every folder above them must be root's and not writable by others."""
    if not (prefix / "pyvenv.cfg").is_file():
        return f"{prefix} is not a venv"
    python = (prefix / "bin" / "python").resolve()
    for path in (*prefix.parents, *python.parents, python):
        info = os.stat(path)
        # A sticky folder such as /tmp: others may add entries but not replace root's.
        sticky = path != python and info.st_mode & stat.S_ISVTX
        if info.st_uid != 0 or (info.st_mode & 0o022 and not sticky):
            return f"{path} is writable by an account other than root"
    # What python reads: the venv's folder, its code, scripts and config (not, say, a
    # build tool's lock file at the top).
    imported = [prefix / name for name in ("lib", "lib64", "bin", "etc", "pyvenv.cfg")]
    find = shutil.which("find") or "/usr/bin/find"
    found = subprocess.run(
        [
            find,
            str(prefix),
            "-maxdepth",
            "0",
            "(",
            "!",
            "-user",
            "0",
            "-o",
            "-perm",
            "/022",
            ")",
            "-print",
            "-quit",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if not found.stdout.strip():
        found = subprocess.run(
            [
                find,
                *(str(p) for p in imported if os.path.lexists(p)),
                "(",
                "!",
                "-user",
                "0",
                "-o",
                "!",
                "-type",
                "l",
                "-perm",
                "/022",
                ")",
                "-print",
                "-quit",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    if found.returncode != 0:
        return f"could not check the files of {prefix}: {found.stderr.strip()[:200]}"
    if found.stdout.strip():
        return f"{found.stdout.strip()} is writable by an account other than root"
    return None


def not_the_standard_server(prefix: Path) -> str | None:
    """Why ``prefix``'s ``jupyterhub-singleuser`` is not the script pip writes for
    JupyterHub's entry point (its python, ``jupyterhub.singleuser.main``), or None: a
    parent runs that function, so a venv whose server is something else starts fresh."""
    script = prefix / "bin" / "jupyterhub-singleuser"
    try:
        with open(script, "rb") as handle:
            text = handle.read(4096).decode(errors="replace")
    except OSError as error:
        return f"{script} cannot be read ({error.strerror})"
    first = text.partition("\n")[0]
    if not first.startswith(f"#!{prefix}/bin/python") or (
        "from jupyterhub.singleuser import main" not in text
    ):
        return f"{script} is not JupyterHub's own start script"
    return None


@dataclass
class ForkServer:
    """One running parent: its process, the hub's end of its control socket, its venv."""

    prefix: Path
    mark: tuple
    process: asyncio.subprocess.Process
    control: socket.socket
    started: float = field(default_factory=time.monotonic)

    @property
    def alive(self) -> bool:
        return self.process.returncode is None

    async def fork(
        self,
        argv: list[str],
        env: Mapping[str, str],
        plan: dict,
        log_fd: int,
        fork_kernels: bool = False,
    ) -> int:
        """Fork a child that starts ``argv`` as ``plan`` says; its pid once it runs. With
        ``fork_kernels``, the child forks a kernel zygote for its server (``kernel_zygote``)."""
        hub_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with hub_end:
            try:
                socket.send_fds(self.control, [b"fork"], [child_end.fileno()])
            except OSError as error:
                raise ForkServerError(f"the parent does not answer ({error})") from None
            finally:
                child_end.close()
            hub_end.setblocking(False)
            loop = asyncio.get_running_loop()
            hello = await self._receive(loop, hub_end, "its pid")
            pid = int(hello["pid"])
            request = {"argv": argv, "env": dict(env), "plan": plan, "fork_kernels": fork_kernels}
            try:
                socket.send_fds(hub_end, [json.dumps(request).encode()], [log_fd])
            except OSError as error:
                raise ForkServerError(f"the child {pid} does not answer ({error})") from None
            reply = await self._receive(loop, hub_end, "its start")
        if "error" in reply:
            raise ChildFailed(reply["error"], int(reply.get("status", 70)))
        return pid

    async def _receive(self, loop, channel: socket.socket, what: str) -> dict:
        try:
            data = await asyncio.wait_for(loop.sock_recv(channel, 65536), CHILD_TIMEOUT)
        except TimeoutError:
            raise ForkServerError(f"no answer from the child within {CHILD_TIMEOUT} s") from None
        if not data:
            raise ForkServerError(f"the child exited before it sent {what}")
        return json.loads(data)

    async def close(self) -> None:
        """Stop the parent (its children, the servers, keep running)."""
        self.control.close()
        if self.alive:
            try:
                await asyncio.wait_for(self.process.wait(), 5)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


class ForkServers:
    """The hub's fork servers by venv: started on demand, replaced, restarted."""

    def __init__(
        self, log_dir: Path, preload: tuple[str, ...], as_root: bool, fork_kernels: bool = False
    ):
        self.log_dir = log_dir
        self.preload = (*preload, *KERNEL_MODULES) if fork_kernels else preload
        self.as_root = as_root
        self.fork_kernels = fork_kernels
        self.servers: dict[Path, ForkServer] = {}
        self.prewarmed: set[Path] = set()
        self._locks: dict[Path, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task] = set()

    def __deepcopy__(self, memo) -> ForkServers:
        """One registry per hub: traitlets deep-copies config values into each spawner,
        and every spawner must share these parents (and their locks)."""
        return self

    async def fork(
        self, prefix: Path, argv: list[str], env: Mapping[str, str], plan: dict, log_fd: int
    ) -> int:
        server = await self.server_for(prefix)
        try:
            return await server.fork(argv, env, plan, log_fd, self.fork_kernels)
        except ForkServerError:
            if not server.alive:
                self.servers.pop(prefix, None)
            raise

    async def server_for(self, prefix: Path) -> ForkServer:
        """The running parent of ``prefix``: the current one if its venv is unchanged."""
        async with self._locks.setdefault(prefix, asyncio.Lock()):
            mark = await asyncio.to_thread(fingerprint, prefix)
            server = self.servers.get(prefix)
            if server is not None and server.alive and server.mark == mark:
                return server
            if server is not None:
                why = "changed" if server.alive else "exited"
                log.info("The fork server of %s is replaced: its environment %s", prefix, why)
                self.servers.pop(prefix)
                await server.close()
            server = await self._start(prefix, mark)
            self.servers[prefix] = server
            return server

    def in_background(self, coroutine) -> None:
        """Run ``coroutine`` on the running loop, holding the task until it ends."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def prewarm(self, prefixes: tuple[Path, ...]) -> None:
        """Start the parents of ``prefixes`` now (with the hub), and again if they die."""
        self.prewarmed |= set(prefixes)
        for prefix in prefixes:
            try:
                await self.server_for(prefix)
            except ForkServerError as error:
                log.warning("Could not pre-warm the fork server of %s: %s", prefix, error)

    async def _start(self, prefix: Path, mark: tuple) -> ForkServer:
        if self.as_root:
            unsafe = await asyncio.to_thread(unsafe_for_root, prefix)
            if unsafe:
                raise ForkServerError(f"not started as root: {unsafe}")
        python = prefix / "bin" / "python"
        if not python.exists():
            raise ForkServerError(f"{python} is missing")
        other = await asyncio.to_thread(not_the_standard_server, prefix)
        if other:
            raise ForkServerError(other)
        tag = hashlib.sha256(str(prefix).encode()).hexdigest()[:12]
        log_file = await asyncio.to_thread(_open_parent_log, self.log_dir / f"fork-{tag}.log")
        hub_end, parent_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        began = time.monotonic()
        try:
            process = await asyncio.create_subprocess_exec(
                str(python),
                str(PARENT_SCRIPT),
                str(parent_end.fileno()),
                json.dumps(list(self.preload)),
                pass_fds=[parent_end.fileno()],
                env=parent_environment(os.environ, prefix),
                cwd="/",
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            parent_end.close()
            log_file.close()
        hub_end.setblocking(False)
        server = ForkServer(prefix, mark, process, hub_end)
        try:
            reply = await asyncio.wait_for(
                asyncio.get_running_loop().sock_recv(hub_end, 4096), READY_TIMEOUT
            )
        except TimeoutError:
            reply = b""
        answer = json.loads(reply) if reply else {}
        if "ready" not in answer:
            await server.close()
            why = answer.get("refused") or f"it exited (status {process.returncode})"
            raise ForkServerError(f"the parent of {prefix} did not start: {why}")
        log.info(
            "Fork server of %s ready in %.1f s (pid %d)",
            prefix,
            time.monotonic() - began,
            process.pid,
        )
        self.in_background(self._watch(server))
        return server

    async def _watch(self, server: ForkServer) -> None:
        """Log a parent's exit; start a pre-warmed one again."""
        status = await server.process.wait()
        if self.servers.get(server.prefix) is not server:
            return
        log.warning("The fork server of %s exited (status %s)", server.prefix, status)
        self.servers.pop(server.prefix, None)
        server.control.close()
        if server.prefix in self.prewarmed:
            await asyncio.sleep(RESTART_DELAY)
            await self.prewarm((server.prefix,))

    def parent_pids(self) -> dict[str, int]:
        return {str(p): s.process.pid for p, s in self.servers.items() if s.alive}


def _open_parent_log(path: Path):
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return open(path, "ab")


def own_prefix() -> Path:
    return Path(sys.prefix)

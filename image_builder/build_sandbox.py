"""Where and as whom build steps run: a fresh folder, a minimal environment, a build identity.

A build runs code from the repository (``setup.py``, ``postBuild``), so it must not see the
hub's secrets or other users' files:

- every step is an argv list run with a *minimal* environment (no hub tokens, no variables
  inherited from the hub), in a fresh temporary folder;
- when the hub runs as root, every step runs as the build's own identity
  (``build_identity``: a fresh uid and gid, no groups, a cgroup of its own), which can write
  only its work folder and its target prefix, with fresh ``/tmp``, ``/var/tmp`` and
  ``/dev/shm`` of its own and no way to gain privileges (``build_namespace``);
- each step is its own process group; when the build ends its cgroup is emptied;
- ``seal`` hands a finished artifact to root, read-only, once no process of the build is
  left, and ``write_new_file`` is how root adds a file to it (never through a link); a
  private artifact's top folder is closed to all but its group (``close_to_group``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from .build_cgroup import BuildCgroup
from .build_log import BuildLog
from .build_namespace import forbid_new_privileges, private_temporary_folders
from .builder_base import BuildFailed

SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"
NETWORK_VARIABLES = (
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
    "PIP_CERT",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "UV_INDEX_URL",
    "UV_DEFAULT_INDEX",
    "UV_EXTRA_INDEX_URL",
    "UV_INDEX",
    "UV_NATIVE_TLS",
    "UV_SYSTEM_CERTS",
)
"""The hub's variables a build inherits: how this machine reaches package indexes (CA
bundles, proxies, index mirrors). Nothing else of the hub's environment gets through."""


KIOSKHUB_PATHS = tuple(
    dict.fromkeys(
        os.path.realpath(path) for path in (sys.prefix, Path(__file__).resolve().parents[1])
    )
)
"""What every step runs from and must still see in its private temporary folders: KioskHub's
own venv (its Python, uv and the server packages) and its code, which lie below ``/tmp`` when
KioskHub runs from a checkout there."""


@dataclass(frozen=True)
class BuildAccount:
    """The identity build steps run as; None fields mean the hub's own account.

    ``visible``: the real paths its steps see even below the temporary folders, which each
    step gets fresh (``build_namespace``); add them with ``seeing``.
    """

    name: str
    uid: int | None = None
    gid: int | None = None
    cgroup: BuildCgroup | None = None
    visible: tuple[str, ...] = ()

    @property
    def switches(self) -> bool:
        return self.uid is not None

    def seeing(self, *paths: Path | str | None) -> BuildAccount:
        """This account, whose steps also see ``paths`` (resolved now, by root)."""
        found = tuple(os.path.realpath(path) for path in paths if path)
        return replace(self, visible=(*self.visible, *found))

    def become(self) -> None:
        """In the child, before exec: enter the build's cgroup, take fresh temporary
        folders, drop to the build's identity, and give up gaining privileges."""
        if self.cgroup is not None:
            self.cgroup.enter()
        private_temporary_folders((*KIOSKHUB_PATHS, *self.visible), self.uid)
        os.setgroups([])
        os.setresgid(self.gid, self.gid, self.gid)
        os.setresuid(self.uid, self.uid, self.uid)
        forbid_new_privileges()

    def end_processes(self) -> None:
        """Kill every process the build started so far (none may touch a sealed artifact)."""
        if self.cgroup is not None:
            self.cgroup.kill_all()


def give_to(path: Path, account: BuildAccount, mode: int = 0o700) -> Path:
    """Make ``path`` (a folder) the build account's own, closed to others unless ``mode`` says."""
    path.mkdir(parents=True, exist_ok=True)
    hand_to(path, account, mode)
    return path


def hand_to(path: Path, account: BuildAccount, mode: int) -> None:
    """Give an existing file or folder to the build account, with ``mode``."""
    if account.switches:
        os.chown(path, account.uid, account.gid)
    os.chmod(path, mode)


def make_workdir(account: BuildAccount) -> Path:
    """A fresh folder for one build (checkout, HOME, temp files), owned by the build account."""
    work = Path(tempfile.mkdtemp(prefix="kioskhub-build-"))
    give_to(work, account)
    for sub in ("home", "tmp"):
        give_to(work / sub, account)
    return work


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def seal(path: Path, group: int | None = None) -> None:
    """Hand a finished artifact to root and make it read-only to everyone else (0755/0644).

    With ``group``, the top folder is closed first (``close_to_group``), and the artifact is
    readable only by that group's members. Call it only once no process of the build is left
    (``BuildAccount.end_processes``), so nothing swaps an entry for a link while root walks.
    Entries root already owns (the server layer's files, hard-linked in) are left alone: the
    build could have hard-linked them.
    """
    if os.geteuid() != 0:
        return
    if group is not None:
        close_to_group(path, group)
    for root, dirs, files in os.walk(path):
        _give_to_root(root, 0o755)
        for name in files:
            full = os.path.join(root, name)
            if os.path.islink(full):
                _give_to_root(full, None)
            else:
                executable = os.lstat(full).st_mode & 0o111
                _give_to_root(full, 0o755 if executable else 0o644)
        for name in dirs:
            full = os.path.join(root, name)
            if os.path.islink(full):
                _give_to_root(full, None)


def close_to_group(folder: Path, group: int) -> None:
    """Make ``folder`` (never a link) root:``group`` 0750: only the group's members enter it.

    What lies inside may stay 0755/0644: no other account can reach it through this folder.
    """
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        os.fchown(fd, 0, group)
        os.fchmod(fd, 0o750)
    finally:
        os.close(fd)


def _give_to_root(path: str, mode: int | None) -> None:
    """Own ``path`` by root and give it ``mode`` (None: a link, owner only), when not so yet."""
    status = os.lstat(path)
    if status.st_uid == 0:
        return
    os.lchown(path, 0, 0)
    if mode is not None and not stat.S_ISLNK(status.st_mode):
        os.chmod(path, mode)


def write_new_file(folder: Path, name: str, data: bytes, mode: int = 0o644) -> None:
    """Root writes ``name`` into ``folder`` (sealed, root's): a new file, never through a link.

    BuildFailed when the build left something of that name there.
    """
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        if os.fstat(fd).st_uid != os.geteuid():
            raise BuildFailed(f"{folder} is not sealed; the builder writes only sealed folders")
        try:
            out = os.open(
                name,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                mode,
                dir_fd=fd,
            )
        except FileExistsError:
            raise BuildFailed(
                f"the build made {name} in the environment; that name is the builder's own. "
                "Remove what makes it (postBuild?) and build again."
            ) from None
        with os.fdopen(out, "wb") as handle:
            handle.write(data)
            os.fchmod(handle.fileno(), mode)
    finally:
        os.close(fd)


def minimal_environment(work: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The only variables a build step sees: PATH, HOME, TMPDIR, locale, network, ``extra``."""
    env = {name: os.environ[name] for name in NETWORK_VARIABLES if os.environ.get(name)}
    env |= {
        "PATH": SYSTEM_PATH,
        "HOME": str(work / "home"),
        "TMPDIR": str(work / "tmp"),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
    }
    env.update(extra or {})
    return env


async def run_step(
    argv: list[str],
    *,
    log: BuildLog,
    account: BuildAccount,
    cwd: Path,
    env: Mapping[str, str],
    timeout: float | None = None,
    echo: bool = True,
) -> tuple[int, str]:
    """Run ``argv`` (never a shell string) as the build account; stream its output to ``log``.

    Returns (exit status, output). Cancellation or ``timeout`` kills the whole process group.
    """
    if echo:
        log.line("$ " + " ".join(argv))
    kwargs = {"preexec_fn": account.become} if account.switches else {}
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            cwd=str(cwd),
            env=dict(env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            umask=0o022,
            **kwargs,
        )
    except subprocess.SubprocessError:
        raise BuildFailed(
            f"the step {argv[0]} could not be confined (its cgroup, private temporary "
            "folders, its identity): the builder service needs root, cgroups v2 and mount "
            "namespaces on this machine; ask the site's admins"
        ) from None
    output: list[str] = []

    async def pump() -> None:
        assert process.stdout is not None
        async for raw in process.stdout:
            text = raw.decode(errors="replace").rstrip("\n")
            output.append(text)
            log.line(text)

    try:
        async with asyncio.timeout(timeout):
            await pump()
            status = await process.wait()
    except (asyncio.CancelledError, TimeoutError):
        _kill_group(process.pid)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(process.wait(), 10)
        raise
    return status, "\n".join(output)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)

"""Which Python a venv is built with: the one runtime.txt asks for, obtained where the site allows.

The site's ``builder.python_policy`` decides what happens when this machine lacks the version:

- ``download``: uv installs it (``uv python install``) from the site's download source (a
  mirror of python-build-standalone, and/or a downloads JSON), once, into ``<state>/pythons``;
- ``nearest``: the build uses the nearest 3.x this machine has and says so in its log and in
  the environment's record (``PythonChoice.note``);
- ``refuse``: the build fails, naming runtime.txt and the versions there are.

Installed Pythons are prepared by an identity of their own, then sealed: root's and read-only,
so builds (fresh uids) and servers run them and none of them can change them.
``choose_python`` and the command builders are pure; ``ManagedPythons.install`` is the I/O.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .build_identity import IdentityPool, venv_gids
from .build_log import BuildLog
from .build_sandbox import (
    give_to,
    make_workdir,
    minimal_environment,
    remove_tree,
    run_step,
    seal,
    write_new_file,
)
from .builder_base import BuildFailed
from .server_layer import make_read_only

POLICIES = ("download", "nearest", "refuse")
INSTALLED_MARKER = "kioskhub-python.json"
OWN_VERSION = f"{sys.version_info[0]}.{sys.version_info[1]}"


@dataclass(frozen=True)
class PythonChoice:
    """The Python a build uses: ``path`` on this machine, or None when uv must install it."""

    version: str
    path: Path | None
    note: str = ""


def minor_number(version: str) -> int:
    """'3.10' → 10."""
    return int(version.split(".")[1])


def nearest_version(wanted: str, available: Iterable[str]) -> str | None:
    """The available 3.x nearest to ``wanted``; on a tie the newer one (code written for an
    older Python runs on a newer one more often than the other way round)."""
    candidates = [v for v in available if re.fullmatch(r"3\.\d+", v)]
    if not candidates:
        return None
    target = minor_number(wanted)
    return min(candidates, key=lambda v: (abs(minor_number(v) - target), -minor_number(v)))


def effective_policy(policy: str | None, download_source: bool) -> str:
    """The site's policy, or its default: ``download`` where a download source is configured,
    else ``nearest``."""
    if policy:
        return policy
    return "download" if download_source else "nearest"


def choose_python(
    requested: str | None,
    available: dict[str, Path],
    policy: str = "refuse",
    *,
    where: str = "runtime.txt",
    own: str = OWN_VERSION,
) -> PythonChoice:
    """The Python for a spec asking for ``requested`` (None: the hub's own), under ``policy``.

    ``where`` names the file (and line) that asked, for the messages.
    """
    wanted = requested or own
    if wanted in available:
        return PythonChoice(wanted, available[wanted])
    if policy == "download":
        return PythonChoice(wanted, None)
    nearest = nearest_version(wanted, available)
    if policy == "nearest" and nearest:
        return PythonChoice(
            nearest,
            available[nearest],
            note=f"{where} asks for Python {wanted}; this site has no Python {wanted}, so the "
            f"environment was built with Python {nearest}, the nearest it has.",
        )
    raise BuildFailed(
        f"{where} asks for Python {wanted}, but this machine has "
        f"{', '.join(sorted(available, key=minor_number)) or 'none'}; change runtime.txt to "
        "one of these (or ask the site's admins to install it, or allow downloads with "
        "builder.python_policy: download, or use the container builder)."
    )


def find_pythons() -> dict[str, Path]:
    """Interpreters on this machine that other accounts can run: '3.11' → /usr/bin/python3.11."""
    found: dict[str, Path] = {}
    own = Path(sys.executable).resolve()
    candidates = [own] + [
        Path(folder) / f"python3.{minor}"
        for folder in ("/usr/bin", "/usr/local/bin")
        for minor in range(8, 20)
    ]
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            match = re.search(r"python(3\.\d+)$", path.name)
            key = match.group(1) if match else f"{sys.version_info[0]}.{sys.version_info[1]}"
            if path == own:
                key = f"{sys.version_info[0]}.{sys.version_info[1]}"
            found.setdefault(key, path)
    return found


def full_version(python: Path) -> str:
    """'3.11.2': the full version of the interpreter at ``python``."""
    out = subprocess.run(
        [str(python), "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return out.stdout.strip()


@dataclass(frozen=True)
class PythonDownloads:
    """Where uv-managed Pythons come from (the site's settings) and where they are kept."""

    folder: Path
    mirror: str = ""
    downloads_json: str = ""

    def install_command(self, uv: str, version: str, target: Path) -> list[str]:
        """``uv python install`` of ``version`` into ``target``, from the site's source only."""
        argv = [uv, "python", "install", "--no-config", "--no-bin", "--no-registry"]
        argv += ["--install-dir", str(target)]
        if self.downloads_json:
            argv += ["--python-downloads-json-url", self.downloads_json]
        return [*argv, version]

    def install_environment(self, work: Path, cache: Path) -> dict[str, str]:
        """The variables of the install step: the mirror, a cache of its own, no user config."""
        extra = {
            "UV_CACHE_DIR": str(cache),
            "UV_NO_CONFIG": "1",
            "UV_PYTHON_DOWNLOADS": "manual",
        }
        if self.mirror:
            extra["UV_PYTHON_INSTALL_MIRROR"] = self.mirror
        return minimal_environment(work, extra)

    def installed(self) -> dict[str, Path]:
        """Pythons installed (and sealed) here before: '3.10' → .../bin/python3.10."""
        found: dict[str, Path] = {}
        if not self.folder.is_dir():
            return found
        for entry in sorted(self.folder.iterdir()):
            if re.fullmatch(r"3\.\d+", entry.name) and _sealed(entry):
                pythons = sorted(entry.glob(f"cpython-{entry.name}.*/bin/python{entry.name}"))
                if pythons:
                    found[entry.name] = pythons[-1]
        return found


class ManagedPythons:
    """Installs Pythons with uv into ``downloads.folder``, one sealed folder per 3.x."""

    def __init__(
        self, downloads: PythonDownloads, identities: IdentityPool, uv: str | None, environments
    ) -> None:
        self.downloads = downloads
        self.identities = identities
        self.uv = uv
        self.environments_dir = environments
        self._lock = asyncio.Lock()

    async def install(self, version: str, log: BuildLog, timeout: float | None = None) -> Path:
        """Python ``version`` (3.x), installed once and sealed; BuildFailed when uv cannot."""
        if not self.uv:
            raise BuildFailed("installing Python needs uv, which this machine lacks")
        async with self._lock:
            known = self.downloads.installed()
            if version in known:
                return known[version]
            folder = self.downloads.folder
            folder.mkdir(parents=True, exist_ok=True)
            os.chmod(folder, 0o755)
            target = folder / version
            remove_tree(target)
            log.line(f"Installing Python {version} with uv, once for this site")
            in_use = await asyncio.to_thread(venv_gids, self.environments_dir)
            async with self.identities.identity("python", in_use) as account:
                work = make_workdir(account)
                sources = (self.downloads.mirror, self.downloads.downloads_json)
                account = account.seeing(work, folder, *local_paths(sources))
                give_to(target, account, 0o755)
                env = self.downloads.install_environment(work, give_to(work / "cache", account))
                try:
                    status, output = await run_step(
                        self.downloads.install_command(self.uv, version, target),
                        log=log,
                        account=account,
                        cwd=work,
                        env=env,
                        timeout=timeout,
                    )
                    await asyncio.to_thread(account.end_processes)
                    if status != 0:
                        last = [line for line in output.splitlines() if line.strip()][-3:]
                        raise BuildFailed(
                            f"Python {version} could not be installed from the site's download "
                            "source (builder.python_downloads_mirror / python_downloads_json): "
                            + " / ".join(last)
                        )
                    seal(target)
                    if os.geteuid() != 0:
                        make_read_only(target)
                    marker = json.dumps({"python": version}).encode()
                    write_new_file(target, INSTALLED_MARKER, marker, 0o444)
                except BaseException:
                    await asyncio.to_thread(account.end_processes)
                    remove_tree(target)
                    raise
                finally:
                    remove_tree(work)
            installed = self.downloads.installed()
            if version not in installed:
                raise BuildFailed(f"uv installed no Python {version} from the download source")
            return installed[version]


def local_paths(urls: Iterable[str]) -> list[str]:
    """The folders on this machine that file:// URLs (or absolute paths) name: build steps,
    which get temporary folders of their own, must still see them."""
    found = []
    for url in urls:
        path = url.removeprefix("file://") if url.startswith("file://") else url
        if path.startswith("/"):
            found.append(path if os.path.isdir(path) else os.path.dirname(path))
    return found


async def obtain_python(
    requested: str | None,
    where: str,
    policy: str,
    managed: ManagedPythons | None,
    log: BuildLog,
    timeout: float | None = None,
) -> PythonChoice:
    """The interpreter a spec asks for (``where`` says which file and line), under ``policy``;
    installed by uv when the policy is download and the machine lacks it."""
    available = await asyncio.to_thread(find_pythons)
    if managed:
        available = managed.downloads.installed() | available
    if policy == "download" and not managed:
        policy = "refuse"
    choice = choose_python(requested, available, policy, where=where)
    if choice.note:
        log.line(f"Note: {choice.note}")
    if choice.path is None:
        assert managed is not None
        choice = PythonChoice(choice.version, await managed.install(choice.version, log, timeout))
    return choice


def _sealed(folder: Path) -> bool:
    """True when ``folder`` is ours (root's when root) and carries its marker."""
    try:
        status, marker = os.lstat(folder), os.lstat(folder / INSTALLED_MARKER)
    except FileNotFoundError:
        return False
    return (
        stat.S_ISDIR(status.st_mode)
        and stat.S_ISREG(marker.st_mode)
        and status.st_uid == marker.st_uid == os.geteuid()
    )

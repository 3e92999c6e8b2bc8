"""The local builder: a repository → a uv venv on this machine, content-addressed.

Steps, each as the build's own identity (``build_identity``) with a minimal environment:
fetch the ref, read the spec (as data: ``checkout_files``), create the venv (uv; ``python -m
venv`` + pip when uv is missing) as a clone of the server layer (jupyterhub, jupyterlab and
ipykernel at the hub's own versions, installed and compiled once, by an identity of its own:
``server_layer``), install the repository's requirements on top, run ``postBuild``; then
end every process of the build, seal the venv (root's, read-only), smoke-test it, and write
its marker as a new file of the sealed folder; last, keep the repository's files at the built
commit in it for the servers launched from it (``repository_files``). The venv lives at
``<environments_dir>/<content hash>``; the hash covers the owner, so a venv is never shared
between owners, and the same hash is reused without building.

A user's venv is private: closed to other accounts while it is built (0700, the build's),
sealed with its top folder root:<the build's gid> 0750 for the smoke test, then root:<G> 0750,
where G is a gid of its own from the site's environment group range. The spawner gives G to
the servers it launches from that venv, and only to those the catalog lets launch it. The
site's venvs stay 0755.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
import sys
from collections.abc import Iterable
from importlib.metadata import version
from pathlib import Path

from kioskhub.hub.schema.builder import BuilderSettings, python_download_source, pythons_dir

from .build_cache import hand_over_cache, owner_cache_folder
from .build_identity import IdentityPool, venv_gids
from .build_log import BuildLog
from .build_sandbox import (
    SYSTEM_PATH,
    BuildAccount,
    close_to_group,
    give_to,
    make_workdir,
    minimal_environment,
    remove_tree,
    run_step,
    seal,
    write_new_file,
)
from .builder_base import BUILDER_VERSION, Artifact, BuildFailed, BuildRequest, EnvironmentBuilder
from .catalog import SITE_OWNER
from .conda_environment import CondaPlan, check_conda_step, install_command, plan_conda
from .git_checkout import fetch_for_build
from .python_versions import (
    ManagedPythons,
    PythonDownloads,
    effective_policy,
    full_version,
    local_paths,
    obtain_python,
)
from .repo_spec import RepoSpec, content_hash, detect_spec
from .repository_files import keep_repository_files
from .server_layer import (
    LAYER_MARKER,
    LAYERS_FOLDER,
    clone_layer,
    installed_distributions,
    layer_intact,
    layer_key,
    make_read_only,
)
from .smoke_test import smoke_test

MARKER = "kioskhub-environment.json"
SERVER_PACKAGES = (
    *("jupyterhub", "jupyterlab", "ipykernel", "nbgitpuller"),
    *("dask-gateway", "dask", "distributed", "bokeh"),
)
"""In every built venv: the server, a kernel, nbgitpuller (its server extension pulls
workshop materials), and Dask Gateway's client with the scheduler
(and its dashboard, bokeh) and worker that clusters run in that same venv."""


def server_requirements() -> tuple[str, ...]:
    """The server packages pinned to the versions the hub itself runs."""
    return tuple(f"{name}=={version(name)}" for name in SERVER_PACKAGES)


def site_toolchain(settings: BuilderSettings, state_dir: Path) -> dict:
    """The LocalBuilder options the site's ``builder:`` settings give: Pythons and conda."""
    return {
        "python_policy": effective_policy(settings.python_policy, python_download_source(settings)),
        "python_downloads": PythonDownloads(
            pythons_dir(state_dir),
            settings.python_downloads_mirror,
            settings.python_downloads_json,
        ),
        "conda_channels": settings.conda_channels,
        "conda_pypi_fallback": settings.conda_pypi_fallback,
    }


class LocalBuilder(EnvironmentBuilder):
    """Builds venvs with uv under ``environments_dir``; see the module docstring."""

    kind = "local"

    def __init__(
        self,
        *,
        environments_dir: Path,
        cache_dir: Path,
        identities: IdentityPool,
        uv: str | None = None,
        step_timeout: float | None = None,
        python_policy: str = "refuse",
        python_downloads: PythonDownloads | None = None,
        conda_channels: tuple[str, ...] = (),
        conda_pypi_fallback: bool = False,
    ) -> None:
        self.environments_dir = environments_dir
        self.cache_dir = cache_dir
        self.identities = identities
        self.uv = uv if uv is not None else (shutil.which("uv") or _venv_uv())
        self.step_timeout = step_timeout
        self.python_policy = python_policy
        self.managed_pythons = (
            ManagedPythons(python_downloads, identities, self.uv, environments_dir)
            if python_downloads
            else None
        )
        self.conda_channels = conda_channels
        self.conda_pypi_fallback = conda_pypi_fallback
        self._locks: dict[str, asyncio.Lock] = {}
        self._caches_in_use: set[str] = set()

    async def build(self, request: BuildRequest, log: BuildLog) -> Artifact:
        self.environments_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.environments_dir, 0o755)
        in_use = await asyncio.to_thread(venv_gids, self.environments_dir)
        async with self.identities.identity("build", in_use) as account:
            if account.switches:
                log.line(f"Building as a fresh identity of its own (uid {account.uid}).")
            else:
                log.line(f"Building as the hub's own account ({account.name}): not root.")
            work = make_workdir(account)
            account = account.seeing(
                work,
                self.environments_dir,
                self.cache_dir,
                request.source.local_path,
                *local_paths(self.conda_channels),
            )
            cache = owner_cache_folder(self.cache_dir, request.owner)
            if cache.name in self._caches_in_use:
                cache = give_to(work / "cache", account)
            else:
                self._caches_in_use.add(cache.name)
            try:
                if cache.parent == self.cache_dir:
                    await asyncio.to_thread(hand_over_cache, cache, account)
                artifact = await self._build_in(work, cache, request, log, account)
                await keep_repository_files(
                    artifact,
                    request,
                    work=work,
                    environments_dir=self.environments_dir,
                    log=log,
                    account=account,
                )
                return artifact
            finally:
                await asyncio.to_thread(account.end_processes)
                self._caches_in_use.discard(cache.name)
                remove_tree(work)

    async def _build_in(
        self, work: Path, cache: Path, request: BuildRequest, log: BuildLog, account: BuildAccount
    ) -> Artifact:
        env = minimal_environment(work)
        checkout, root = await fetch_for_build(request, work, log=log, account=account, env=env)
        log.line(f"Commit {checkout.commit_sha}")
        log.progress(15, "Reading the repository's spec")
        spec = detect_spec(root)
        log.line("Found: " + ", ".join(spec.summary()))
        conda = plan_conda(spec.conda_packages, self.conda_channels, self.conda_pypi_fallback)
        for line in conda.log_lines:
            log.line(line)
        choice = await obtain_python(
            spec.python_version,
            spec.python_source or "runtime.txt",
            self.python_policy,
            self.managed_pythons,
            log,
            self.step_timeout,
        )
        python = choice.path
        python_version = await asyncio.to_thread(full_version, python)
        notes = [choice.note] if choice.note else []
        key = content_hash(
            spec,
            python_version=python_version,
            builder_version=BUILDER_VERSION,
            server_packages=server_requirements(),
            tree_sha=checkout.tree_sha,
            owner=request.owner,
            conda_channels=self.conda_channels,
        )
        target = self.environments_dir / key
        private = request.owner != SITE_OWNER and account.switches
        async with self._locks.setdefault(key, asyncio.Lock()):
            if _sealed_marker(target):
                if private and not _closed(target):
                    close_to_group(target, await self._environment_group())
                log.progress(95, f"Reusing the environment built from the same spec: {target}")
                return Artifact(
                    checkout.commit_sha, key, venv_path=str(target), reused=True, notes=notes
                )
            layer = await self._server_layer(python, python_version, log)
            remove_tree(target)
            try:
                await self._make_venv(
                    target,
                    spec,
                    conda,
                    python_version,
                    python,
                    root,
                    work,
                    log,
                    account,
                    layer,
                    cache,
                )
                await asyncio.to_thread(account.end_processes)
                seal(target, account.gid if private else None)
                check_server = bool(spec.post_build) or not layer_intact(
                    installed_distributions(layer), installed_distributions(target)
                )
                log.progress(85, "Smoke test: the server command and a kernel")
                await smoke_test(
                    target, log=log, account=account, cwd=work, env=env, check_server=check_server
                )
                await asyncio.to_thread(account.end_processes)
                if private:
                    close_to_group(target, await self._environment_group())
                    log.line("Private: only you, and the groups you share it with, may read it.")
                marker = {
                    "commit_sha": checkout.commit_sha,
                    "content_hash": key,
                    "python": python_version,
                    "builder_version": BUILDER_VERSION,
                    "server_packages": list(server_requirements()),
                    "server_layer": layer.name,
                    "spec": spec.summary(),
                    "source": request.source.url,
                    "notes": notes,
                }
                write_new_file(target, MARKER, json.dumps(marker, indent=2).encode())
            except BaseException:
                await asyncio.to_thread(account.end_processes)
                remove_tree(target)
                raise
        log.progress(100, f"Ready: {target}")
        return Artifact(checkout.commit_sha, key, venv_path=str(target), notes=notes)

    def close_private_venvs(self, venv_paths: Iterable[str]) -> int:
        """Close the private venvs that an earlier version left readable by every account:
        each gets a group of its own, as a new build would. Returns how many were closed."""
        if os.geteuid() != 0:
            return 0
        closed = 0
        for path in dict.fromkeys(venv_paths):
            target = Path(path)
            if target.parent != self.environments_dir or not _sealed_marker(target):
                continue
            if not _closed(target):
                in_use = venv_gids(self.environments_dir)
                close_to_group(target, self.identities.take_group(in_use))
                closed += 1
        return closed

    async def _environment_group(self) -> int:
        """A gid of its own for a private venv: no other venv's, no build's."""
        in_use = await asyncio.to_thread(venv_gids, self.environments_dir)
        return self.identities.take_group(in_use)

    async def _server_layer(self, python: Path, python_version: str, log: BuildLog) -> Path:
        """The server layer for ``python``, prepared (installed, compiled, sealed, tested) once.

        An identity of its own prepares it, in a work folder of its own, with a download cache
        that goes with that folder; no build's identity can write it at any time.
        """
        packages = server_requirements()
        key = layer_key(
            python_version=python_version, server_packages=packages, builder_version=BUILDER_VERSION
        )
        layers = self.environments_dir / LAYERS_FOLDER
        layer = layers / key
        async with self._locks.setdefault(f"layer-{key}", asyncio.Lock()):
            if _sealed_marker(layer, LAYER_MARKER):
                return layer
            log.progress(
                20,
                f"Preparing the server layer for Python {python_version} "
                f"({', '.join(packages)}); once per hub version, later builds start from it",
            )
            layers.mkdir(exist_ok=True)
            os.chmod(layers, 0o755)
            remove_tree(layer)
            in_use = await asyncio.to_thread(venv_gids, self.environments_dir)
            async with self.identities.identity("layer", in_use) as account:
                work = make_workdir(account)
                account = account.seeing(work, layers)
                try:
                    await self._prepare_layer(layer, python, python_version, work, log, account)
                finally:
                    await asyncio.to_thread(account.end_processes)
                    remove_tree(work)
        return layer

    async def _prepare_layer(
        self,
        layer: Path,
        python: Path,
        python_version: str,
        work: Path,
        log: BuildLog,
        account: BuildAccount,
    ) -> None:
        packages = server_requirements()
        give_to(layer, account, 0o755)
        env = self._install_environment(work, give_to(work / "cache", account))
        try:
            await self._step(
                self._create_command(python, layer), log, account, work, env, "creating the layer"
            )
            await self._step(
                self._install_command(layer, list(packages)),
                log,
                account,
                work,
                env,
                "installing the server layer",
            )
            await asyncio.to_thread(account.end_processes)
            seal(layer)
            if os.geteuid() != 0:
                make_read_only(layer)
            await smoke_test(
                layer, log=log, account=account, cwd=work, env=minimal_environment(work)
            )
            await asyncio.to_thread(account.end_processes)
            marker = {"python": python_version, "server_packages": list(packages)}
            write_new_file(layer, LAYER_MARKER, json.dumps(marker, indent=2).encode(), 0o444)
        except BaseException:
            await asyncio.to_thread(account.end_processes)
            remove_tree(layer)
            raise

    def _install_environment(self, work: Path, cache: Path) -> dict[str, str]:
        return minimal_environment(
            work,
            {
                "UV_CACHE_DIR": str(cache),
                # Hard links would share inodes with the cache, which seal() gives to root;
                # the build account may then no longer link them (protected_hardlinks).
                "UV_LINK_MODE": "copy",
                # Compiled here, for the modules the install adds: users cannot write
                # bytecode into a sealed venv later.
                "UV_COMPILE_BYTECODE": "1",
                "UV_PYTHON_DOWNLOADS": "never",
                "UV_NO_CONFIG": "1",
                "PIP_CONFIG_FILE": "/dev/null",
                "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            },
        )

    def _create_command(self, python: Path, target: Path) -> list[str]:
        if self.uv:
            return [
                self.uv,
                "venv",
                "--quiet",
                "--allow-existing",
                "--python",
                str(python),
                str(target),
            ]
        return [str(python), "-m", "venv", str(target)]

    def _install_command(self, target: Path, packages: list[str]) -> list[str]:
        python = str(target / "bin" / "python")
        if self.uv:
            return [self.uv, "pip", "install", "--python", python, *packages]
        return [python, "-m", "pip", "install", *packages]

    async def _make_venv(
        self,
        target: Path,
        spec: RepoSpec,
        conda: CondaPlan,
        python_version: str,
        python: Path,
        root: Path,
        work: Path,
        log: BuildLog,
        account: BuildAccount,
        layer: Path,
        cache: Path,
    ) -> None:
        """Create the venv from the server layer, install the conda packages (where
        environment.yml has some) and the requirements, run postBuild.

        The venv is the build's own and closed to others until it is sealed.
        """
        give_to(target, account, 0o700)
        env = self._install_environment(work, cache)
        log.progress(25, f"Creating the venv with Python {python} from the server layer")
        await self._step(
            self._create_command(python, target), log, account, work, env, "creating the venv"
        )
        await asyncio.to_thread(clone_layer, layer, target, account)
        if conda.conda_specs:
            log.progress(30, "Installing environment.yml's conda packages (py-rattler)")
            argv = install_command(
                target, python_version, self.conda_channels, cache / "conda", conda.conda_specs
            )
            status, output = await run_step(
                argv, log=log, account=account, cwd=work, env=env, timeout=self.step_timeout
            )
            check_conda_step(status, output, spec.conda_packages)
        packages = [*server_requirements(), *spec.pip_packages, *conda.pip_packages]
        if spec.requirements:
            packages += ["-r", str(spec.requirements)]
        if spec.install_project:
            packages.append(str(root))
        log.progress(35, "Installing the server packages and the repository's requirements")
        await self._step(
            self._install_command(target, packages), log, account, root, env, "installing packages"
        )
        if spec.post_build:
            log.progress(75, "Running postBuild")
            post_env = {
                **env,
                "PATH": f"{target / 'bin'}:{SYSTEM_PATH}",
                "VIRTUAL_ENV": str(target),
                "KIOSKHUB_ENVIRONMENT_PREFIX": str(target),
            }
            await self._step(
                ["/bin/bash", str(spec.post_build)], log, account, root, post_env, "postBuild"
            )

    async def _step(
        self, argv: list[str], log: BuildLog, account: BuildAccount, cwd: Path, env, what: str
    ) -> None:
        status, output = await run_step(
            argv, log=log, account=account, cwd=cwd, env=env, timeout=self.step_timeout
        )
        if status != 0:
            last = [line for line in output.splitlines() if line.strip()][-4:]
            raise BuildFailed(f"{what} failed (exit {status}): " + " / ".join(last))


def _venv_uv() -> str | None:
    candidate = Path(sys.executable).parent / "uv"
    return str(candidate) if candidate.exists() else None


def _closed(folder: Path) -> bool:
    """True when no account outside the folder's group may enter ``folder``."""
    return not os.lstat(folder).st_mode & 0o007


def _sealed_marker(folder: Path, name: str = MARKER) -> bool:
    """True when ``folder`` is a finished artifact: root's (when root) and with its marker."""
    try:
        status = os.lstat(folder)
        marker = os.lstat(folder / name)
    except FileNotFoundError:
        return False
    owner = os.geteuid()
    return (
        stat.S_ISDIR(status.st_mode)
        and stat.S_ISREG(marker.st_mode)
        and status.st_uid == owner
        and marker.st_uid == owner
    )

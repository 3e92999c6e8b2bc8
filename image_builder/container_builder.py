"""The container builder: repo2docker with docker, or podman through repo2docker's engine plug-in.

``find_engine`` says in one line whether container builds can run here. ``ContainerBuilder``
fetches the repository with the same safe git steps as the local builder, then runs
``repo2docker --no-run`` on the checkout and records the image and its ID as the artifact.
``render_dockerfile`` prints the Dockerfile that repo2docker would build
(``--no-build --debug``); it needs no engine.

repo2docker itself runs from the hub's venv, in a fresh folder (so that no
``repo2docker_config.py`` is picked up) with a minimal environment; the repository's own
steps run inside the image build, not on this machine.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

from .build_identity import IdentityPool
from .build_log import BuildLog
from .build_sandbox import (
    BuildAccount,
    make_workdir,
    minimal_environment,
    remove_tree,
    run_step,
)
from .builder_base import Artifact, BuildFailed, BuildRequest, EnvironmentBuilder
from .git_checkout import fetch_for_build

IMAGE_USER = ("1000", "jovyan")


@dataclass(frozen=True)
class ContainerEngine:
    """A container engine repo2docker can use here, or why there is none."""

    name: str | None
    command: str | None = None
    reason: str = ""

    @property
    def available(self) -> bool:
        return self.name is not None


def repo2docker_command() -> str | None:
    found = Path(sys.executable).parent / "repo2docker"
    return str(found) if found.exists() else shutil.which("repo2docker")


def engine_plugins() -> set[str]:
    return {entry.name for entry in entry_points(group="repo2docker.engines")}


def find_engine() -> ContainerEngine:
    """docker with a reachable daemon, else podman with repo2docker's podman plug-in."""
    if repo2docker_command() is None:
        return ContainerEngine(None, reason="repo2docker is not installed (jupyter-repo2docker)")
    docker = shutil.which("docker")
    if docker and _answers([docker, "info", "--format", "{{.ServerVersion}}"]):
        return ContainerEngine("docker", docker)
    podman = shutil.which("podman")
    if podman:
        if "podman" in engine_plugins():
            return ContainerEngine("podman", podman)
        return ContainerEngine(
            None,
            reason="podman is here, but repo2docker's podman engine plug-in (repo2podman) is "
            "not installed" + ("; docker has no reachable daemon" if docker else ""),
        )
    if docker:
        return ContainerEngine(None, reason="docker is here, but its daemon does not answer")
    return ContainerEngine(None, reason="no container engine (docker or podman) on this machine")


def _answers(argv: list[str]) -> bool:
    try:
        return subprocess.run(argv, capture_output=True, timeout=15).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def dockerfile_argv(folder: Path) -> list[str]:
    command = repo2docker_command() or "repo2docker"
    return [
        command,
        "--no-build",
        "--debug",
        "--user-id",
        IMAGE_USER[0],
        "--user-name",
        IMAGE_USER[1],
        str(folder),
    ]


async def render_dockerfile(folder: Path, work: Path) -> str:
    """The Dockerfile repo2docker would build for the checkout in ``folder``."""
    if repo2docker_command() is None:
        raise BuildFailed("repo2docker is not installed; install jupyter-repo2docker")
    process = await asyncio.create_subprocess_exec(
        *dockerfile_argv(folder),
        cwd=str(work),
        env=minimal_environment(work),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        raise BuildFailed(f"repo2docker could not read the repository: {err.decode()[-800:]}")
    return out.decode()


def image_name(owner: str, name: str, commit_sha: str) -> str:
    return f"kioskhub-env/{owner}-{name}:{commit_sha[:12]}".lower()


class ContainerBuilder(EnvironmentBuilder):
    """Builds an image with repo2docker; the artifact is the image name and its ID."""

    kind = "container"

    def __init__(self, engine: ContainerEngine, *, identities: IdentityPool | None = None) -> None:
        self.engine = engine
        self.identities = identities

    async def build(self, request: BuildRequest, log: BuildLog) -> Artifact:
        if not self.engine.available or self.identities is None:
            raise BuildFailed(f"container builds are not possible here: {self.engine.reason}")
        async with self.identities.identity("container") as account:
            return await self._build_as(account, request, log)

    async def _build_as(self, account: BuildAccount, request: BuildRequest, log: BuildLog):
        """Fetch as ``account``, end its processes, then let repo2docker build the checkout."""
        work = make_workdir(account)
        account = account.seeing(work, request.source.local_path)
        try:
            env = minimal_environment(work)
            checkout, folder = await fetch_for_build(
                request, work, log=log, account=account, env=env
            )
            account.end_processes()
            image = image_name(request.owner, request.name, checkout.commit_sha)
            log.progress(20, f"Building {image} with repo2docker ({self.engine.name})")
            engine_user = BuildAccount(name="root")
            status, output = await run_step(
                [
                    repo2docker_command(),
                    "--engine",
                    self.engine.name,
                    "--no-run",
                    "--user-id",
                    IMAGE_USER[0],
                    "--user-name",
                    IMAGE_USER[1],
                    "--image-name",
                    image,
                    str(folder),
                ],
                log=log,
                account=engine_user,
                cwd=work,
                env=env,
            )
            if status != 0:
                raise BuildFailed(f"repo2docker failed (exit {status}): {output[-600:]}")
            status, image_id = await run_step(
                [self.engine.command, "image", "inspect", "--format", "{{.Id}}", image],
                log=log,
                account=engine_user,
                cwd=work,
                env=env,
            )
            if status != 0:
                raise BuildFailed(f"the built image {image} could not be inspected")
            log.progress(100, f"Ready: {image}")
            return Artifact(
                checkout.commit_sha, None, image_ref=image, image_digest=image_id.strip()
            )
        finally:
            remove_tree(work)

"""The repository's files at the built commit, kept inside the sealed venv for launches.

After a venv is built (or reused for another commit), the build's identity makes a bare git
repository of the built commit, branch ``built``, with the history a shallow checkout lacks
(so that a user's copy of an earlier build merges), in a staging folder of its own beside
the venvs. Once no process of the build is left, root checks that the staging folder holds
only folders and regular files of one link each, seals it, replaces its config and drops its
hooks and alternates (nothing the build wrote there that git would act on), and renames it
into the venv as ``kioskhub-repository/<commit>.git``. Root never runs git on it.

Inside the venv it is exactly as readable as the venv: a private venv's top folder is
root:<G> 0750, so only the servers (and home preparations) given G read it. The spawner
pulls it into the user's home as the user (``kioskhub.spawner.repository_pull``).

An image has no folder on this machine to hold it, so the container builder keeps it the
same way in a holder of its own, ``<environments_dir>/files-<hash of owner and name>``
(``image_files_holder``), one per environment: root's, 0755 for the site's images,
root:<G> 0750 for a user's, G an environment gid of its own as a private venv's. The pod
never sees it: the pod backend's home preparation (a host process as the pods' account,
given G only for a launch the catalog allowed) pulls it into the home bound into the pod.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import secrets
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

from .build_identity import venv_gids
from .build_log import BuildLog
from .build_sandbox import (
    BuildAccount,
    close_to_group,
    give_to,
    minimal_environment,
    remove_tree,
    run_step,
    seal,
)
from .builder_base import Artifact, BuildFailed, BuildRequest
from .catalog import SITE_OWNER
from .source_safety import git_argv, git_environment

FILES_FOLDER = "kioskhub-repository"
BRANCH = "built"
SOURCE_CONFIG = b"[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = true\n"
"""The kept repository's whole config: root's, in place of the one the build's git wrote."""


def kept_source(venv_path: str | Path, commit_sha: str) -> Path:
    """Where the files of ``commit_sha`` are kept in the venv at ``venv_path``."""
    return Path(venv_path) / FILES_FOLDER / f"{commit_sha}.git"


def image_files_holder(environments_dir: Path, owner: str, name: str) -> Path:
    """The folder that keeps the repository files of ``owner``'s image environment ``name``:
    at the top of the environments folder (its group counts as a venv's), never shared by
    owners."""
    digest = hashlib.sha256(f"{owner}\0{name}".encode()).hexdigest()[:40]
    return environments_dir / f"files-{digest}"


def is_kept(source: Path) -> bool:
    """True when ``source`` is a kept repository: a folder that root owns (when root)."""
    try:
        status = os.lstat(source)
    except OSError:
        return False
    return stat.S_ISDIR(status.st_mode) and status.st_uid == os.geteuid()


def folder_name(repository_url: str) -> str:
    """The home folder a repository's files go into: the last part of its URL, less ``.git``,
    in the letters a folder name may hold (``hub.schema.choices.FolderName``)."""
    last = re.split(r"[/:]", repository_url.rstrip("/"))[-1].removesuffix(".git")
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", last).lstrip(".-")[:100]
    return name or "repository"


async def keep_repository_files(
    artifact: Artifact,
    request: BuildRequest,
    *,
    work: Path,
    environments_dir: Path,
    log: BuildLog,
    account: BuildAccount,
) -> None:
    """Keep the files of ``artifact.commit_sha`` (checked out in ``work/repo``) in its venv.

    A venv reused for a commit it already keeps is left alone. BuildFailed when the build
    left something in the staging folder that is not a plain folder or file.
    """
    if not artifact.venv_path:
        return
    venv = Path(artifact.venv_path)
    if not artifact.reused and os.path.lexists(venv / FILES_FOLDER):
        raise BuildFailed(
            f"the build made {FILES_FOLDER} in the environment; that name is the builder's own. "
            "Remove what makes it (postBuild?) and build again."
        )
    await _keep_in(venv, artifact.commit_sha, request, work, environments_dir, log, account)


async def keep_image_files(
    environments_dir: Path,
    commit: str,
    request: BuildRequest,
    *,
    work: Path,
    log: BuildLog,
    account: BuildAccount,
    take_group: Callable[[set[int]], int],
) -> None:
    """Keep the files of ``commit`` (checked out in ``work/repo``) for the image environment
    of ``request`` in its holder (``image_files_holder``), root's; a user's holder is closed
    to a group of its own (``take_group`` of the groups in use), as a private venv is."""
    environments_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(environments_dir, 0o755)
    holder = image_files_holder(environments_dir, request.owner, request.name)
    group = None
    if request.owner != SITE_OWNER and account.switches and not os.path.lexists(holder):
        group = take_group(await asyncio.to_thread(venv_gids, environments_dir))
    await asyncio.to_thread(_make_holder, holder, group)
    await _keep_in(holder, commit, request, work, environments_dir, log, account)


def _make_holder(holder: Path, group: int | None) -> None:
    """``holder`` as root's folder (0755), closed to ``group`` (root:group 0750) when given;
    an existing one keeps its group. Never through a link."""
    try:
        os.mkdir(holder, 0o755)
    except FileExistsError:
        if not is_kept(holder):
            raise BuildFailed(f"{holder} is not the builder's own folder") from None
        return
    os.chmod(holder, 0o755)
    if group is not None and os.geteuid() == 0:
        close_to_group(holder, group)


async def _keep_in(
    holder: Path,
    commit: str,
    request: BuildRequest,
    work: Path,
    environments_dir: Path,
    log: BuildLog,
    account: BuildAccount,
) -> None:
    """Keep the files of ``commit`` as ``holder/FILES_FOLDER/<commit>.git``, unless kept."""
    if is_kept(kept_source(holder, commit)):
        return
    log.line("Keeping the repository's files at this commit for the servers launched from it")
    staging = give_to(environments_dir / f".staging-{secrets.token_hex(8)}", account, 0o700)
    try:
        await _fetch_into(staging, commit, request, work, log, account)
        await asyncio.to_thread(account.end_processes)
        await asyncio.to_thread(_seal_kept, staging)
        await asyncio.to_thread(_move_into_venv, staging, holder, f"{commit}.git")
    finally:
        await asyncio.to_thread(account.end_processes)
        remove_tree(staging)


async def _fetch_into(
    staging: Path,
    commit: str,
    request: BuildRequest,
    work: Path,
    log: BuildLog,
    account: BuildAccount,
) -> None:
    """As the build: the checkout's missing history, then a bare repository of ``commit``."""
    checkout = work / "repo"
    env = minimal_environment(work)
    protocols = (request.source.protocol,)
    source_env = {
        **env,
        **git_environment(protocols, env["HOME"]),
        # fetch_checkout's: a local source may belong to another account (safe.directory).
        "GIT_CONFIG_GLOBAL": str(Path(env["HOME"]) / "gitconfig"),
    }
    local_env = {**env, **git_environment(("file",), env["HOME"])}

    async def git(argv: list[str], git_env: dict[str, str]) -> tuple[int, str]:
        return await run_step(argv, log=log, account=account, cwd=work, env=git_env, echo=False)

    status, shallow = await git(
        git_argv(protocols, "-C", str(checkout), "rev-parse", "--is-shallow-repository"), env
    )
    if status == 0 and shallow.strip().endswith("true"):
        status, _ = await git(
            git_argv(
                protocols,
                "-C",
                str(checkout),
                "fetch",
                "--quiet",
                "--unshallow",
                "--no-tags",
                "--",
                request.source.fetch_url,
                request.ref,
            ),
            source_env,
        )
        if status != 0:
            log.line(
                "The repository's history could not be fetched: users who have the files of "
                "an earlier build keep them; a later build's files reach them only by hand."
            )
    for argv in (
        ["init", "--quiet", "--bare", "--", str(staging)],
        [
            "-C",
            str(staging),
            "fetch",
            "--quiet",
            "--no-tags",
            "--",
            str(checkout),
            f"+{commit}:refs/heads/{BRANCH}",
        ],
        ["-C", str(staging), "symbolic-ref", "HEAD", f"refs/heads/{BRANCH}"],
    ):
        status, output = await git(git_argv(("file",), *argv), local_env)
        if status != 0:
            last = " / ".join(line for line in output.splitlines() if line.strip())[-300:]
            raise BuildFailed(f"keeping the repository's files failed: {last or 'git failed'}")


def _seal_kept(staging: Path) -> None:
    """Root's checks, then root's: only plain folders and files of one link each, sealed, with
    root's config and without hooks or alternates. No process of the build is left."""
    for folder, dirs, files in os.walk(staging):
        for name in [*dirs, *files]:
            status = os.lstat(os.path.join(folder, name))
            plain = stat.S_ISDIR(status.st_mode) or (
                stat.S_ISREG(status.st_mode) and status.st_nlink == 1
            )
            if not plain:
                raise BuildFailed(
                    f"the build left {os.path.join(folder, name)[len(str(staging)) + 1 :]!r} "
                    "in the copy of the repository, which is not a plain file or folder; "
                    "remove what makes it (postBuild?) and build again"
                )
    seal(staging)
    for name in ("hooks", "info", "logs"):
        shutil.rmtree(staging / name, ignore_errors=True)
    for name in (
        "config",
        "description",
        "objects/info/alternates",
        "objects/info/http-alternates",
    ):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staging / name)
    fd = os.open(staging / "config", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as config:
        config.write(SOURCE_CONFIG)


def _move_into_venv(staging: Path, venv: Path, name: str) -> None:
    """Rename the sealed staging folder to ``FILES_FOLDER/name`` in the sealed ``venv`` (the
    same file system), never through a link."""
    top = os.open(venv, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        if os.fstat(top).st_uid != os.geteuid():
            raise BuildFailed(f"{venv} is not sealed; the builder writes only sealed folders")
        try:
            os.mkdir(FILES_FOLDER, 0o755, dir_fd=top)
        except FileExistsError:
            pass
        folder = os.open(FILES_FOLDER, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=top)
    finally:
        os.close(top)
    try:
        if os.fstat(folder).st_uid != os.geteuid():
            raise BuildFailed(f"{venv / FILES_FOLDER} is not the builder's own")
        try:
            os.rename(staging, name, dst_dir_fd=folder)
        except OSError:
            if not is_kept(venv / FILES_FOLDER / name):  # a build of the same commit was first
                raise
    finally:
        os.close(folder)

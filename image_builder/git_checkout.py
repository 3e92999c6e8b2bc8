"""Fetching a repository at a ref with git: shallow where possible, as the build account.

Only checked values (``source_safety``) reach git, always as argv after ``--``, with only the
source's protocol allowed. A user's credentials (``git_credentials``) reach only the fetch
processes, and what git prints is scrubbed of them before it is logged or shown. With
credentials the whole history is fetched at once, so that nothing fetches from the source
again once the build's own steps have run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .build_log import BuildLog
from .build_sandbox import BuildAccount, run_step
from .builder_base import BuildFailed, BuildRequest
from .git_credentials import GitCredentials, ScrubbedLog
from .source_safety import RepositorySource, git_argv, git_environment

NEEDS_SIGN_IN = ("could not read Username", "Authentication failed", "terminal prompts disabled")
"""What git prints when a repository wants credentials that the fetch did not have."""


@dataclass(frozen=True)
class Checkout:
    """A working tree at one commit."""

    path: Path
    commit_sha: str
    tree_sha: str


async def fetch_checkout(
    source: RepositorySource,
    ref: str,
    dest: Path,
    *,
    subdir: str,
    log: BuildLog,
    account: BuildAccount,
    env: Mapping[str, str],
    credentials: GitCredentials | None = None,
) -> Checkout:
    """Fetch ``ref`` of ``source`` into ``dest`` (shallow, falling back to a full fetch).

    ``credentials``: the user's, for the fetches only (see the module docstring).
    """
    protocols = [source.protocol]
    scrub = credentials.scrubber() if credentials else str
    if credentials:
        log = ScrubbedLog(log, scrub)
    git_env = {**env, **git_environment(protocols, env["HOME"])}
    # git 2.39 honours safe.directory only in global config: local paths may belong to
    # another account than the build account.
    global_config = Path(env["HOME"]) / "gitconfig"
    global_config.write_text("[safe]\n\tdirectory = *\n")
    os.chmod(global_config, 0o644)
    git_env["GIT_CONFIG_GLOBAL"] = str(global_config)
    fetch_env = {**git_env, **(credentials.environment() if credentials else {})}

    async def git(*args: str, check: bool = True, fetching: bool = False) -> tuple[int, str]:
        step_env = fetch_env if fetching else git_env
        status, output = await run_step(
            git_argv(protocols, *args), log=log, account=account, cwd=dest.parent, env=step_env
        )
        output = scrub(output)
        if check and status != 0:
            raise BuildFailed(_git_failure(args, output, source, signed_in=bool(credentials)))
        return status, output

    dest.mkdir(parents=True, exist_ok=True)
    if account.switches:
        os.chown(dest, account.uid, account.gid)
    await git("init", "--quiet", "--", str(dest))
    depth = () if credentials else ("--depth=1",)
    status, _ = await git(
        "-C",
        str(dest),
        "fetch",
        "--quiet",
        *depth,
        "--no-tags",
        "--",
        source.fetch_url,
        ref,
        check=False,
        fetching=True,
    )
    if status == 0:
        await git("-C", str(dest), "checkout", "--quiet", "--detach", "FETCH_HEAD")
    else:
        log.line("A shallow fetch of that ref failed; fetching the whole history instead.")
        await git(
            "-C",
            str(dest),
            "fetch",
            "--quiet",
            "--no-tags",
            "--",
            source.fetch_url,
            "+refs/heads/*:refs/remotes/origin/*",
            "+refs/tags/*:refs/tags/*",
            fetching=True,
        )
        target = ref if ref != "HEAD" else "FETCH_HEAD"
        status, _ = await git(
            "-C",
            str(dest),
            "rev-parse",
            "--verify",
            "--quiet",
            "--end-of-options",
            f"{target}^{{commit}}",
            check=False,
        )
        if status != 0:
            for candidate in (f"refs/remotes/origin/{ref}", f"refs/tags/{ref}"):
                status, _ = await git(
                    "-C",
                    str(dest),
                    "rev-parse",
                    "--verify",
                    "--quiet",
                    "--end-of-options",
                    f"{candidate}^{{commit}}",
                    check=False,
                )
                if status == 0:
                    target = candidate
                    break
            else:
                raise BuildFailed(f"the ref {ref!r} was not found in {source.url}")
        await git("-C", str(dest), "checkout", "--quiet", "--detach", target, "--")
    _, sha = await git("-C", str(dest), "rev-parse", "HEAD")
    tree_ref = f"HEAD:{subdir}" if subdir else "HEAD^{tree}"
    status, tree = await git("-C", str(dest), "rev-parse", "--verify", tree_ref, check=False)
    if status != 0:
        raise BuildFailed(f"the subfolder {subdir!r} does not exist at {ref} in {source.url}")
    return Checkout(path=dest, commit_sha=sha.strip().splitlines()[-1], tree_sha=tree.strip())


def _git_failure(
    args: tuple[str, ...], output: str, source: RepositorySource, *, signed_in: bool = False
) -> str:
    last = [line for line in output.splitlines() if line.strip()][-3:]
    what = next((a for a in args if a in ("init", "fetch", "checkout", "rev-parse")), "git")
    message = f"git {what} failed for {source.url}: " + (" / ".join(last) or "no output")
    if not signed_in and any(sign in output for sign in NEEDS_SIGN_IN):
        message += (
            "; the repository asks for a sign-in: a private project on the site's GitLab "
            "builds with your own GitLab account (sign in with GitLab, then rebuild)"
        )
    return message


async def fetch_for_build(
    request: BuildRequest,
    work: Path,
    *,
    log: BuildLog,
    account: BuildAccount,
    env: Mapping[str, str],
) -> tuple[Checkout, Path]:
    """Check out ``request``'s source into ``work/repo``; return it and the folder to build."""
    log.progress(5, f"Fetching {request.source.url} at {request.ref}")
    checkout = await fetch_checkout(
        request.source,
        request.ref,
        work / "repo",
        subdir=request.subdir,
        log=log,
        account=account,
        env=env,
        credentials=request.credentials,
    )
    return checkout, checkout.path / request.subdir if request.subdir else checkout.path

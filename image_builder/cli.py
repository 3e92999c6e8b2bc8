"""``kioskhub env ...``: the environment builder from the command line, for site admins.

- ``kioskhub env engine``: one line saying whether container builds can run here;
- ``kioskhub env dockerfile REPO``: the Dockerfile repo2docker would build (no engine needed);
- ``kioskhub env list``: the catalog, as admins see it.

The admin's own command is trusted: local paths and any host are allowed (the schemes still
come from the site config).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from kioskhub.hub.schema.builder import BuilderSettings, catalog_url

from .build_log import BuildLog
from .build_sandbox import BuildAccount, make_workdir, minimal_environment, remove_tree
from .builder_base import BuildFailed
from .container_builder import find_engine, render_dockerfile
from .source_safety import UnsafeSource, check_ref, check_subdir


def add_env_command(commands, config_default: Path) -> None:
    """Add ``env`` and its subcommands to the ``kioskhub`` parser's subcommands."""
    env = commands.add_parser(
        "env",
        help="Environment builds: Dockerfile, engine, catalog.",
        description="Environment builds from the command line.",
    )
    subs = env.add_subparsers(dest="env_command", metavar="ENV_COMMAND", required=True)
    dockerfile = subs.add_parser(
        "dockerfile", help="Print the Dockerfile repo2docker would build for a repository."
    )
    dockerfile.add_argument("repository", help="git URL or local path")
    dockerfile.add_argument("--ref", default="HEAD", help="branch, tag or commit (default HEAD)")
    dockerfile.add_argument("--subdir", default="", help="folder inside the repository")
    dockerfile.set_defaults(run=print_dockerfile)
    engine = subs.add_parser("engine", help="Say whether container builds can run here.")
    engine.set_defaults(run=print_engine)
    listing = subs.add_parser("list", help="List the environment catalog.")
    listing.add_argument("--config", type=Path, default=config_default, help="site config file")
    listing.set_defaults(run=print_catalog)


def print_engine(args: argparse.Namespace) -> int:
    engine = find_engine()
    print(
        f"container builds: {engine.name}"
        if engine.available
        else f"container builds: off ({engine.reason})"
    )
    return 0


def print_dockerfile(args: argparse.Namespace) -> int:
    from .build_runner import check_source

    engine = find_engine()
    print(
        f"# container engine: {engine.name or 'none'}"
        + ("" if engine.available else f" ({engine.reason})"),
        file=sys.stderr,
    )
    try:
        source = check_source(
            BuilderSettings(allowed_schemes=("https", "http", "ssh", "git")),
            args.repository if "://" in args.repository else os.path.abspath(args.repository),
            trusted=True,
        )
        ref, subdir = check_ref(args.ref), check_subdir(args.subdir)
        text = asyncio.run(_dockerfile(source, ref, subdir))
    except (UnsafeSource, BuildFailed) as error:
        print(f"kioskhub env dockerfile: {error}", file=sys.stderr)
        return 1
    print(text, end="")
    return 0


async def _dockerfile(source, ref: str, subdir: str) -> str:
    from .git_checkout import fetch_checkout

    account = BuildAccount(name="self")
    work = make_workdir(account)
    log = BuildLog()
    try:
        checkout = await fetch_checkout(
            source,
            ref,
            work / "repo",
            subdir=subdir,
            log=log,
            account=account,
            env=minimal_environment(work),
        )
        folder = checkout.path / subdir if subdir else checkout.path
        return await render_dockerfile(folder, work)
    except BuildFailed as error:
        raise BuildFailed(f"{error}\n" + "\n".join(log.lines[-10:])) from None
    finally:
        remove_tree(work)


def print_catalog(args: argparse.Namespace) -> int:
    from kioskhub.hub.schema.config_file import load_site

    from .catalog_access import Viewer
    from .catalog_db import open_catalog
    from .catalog_store import visible

    site = load_site(args.config)
    catalog = open_catalog(catalog_url(site.builder, site.hub.state_dir))
    with catalog.session() as session:
        rows = visible(session, Viewer("admin", admin=True))
        for row in rows:
            commit = (row.commit_sha or "")[:12]
            print(
                f"{row.id:4d}  {row.spawn_name:32s} {row.status:9s} {row.builder:9s} "
                f"{row.visibility:16s} {row.repo_url or row.venv_path or row.image_ref or ''}"
                + (f" @ {commit}" if commit else "")
            )
    catalog.close()
    return 0

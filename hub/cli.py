"""The ``kioskhub`` command: init, check-config, up, config-reference."""

from __future__ import annotations

import argparse
import os
import sys
from importlib import resources
from pathlib import Path

from kioskhub.hub.schema.config_file import ConfigError, load_site
from kioskhub.hub.schema.quotas import quota_summary
from kioskhub.hub.schema.site import PACKAGE_ROOT, Site
from kioskhub.image_builder.cli import add_env_command
from kioskhub.spawner.local_accounts import closed_ancestor

from .audit_cli import add_audit_command
from .auth_settings import provider_endpoints
from .config_reference import render_reference
from .dask_gateway import servers_isolated
from .image_cli import add_image_command
from .jupyterhub_settings import PROXY_NAME, find_proxy_command
from .oidc_discovery import DiscoveryError
from .sample_data import write_sample_data
from .state_dir import SECRETS_FILE, prepare_state_dir
from .usage_cli import add_usage_command

DEFAULT_CONFIG = "kioskhub.yaml"
SAMPLE_DATA = Path(".kioskhub") / "sample-data"
EXIT_CONFIG_ERROR = 2
EXIT_MISSING_TOOL = 3
EXIT_OUT_OF_REACH = 4


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_CONFIG_ERROR
    try:
        return args.run(args)
    except (ConfigError, DiscoveryError) as error:
        print(f"kioskhub: {error}", file=sys.stderr)
        return EXIT_CONFIG_ERROR


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kioskhub", description="KioskHub: interactive analysis for research labs."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, run, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument(
            "--config",
            type=Path,
            default=Path(os.environ.get("KIOSKHUB_CONFIG", DEFAULT_CONFIG)),
            help="site config file (default: $KIOSKHUB_CONFIG or ./kioskhub.yaml)",
        )
        sub.set_defaults(run=run)
        return sub

    command("init", init, "Write a commented kioskhub.yaml and sample data, if missing.")
    command("check-config", check_config, "Validate the site config and summarise it.")
    command("up", up, "Start the hub in the foreground; Ctrl-C stops it and its servers.")
    command("config-reference", config_reference, "Print the config reference (Markdown).")
    add_env_command(commands, Path(os.environ.get("KIOSKHUB_CONFIG", DEFAULT_CONFIG)))
    add_image_command(commands)
    add_usage_command(commands, Path(os.environ.get("KIOSKHUB_CONFIG", DEFAULT_CONFIG)))
    add_audit_command(commands, Path(os.environ.get("KIOSKHUB_CONFIG", DEFAULT_CONFIG)))
    return parser


def init(args: argparse.Namespace) -> int:
    path: Path = args.config
    if path.exists():
        print(f"Keeping the existing {path}")
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(resources.files("kioskhub.hub").joinpath("default_config.yaml").read_text())
        print(f"Wrote {path}: a commented site config with the defaults")
    sample = path.resolve().parent / SAMPLE_DATA
    if not sample.exists():
        write_sample_data(sample)
        print(f"Wrote sample data to {sample}")
    return 0


def check_config(args: argparse.Namespace) -> int:
    site = load_site(args.config)
    endpoints = provider_endpoints(site, os.environ)
    print(f"{args.config}: valid")
    print(_summary(site))
    if endpoints is not None:
        print(f"  OIDC provider: {endpoints.issuer} (its configuration was read)")
    return 0


def up(args: argparse.Namespace) -> int:
    site = load_site(args.config)
    out_of_reach = parts_out_of_reach(site, os.geteuid())
    if out_of_reach:
        print(
            "kioskhub: each user's server runs as an account of its own, which cannot reach:\n"
            + "\n".join(f"  {problem}" for problem in out_of_reach)
            + "\nRun `make up`, which puts KioskHub's venv and the site's state where every "
            "account can reach them, or open those folders to other accounts (chmod o+x).",
            file=sys.stderr,
        )
        return EXIT_OUT_OF_REACH
    proxy = find_proxy_command()
    if proxy is None:
        print(
            f"kioskhub: {PROXY_NAME} was not found on PATH or in the node_modules/.bin beside "
            "this venv. Run `make up`, or `npm install configurable-http-proxy` and put its "
            "node_modules/.bin on PATH.",
            file=sys.stderr,
        )
        return EXIT_MISSING_TOOL
    provider_endpoints(site, os.environ)
    passwords = prepare_state_dir(site)
    print(_banner(site, passwords), flush=True)
    os.environ["KIOSKHUB_CONFIG"] = str(args.config.resolve())
    hub_config = resources.files("kioskhub.hub").joinpath("jupyterhub_config.py")
    os.execv(sys.executable, [sys.executable, "-m", "jupyterhub", "-f", str(hub_config)])


def parts_out_of_reach(site: Site, euid: int) -> list[str]:
    """What user accounts must reach but cannot, when local servers run as those accounts.

    They run KioskHub's own venv (its interpreter and its installed code) and live in their
    homes: a folder above any of those that other accounts cannot enter fails every spawn.
    """
    if site.spawner.backend != "local" or not servers_isolated(site, euid):
        return []
    needed = {
        "KioskHub's venv": Path(sys.prefix) / "bin",
        "KioskHub's code": PACKAGE_ROOT / "hub",
        "the users' homes (home.root)": site.home.root,
    }
    problems = []
    for what, folder in needed.items():
        existing = next(path for path in (folder, *folder.parents) if path.exists())
        closed = closed_ancestor(existing / "entry")
        if closed is not None:
            problems.append(f"{what}, {folder}: {closed} is closed to other accounts")
    return problems


def config_reference(args: argparse.Namespace) -> int:
    print(render_reference(), end="")
    return 0


def _summary(site: Site) -> str:
    mounts = ", ".join(
        f"{m.name} ({m.source} → {m.mount_path}, {'read-only' if m.read_only else 'writable'})"
        for m in site.data_mounts
    )
    return "\n".join(
        [
            f"  url:          {site.hub.url}",
            f"  state folder: {site.hub.state_dir}",
            f"  sign-in:      {' + '.join(site.auth.methods())}; "
            f"admins: {', '.join(site.hub.admin_users)}",
            f"  backend:      {site.spawner.backend}",
            f"  homes:        {site.home.root}",
            f"  data mounts:  {mounts or 'none'}",
            f"  environments: {', '.join(e.name for e in site.environments)}",
            f"  profiles:     {', '.join(p.name for p in site.profiles)}",
            f"  quotas:       {quota_summary(site.quotas)}",
        ]
    )


def _banner(site: Site, passwords) -> str:
    secrets_file = site.hub.state_dir / SECRETS_FILE
    user_source = "auth.shared_password" if site.auth.shared_password else str(secrets_file)
    admin_source = "auth.admin_password" if site.auth.admin_password else str(secrets_file)
    lines = ["", f"  KioskHub is starting at {site.hub.url}", ""]
    if site.auth.type != "shared-password":
        lines += [f"  Sign in with {site.auth.type} on the login page.", ""]
    if "shared-password" in site.auth.methods():
        lines += [
            "  Sign in with any username (lowercase letters, digits, '.', '_', '-') and",
            f"  the shared password:  {passwords.user}    (from {user_source})",
            f"  Admins ({', '.join(site.hub.admin_users)}) use the admin password:",
            f"                        {passwords.admin}    (from {admin_source})",
            "",
        ]
    lines += ["  Press Ctrl-C to stop the hub, the proxy and every server it started.", ""]
    return "\n".join(lines)

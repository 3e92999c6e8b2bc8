"""``kioskhub audit``: the audit log of admin actions on other users, as text or JSON."""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from datetime import UTC, datetime
from pathlib import Path

from kioskhub.hub.schema.config_file import load_site

from . import audit_log

EXIT_AUDIT_ERROR = 2


def add_audit_command(commands, config_default: Path) -> None:
    """Add ``audit`` to the ``kioskhub`` parser's subcommands."""
    audit = commands.add_parser(
        "audit",
        help="Print the audit log: admin actions on other users (newest first).",
        description="Print who stopped, deleted, changed or opened another user's server "
        "or account, or set their quota override, and when (UTC), newest first.",
    )
    audit.add_argument("--config", type=Path, default=config_default, help="site config file")
    audit.add_argument("--since", type=_day, default=0.0, help="first day, YYYY-MM-DD")
    audit.add_argument("--user", default="", help="only entries by or about this user")
    audit.add_argument("--format", choices=("text", "json"), default="text")
    audit.set_defaults(run=print_audit)


def _day(text: str) -> float:
    try:
        return audit_log.day_start(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def print_audit(args: argparse.Namespace) -> int:
    site = load_site(args.config)
    try:
        found = audit_log.entries(
            audit_log.audit_database(site.hub.state_dir), args.since, args.user
        )
    except (OSError, sqlite3.Error) as error:
        print(f"kioskhub: cannot read the audit log: {error}", file=sys.stderr)
        return EXIT_AUDIT_ERROR
    if args.format == "json":
        json.dump([entry.as_dict() for entry in found], sys.stdout, indent=1)
        print()
        return 0
    for entry in found:
        print(text_line(entry))
    return 0


def text_line(entry: audit_log.AuditEntry) -> str:
    """One entry on one line; control characters a user chose are shown escaped."""
    when = datetime.fromtimestamp(entry.time, UTC).strftime("%Y-%m-%d %H:%M:%S")
    actor = entry.actor if entry.actor_kind == "user" else f"{entry.actor} ({entry.actor_kind})"
    fields = [when, actor, entry.action, entry.target, entry.detail]
    return "  ".join(_printable(field) for field in fields if field)


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)

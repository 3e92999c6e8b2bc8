"""``kioskhub usage``: the usage records of a period as CSV, JSON or APEL messages.

``--format apel`` writes an APEL cloud message (and an accelerator message when servers
held GPUs) into the dirq outgoing directory that ``ssmsend`` sends from
(``accounting.apel_outgoing``); ``--stdout`` prints the messages instead.
"""

from __future__ import annotations

import argparse
import csv
import json
import sqlite3
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import urlsplit

from kioskhub.hub.schema.accounting import apel_outgoing, usage_database
from kioskhub.hub.schema.config_file import load_site
from kioskhub.spawner import usage_store

from . import usage_apel

CSV_COLUMNS = (*usage_store.COLUMNS, "wall_seconds")
EXIT_USAGE_ERROR = 2


def add_usage_command(commands, config_default: Path) -> None:
    """Add ``usage`` to the ``kioskhub`` parser's subcommands."""
    usage = commands.add_parser(
        "usage",
        help="Report usage records (CSV, JSON) or write APEL records for ssmsend.",
        description="Report the usage records of servers that ran in a period (UTC days). "
        "--format apel writes APEL cloud and accelerator messages into "
        "accounting.apel_outgoing, where ssmsend picks them up.",
    )
    usage.add_argument("--config", type=Path, default=config_default, help="site config file")
    usage.add_argument("--since", required=True, type=_day, help="first day, YYYY-MM-DD")
    usage.add_argument("--until", type=_day, help="day after the last, YYYY-MM-DD (default: now)")
    usage.add_argument("--format", choices=("csv", "json", "apel"), default="csv")
    usage.add_argument(
        "--stdout", action="store_true", help="with --format apel: print instead of writing"
    )
    usage.set_defaults(run=report_usage)


def _day(text: str) -> float:
    try:
        return datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC).timestamp()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a day: write YYYY-MM-DD") from None


def report_usage(args: argparse.Namespace) -> int:
    site = load_site(args.config)
    until = args.until if args.until is not None else datetime.now(UTC).timestamp()
    if until <= args.since:
        print("kioskhub: --until must be after --since", file=sys.stderr)
        return EXIT_USAGE_ERROR
    try:
        found = usage_store.records(usage_database(site.hub.state_dir), args.since, until)
    except (OSError, sqlite3.Error) as error:
        print(f"kioskhub: cannot read the usage records: {error}", file=sys.stderr)
        return EXIT_USAGE_ERROR
    if args.format == "csv":
        write_csv(found, sys.stdout)
    elif args.format == "json":
        json.dump([r.as_dict() for r in found], sys.stdout, indent=1)
        print()
    else:
        return write_apel(site, found, args.since, until, args.stdout)
    return 0


def write_csv(found, out) -> None:
    writer = csv.DictWriter(out, CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for record in found:
        writer.writerow({key: spreadsheet_safe(value) for key, value in record.as_dict().items()})


def spreadsheet_safe(value):
    """Defuse spreadsheet formulas in text a user chose (server names, groups)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return value


def write_apel(site, found, since: float, until: float, to_stdout: bool) -> int:
    settings = site.accounting
    if not settings.site_name:
        print(
            "kioskhub: accounting.site_name is empty; set it to the site's APEL/GOCDB name "
            "in the config before writing APEL records",
            file=sys.stderr,
        )
        return EXIT_USAGE_ERROR
    service = settings.cloud_compute_service or urlsplit(site.hub.url).hostname or ""
    messages = [usage_apel.cloud_message(found, settings, service, since, until)]
    gpus = usage_apel.accelerator_records(found, settings, service, since, until)
    if gpus:
        messages.append(usage_apel.accelerator_message(gpus))
    if to_stdout:
        print("\n".join(messages))
        return 0
    folder = apel_outgoing(settings, site.hub.state_dir)
    names = usage_apel.write_outgoing(folder, messages)
    print(f"Wrote {len(found)} servers' records in {len(names)} messages to {folder}")
    return 0

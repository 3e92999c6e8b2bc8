"""A server's quota check: its usage record is reserved before anything starts.

``reserve_server`` reads the admins' overrides and opens the server's usage record in the
usage store unless ``quota_rules.decide`` refuses it, in one transaction
(``usage_store.reserve``), so two starts at once cannot both take the last core. With no
quota set, every start is accepted and the record is opened all the same: one path.
``overview_line`` is the spawn form's line about the user's quotas. Blocking I/O (all but
``overview_line``): call it in a thread.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from functools import partial
from pathlib import Path

from kioskhub.hub.schema.accounting import usage_database
from kioskhub.hub.schema.quotas import QuotaSettings
from kioskhub.hub.schema.site import Site

from . import quota_rules, usage_store

log = logging.getLogger("JupyterHub")


def server_label(server_name: str) -> str:
    """How a refusal names the server being started."""
    return f"Starting server '{server_name}'" if server_name else "Starting your server"


def accept_all(open_records, recent_records) -> None:
    return None


def reserve_server(
    path: Path, quotas: QuotaSettings, record: usage_store.UsageRecord, is_admin: bool
) -> quota_rules.QuotaRefusal | None:
    """Open ``record`` (reserved; ``mark_started`` once the server runs), or the refusal."""
    now = record.start
    if not quotas.active:
        return usage_store.reserve(path, record, accept_all, now)
    overrides = quota_rules.override_limits(usage_store.overrides(path, now), log)
    decide = partial(
        _decide_in_transaction,
        quotas,
        quota_rules.Demand.of_record(record, server_label(record.server_name)),
        is_admin=is_admin,
        overrides=overrides,
        now=now,
    )
    since = quota_rules.records_since(quotas, overrides, now)
    return usage_store.reserve(path, record, decide, since)


def _decide_in_transaction(quotas, demand, open_records, recent_records, **kwargs):
    return quota_rules.decide(
        quotas, demand, open_records=open_records, recent_records=recent_records, **kwargs
    )


async def overview_line(site: Site, username: str, groups: tuple[str, ...], is_admin: bool) -> str:
    """The line the spawn form shows about the user's own quotas ('' without any), read
    in a thread; a store that cannot be read shows nothing (the start still checks)."""
    if not (site.accounting.enabled and site.quotas.active):
        return ""
    path = usage_database(site.hub.state_dir)
    try:
        return await asyncio.to_thread(
            overview, path, site.quotas, (username, groups), is_admin, time.time()
        )
    except (OSError, sqlite3.Error) as error:
        log.error("Could not read the quotas of %s: %s", username, error)
        return ""


def overview(
    path: Path, quotas: QuotaSettings, user: tuple[str, tuple[str, ...]], is_admin: bool, now: float
) -> str:
    """``quota_overview`` of ``user`` (username, groups) from the store at ``path``."""
    overrides = quota_rules.override_limits(usage_store.overrides(path, now), log)
    records = usage_store.current_records(path, quota_rules.records_since(quotas, overrides, now))
    return quota_rules.quota_overview(quotas, user, is_admin, overrides.get(user[0]), records, now)

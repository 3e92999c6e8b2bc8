"""Quota decisions (pure): may a user start this server or this Dask cluster size now?

``decide`` sees the open usage records (what runs now, servers and Dask clusters alike),
the records of the longest budget period, and what is asked for (``Demand``); it returns
None, or a ``QuotaRefusal`` whose message says which quota, what is using it and, for a
budget, when it renews. ``usage_store.reserve`` calls it inside the transaction that
opens the new record, so two spawns at once cannot both take the last GPU.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pydantic import ValidationError

from kioskhub.hub.schema.quotas import Budget, Period, QuotaLimits, QuotaSettings

from .spawn_form import format_bytes
from .usage_store import QuotaOverride, UsageRecord

CONCURRENT = ("servers", "cores", "memory", "gpus")


@dataclass(frozen=True)
class Demand:
    """What a start or a Dask scale asks for, beyond what the user runs now."""

    username: str
    groups: tuple[str, ...]
    kind: str
    """``server`` or ``dask``."""
    cores: float
    memory: int
    gpus: int
    label: str
    """How the message names it: ``This server`` or ``Scaling cluster x to 4 workers``."""

    @classmethod
    def of_record(cls, record: UsageRecord, label: str) -> Demand:
        """What opening ``record`` (a server's or a Dask cluster's) asks of the quotas."""
        return cls(
            username=record.username,
            groups=tuple(g for g in record.groups.split(",") if g),
            kind=record.kind,
            cores=record.cpu_cores,
            memory=record.memory_requested,
            gpus=record.gpu_count,
            label=label,
        )


@dataclass(frozen=True)
class QuotaRefusal:
    quota: str
    """The key path of the quota, e.g. ``quotas.groups.physics.gpus``."""
    message: str


def period_start(period: Period, now: float) -> float:
    """Start (UTC) of the calendar ``period`` that holds ``now``."""
    day = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "week":
        day -= timedelta(days=day.weekday())
    elif period == "month":
        day = day.replace(day=1)
    return day.timestamp()


def period_end(period: Period, now: float) -> float:
    """When the ``period`` that holds ``now`` ends: its budgets renew then."""
    start = datetime.fromtimestamp(period_start(period, now), UTC)
    if period == "day":
        return (start + timedelta(days=1)).timestamp()
    if period == "week":
        return (start + timedelta(days=7)).timestamp()
    return (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    ).timestamp()


def records_since(quotas: QuotaSettings, overrides: dict[str, QuotaLimits], now: float) -> float:
    """The earliest budget period start any budget needs (``now`` when there are none)."""
    budgets = [b for limits in _all_limits(quotas, overrides) for b in limits.budgets]
    return min((period_start(b.period, now) for b in budgets), default=now)


def _all_limits(quotas: QuotaSettings, overrides: dict[str, QuotaLimits]) -> Iterable[QuotaLimits]:
    yield quotas.default
    yield from quotas.users.values()
    yield from quotas.groups.values()
    yield from overrides.values()


def override_limits(
    overrides: Mapping[str, QuotaOverride], log: logging.Logger
) -> dict[str, QuotaLimits]:
    """The overrides' limits by username; one that does not parse is left out (logged),
    so the config's limits apply to that user."""
    limits = {}
    for username, override in overrides.items():
        try:
            limits[username] = QuotaLimits.model_validate(json.loads(override.limits))
        except (ValueError, ValidationError) as error:
            log.error("Ignoring the quota override of %s: %s", username, error)
    return limits


def user_limits(
    quotas: QuotaSettings, username: str, override: QuotaLimits | None
) -> tuple[QuotaLimits, dict[str, str]]:
    """The limits on ``username`` and, per key, the key path that set it."""
    limits = quotas.default
    source = {key: "quotas.default" for key in (*CONCURRENT, "budgets")}
    for layer, path in (
        (quotas.users.get(username), f"quotas.users.{username}"),
        (override, "an admin's override"),
    ):
        if layer is not None:
            limits = limits.overlaid(layer)
            source.update({key: path for key in layer.model_fields_set})
    return limits, source


def decide(
    quotas: QuotaSettings,
    demand: Demand,
    *,
    is_admin: bool,
    overrides: dict[str, QuotaLimits],
    open_records: list[UsageRecord],
    recent_records: list[UsageRecord],
    now: float,
) -> QuotaRefusal | None:
    """None if ``demand`` fits every quota on its user and their groups, else the refusal.

    ``open_records``: what runs now (without a record that ``demand`` replaces);
    ``recent_records``: every record that overlaps [``records_since``, now].
    """
    if is_admin and quotas.admins_exempt:
        return None
    override = overrides.get(demand.username)
    limits, source = user_limits(quotas, demand.username, override)
    scopes = [
        (limits, source, lambda r: r.username == demand.username, None),
        *(
            (
                quotas.groups[group],
                {key: f"quotas.groups.{group}" for key in (*CONCURRENT, "budgets")},
                lambda r, g=group: g in r.groups.split(","),
                group,
            )
            for group in sorted(demand.groups)
            if group in quotas.groups
        ),
    ]
    for limits, source, counts, group in scopes:
        mine = [r for r in open_records if counts(r)]
        refusal = _concurrent(limits, source, demand, mine, group)
        if refusal is None:
            used = [r for r in recent_records if counts(r)]
            refusal = _budgets(limits, source, demand, used, group, now)
        if refusal is not None:
            return refusal
    return None


def _amount(key: str, record: UsageRecord) -> float:
    return {
        "servers": 1 if record.kind == "server" else 0,
        "cores": record.cpu_cores,
        "memory": record.memory_requested,
        "gpus": record.gpu_count,
    }[key]


def _show(key: str, amount: float) -> str:
    if key == "memory":
        return format_bytes(int(amount))
    unit = {"servers": "server", "cores": "core", "gpus": "GPU"}[key]
    return f"{amount:g} {unit}{'' if amount == 1 else 's'}"


def _what(record: UsageRecord) -> str:
    if record.kind == "server":
        return f"server '{record.server_name or 'default'}'"
    return f"Dask cluster {record.server_name}"


def _users_part(records: list[UsageRecord], key: str, username: str, group: str | None) -> str:
    """What uses a quota: the user's own servers by name, other members' only counted."""
    own = [r for r in records if r.username == username and _amount(key, r)]
    parts = [
        _what(r) if key == "servers" else f"{_what(r)} ({_show(key, _amount(key, r))})" for r in own
    ]
    others = [r for r in records if r.username != username and _amount(key, r)]
    if others:
        total = sum(_amount(key, r) for r in others)
        members = len({r.username for r in others})
        parts.append(
            f"{_show(key, total)} by {members} other member{'s' if members > 1 else ''} of {group}"
        )
    return ", ".join(parts) or "nothing"


def _concurrent(
    limits: QuotaLimits,
    source: dict[str, str],
    demand: Demand,
    records: list[UsageRecord],
    group: str | None,
) -> QuotaRefusal | None:
    asked = {
        "servers": 1 if demand.kind == "server" else 0,
        "cores": demand.cores,
        "memory": demand.memory,
        "gpus": demand.gpus,
    }
    for key in CONCURRENT:
        limit = getattr(limits, key)
        if limit is None or not asked[key]:
            continue
        used = sum(_amount(key, r) for r in records)
        if used + asked[key] <= limit + 1e-9:
            continue
        owner = f"the group {group} may" if group else "you may"
        hold = "run" if key == "servers" else "use"
        return QuotaRefusal(
            f"{source[key]}.{key}" if source[key].startswith("quotas.") else source[key],
            f"{demand.label} would exceed a quota: {owner} {hold} {_show(key, limit)} at once "
            f"({_path(source[key], key)}); in use now: "
            f"{_users_part(records, key, demand.username, group)}; this asks for "
            f"{_show(key, asked[key])}. {_what_to_do(key, group)}",
        )
    return None


def _what_to_do(key: str, group: str | None) -> str:
    if key == "servers":
        return "Stop one of your servers first."
    return "Stop a server or a Dask cluster first, or choose a smaller profile" + (
        f", or wait until other members of {group} stop theirs." if group else "."
    )


def _path(source: str, key: str) -> str:
    return f"{source}.{key}" if source.startswith("quotas.") else source


def _budgets(
    limits: QuotaLimits,
    source: dict[str, str],
    demand: Demand,
    records: list[UsageRecord],
    group: str | None,
    now: float,
) -> QuotaRefusal | None:
    for index, budget in enumerate(limits.budgets):
        per_hour = demand.gpus if budget.resource == "gpu_hours" else demand.cores
        if not per_hour:
            continue
        begin = period_start(budget.period, now)
        used = sum(_hours_in(budget, r, begin, now) for r in records)
        if used < budget.amount:
            continue
        renews = datetime.fromtimestamp(period_end(budget.period, now), UTC)
        unit = "GPU-hours" if budget.resource == "gpu_hours" else "core-hours"
        owner = f"the {group} group's" if group else "your"
        path = (
            f"{source['budgets']}.budgets[{index}]"
            if source["budgets"].startswith("quotas.")
            else source["budgets"]
        )
        return QuotaRefusal(
            path,
            f"{demand.label} would exceed a budget: {owner} budget of {budget.amount:g} "
            f"{unit} per {budget.period} ({path}) is spent, {used:.1f} {unit} used since "
            f"{datetime.fromtimestamp(begin, UTC):%Y-%m-%d}. It renews on "
            f"{renews:%Y-%m-%d %H:%M} UTC. Until then, "
            + (
                "choose a profile without GPUs, or ask an admin."
                if budget.resource == "gpu_hours"
                else "ask an admin."
            ),
        )
    return None


def _hours_in(budget: Budget, record: UsageRecord, begin: float, now: float) -> float:
    """Hours of ``budget``'s resource that ``record`` used between ``begin`` and ``now``."""
    end = now if record.end is None else record.end
    seconds = max(0.0, min(end, now) - max(record.start, begin))
    per_hour = record.gpu_count if budget.resource == "gpu_hours" else record.cpu_cores
    return seconds / 3600 * per_hour


def quota_overview(
    quotas: QuotaSettings,
    demand_of: tuple[str, tuple[str, ...]],
    is_admin: bool,
    override: QuotaLimits | None,
    records: list[UsageRecord],
    now: float,
) -> str:
    """'Your quota: 1 of 2 servers, 2 of 8 cores in use; the group physics: 3 of 4 GPUs.'
    for the spawn form, or '' without quotas. ``demand_of``: (username, groups);
    ``records``: open records and those of the longest budget period (all users')."""
    username, groups = demand_of
    if is_admin and quotas.admins_exempt:
        return ""
    limits, _ = user_limits(quotas, username, override)
    scopes = [("Your quota", limits, [r for r in records if r.username == username])]
    scopes += [
        (f"the group {g}", quotas.groups[g], [r for r in records if g in r.groups.split(",")])
        for g in sorted(groups)
        if g in quotas.groups
    ]
    lines = [
        f"{title}: {', '.join(parts)} in use"
        for title, scope_limits, scope_records in scopes
        if (parts := _overview_parts(scope_limits, scope_records, now))
    ]
    return "; ".join(lines) + "." if lines else ""


def _overview_parts(limits: QuotaLimits, records: list[UsageRecord], now: float) -> list[str]:
    parts = []
    for key in CONCURRENT:
        limit = getattr(limits, key)
        if limit is not None:
            used = sum(_amount(key, r) for r in records if r.end is None)
            shown = format_bytes(int(used)) if key == "memory" and used else f"{used:g}"
            parts.append(f"{shown} of {_show(key, limit)}")
    for budget in limits.budgets:
        begin = period_start(budget.period, now)
        used = sum(_hours_in(budget, r, begin, now) for r in records)
        unit = "GPU-hours" if budget.resource == "gpu_hours" else "core-hours"
        parts.append(f"{used:.1f} of {budget.amount:g} {unit} this {budget.period}")
    return parts

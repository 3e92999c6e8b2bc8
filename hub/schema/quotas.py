"""The ``quotas:`` section of the site config: limits on what users run at once, and budgets.

A user's servers and Dask clusters together count against ``default`` (every user),
replaced key by key by ``users.<name>``; ``groups.<name>`` limits all members of a group
together. Concurrent limits (servers, cores, memory, GPUs) count what runs now; budgets
count use over a calendar period (GPU-hours or core-hours per day, week or month, UTC).
The checks themselves are ``spawner/quota_rules.py``; they count the usage records, so
quotas need ``accounting.enabled``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

from pydantic import Field, model_validator

from .choices import ByteSize, ResourceProfile
from .section import Section

Period = Literal["day", "week", "month"]


class Budget(Section):
    """Use over a calendar period: GPU-hours or core-hours, renewed at the period's start."""

    gpu_hours: float | None = Field(
        None, gt=0, description="GPU-hours (GPUs allocated x hours) per period."
    )
    core_hours: float | None = Field(
        None, gt=0, description="Core-hours (cores allocated x hours) per period."
    )
    period: Period = Field(
        "month",
        description="day, week (from Monday) or month, in UTC; the budget renews at "
        "the start of the next one.",
    )

    @model_validator(mode="after")
    def _one_amount(self) -> Budget:
        if (self.gpu_hours is None) == (self.core_hours is None):
            raise ValueError("give exactly one of gpu_hours and core_hours")
        return self

    @property
    def resource(self) -> Literal["gpu_hours", "core_hours"]:
        return "gpu_hours" if self.gpu_hours is not None else "core_hours"

    @property
    def amount(self) -> float:
        return self.gpu_hours if self.gpu_hours is not None else self.core_hours  # type: ignore[return-value]


class QuotaLimits(Section):
    """Limits; a key left empty sets no limit."""

    servers: int | None = Field(
        None, ge=0, description="Most servers running at once (Dask clusters not counted)."
    )
    cores: float | None = Field(
        None, gt=0, description="Most CPU cores of servers and Dask clusters together."
    )
    memory: ByteSize | None = Field(
        None, description="Most memory of servers and Dask clusters together, e.g. 64G."
    )
    gpus: int | None = Field(None, ge=0, description="Most GPUs allocated at once.")
    budgets: tuple[Budget, ...] = Field(
        (), description="Budgets over time, e.g. [{gpu_hours: 100, period: month}]."
    )

    @property
    def any(self) -> bool:
        return bool(self.budgets) or any(
            getattr(self, key) is not None for key in ("servers", "cores", "memory", "gpus")
        )

    def overlaid(self, other: QuotaLimits) -> QuotaLimits:
        """These limits with the keys that ``other`` sets taken from ``other``."""
        return self.model_copy(update={key: getattr(other, key) for key in other.model_fields_set})


class QuotaSettings(Section):
    admins_exempt: bool = Field(False, description="Whether hub admins may exceed every quota.")
    default: QuotaLimits = Field(QuotaLimits(), description="Limits on each user.")
    users: dict[str, QuotaLimits] = Field(
        {}, description="Per user: the keys given replace those of default."
    )
    groups: dict[str, QuotaLimits] = Field(
        {}, description="Per JupyterHub group: limits on all its members together."
    )

    @property
    def active(self) -> bool:
        return (
            self.default.any
            or any(q.any for q in self.users.values())
            or any(q.any for q in self.groups.values())
        )

    def user_limits(self, username: str) -> QuotaLimits:
        """The limits on ``username``'s own servers and clusters (before overrides)."""
        own = self.users.get(username)
        return self.default.overlaid(own) if own is not None else self.default


def quota_problems(
    quotas: QuotaSettings,
    accounting_enabled: bool,
    profiles: Sequence[ResourceProfile],
    check_username: Callable[[str], str],
) -> list[str]:
    """What is wrong with ``quotas`` beside the rest of the site config, one line each."""
    problems = []
    if quotas.active and not accounting_enabled:
        problems.append(
            "quotas: quotas count the usage records, but accounting.enabled is false; "
            "turn accounting on, or remove the quotas section"
        )
    users = []
    for name in quotas.users:
        try:
            users.append(check_username(name))
        except ValueError as error:
            problems.append(
                f"quotas.users.{name}: not a user's name ({str(error).split(';')[0]}); "
                "give the hub username of the user the limits are for"
            )
    if quotas.default.servers == 0 and not any(
        _allows(quotas.user_limits(name), "servers", 1) for name in users
    ):
        problems.append(
            "quotas.default.servers: is 0 and no quotas.users entry allows a server: no one "
            "could start one; raise it, or give the users who may start servers their own"
        )
    for profile in profiles:
        problems.extend(_unlaunchable(quotas, users, profile))
    return problems


def _unlaunchable(quotas: QuotaSettings, users: list[str], profile: ResourceProfile) -> list[str]:
    """A profile that asks for more than every user's limits (or every allowed group's)."""
    asked = {"cores": profile.cpu, "memory": profile.memory, "gpus": profile.gpu.count}
    problems = []
    for key, amount in asked.items():
        default = getattr(quotas.default, key)
        if (
            default is not None
            and amount > default
            and not any(_allows(quotas.user_limits(name), key, amount) for name in users)
        ):
            problems.append(
                f"profiles.{profile.name}: asks for {_amount(key, amount)}, more than "
                f"quotas.default.{key} allows ({_amount(key, default)}), and no quotas.users "
                "entry allows more: no one could start it; raise the limit, give the users "
                "who need it a limit of their own under quotas.users, or remove the profile"
            )
        limited = [g for g in profile.groups if not _allows(quotas.groups.get(g), key, amount)]
        if profile.groups and len(limited) == len(profile.groups):
            problems.append(
                f"profiles.{profile.name}: asks for {_amount(key, amount)}, more than "
                f"quotas.groups.<group>.{key} allows for every group that may use it "
                f"({', '.join(limited)}): no one could start it; raise those limits"
            )
    return problems


def _allows(limits: QuotaLimits | None, key: str, amount: float) -> bool:
    limit = None if limits is None else getattr(limits, key)
    return limit is None or amount <= limit


def _amount(key: str, amount: float) -> str:
    if key == "memory":
        return f"{amount / 10**9:g} GB of memory"
    return f"{amount:g} {'cores' if key == 'cores' else 'GPUs'}"


def quota_summary(quotas: QuotaSettings) -> str:
    """One line for ``kioskhub check-config``: the default limits and how many others."""
    if not quotas.active:
        return "none"
    limits = quotas.default
    parts = [
        f"{getattr(limits, key):g} {key}"
        for key in ("servers", "cores", "gpus")
        if getattr(limits, key) is not None
    ]
    if limits.memory is not None:
        parts.append(f"{limits.memory / 10**9:g} GB memory")
    parts += [f"{b.amount:g} {b.resource.replace('_', '-')} per {b.period}" for b in limits.budgets]
    return (
        f"default {', '.join(parts) or 'no limit'}; {len(quotas.users)} user and "
        f"{len(quotas.groups)} group entries; admins "
        f"{'exempt' if quotas.admins_exempt else 'not exempt'}"
    )

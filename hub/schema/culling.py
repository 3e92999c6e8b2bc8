"""The ``culling`` section: stop servers left idle, or running too long, per resource profile.

jupyterhub-idle-culler runs as a hub service and stops each server whose last activity is
older than its profile's ``timeout``, or that started more than its profile's ``max_age``
ago. Servers learn their limits from their environment and warn their user inside
JupyterLab ``warn_before`` seconds ahead.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from .choices import Name
from .section import Section


class CullingLimits(Section):
    timeout: int | None = Field(
        None,
        ge=1,
        description="Seconds a server of this profile may stay idle; empty means culling.timeout.",
    )
    max_age: int | None = Field(
        None,
        ge=0,
        description="Seconds a server of this profile may run, active or not (0: no limit); "
        "empty means culling.max_age.",
    )


class CullingProfile(CullingLimits):
    name: Name = Field(description="Name of a resource profile (see profiles[].name).")


class ProfileLimits(Section):
    """The limits that hold for one profile, with the section's defaults filled in."""

    timeout: int
    max_age: int


class CullingSettings(Section):
    enabled: bool = Field(
        False,
        description="Run jupyterhub-idle-culler as a hub service, stopping idle servers "
        "(and with them their Dask clusters).",
    )
    timeout: int = Field(
        3600, ge=1, description="Seconds without activity after which a server is stopped."
    )
    max_age: int = Field(
        0,
        ge=0,
        description="Seconds after its start at which a server is stopped even when active "
        "(0: no limit).",
    )
    every: int = Field(60, ge=1, description="Seconds between two checks of every running server.")
    warn_before: int = Field(
        600,
        ge=0,
        description="Seconds before a server is stopped at which JupyterLab warns its user "
        "(0: no warning).",
    )
    profiles: tuple[CullingProfile, ...] = Field(
        (),
        description="Limits for single profiles (a GPU profile is often culled sooner); "
        "profiles not listed use timeout and max_age above.",
    )

    @model_validator(mode="after")
    def _distinct(self) -> CullingSettings:
        names = [p.name for p in self.profiles]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"profiles: names must be unique; repeated: {', '.join(dupes)}")
        timeouts = [("timeout", self.timeout)] + [
            (f"profiles[{p.name}].timeout", p.timeout) for p in self.profiles if p.timeout
        ]
        for key, timeout in timeouts:
            if self.warn_before >= timeout:
                raise ValueError(
                    f"warn_before ({self.warn_before} s) must be shorter than {key} "
                    f"({timeout} s), or users are warned all the time; lower warn_before"
                )
        return self

    def limits_for(self, profile: str) -> ProfileLimits:
        """The idle timeout and maximum age of servers of ``profile``."""
        entry = next((p for p in self.profiles if p.name == profile), None)
        timeout = entry.timeout if entry and entry.timeout is not None else self.timeout
        max_age = entry.max_age if entry and entry.max_age is not None else self.max_age
        return ProfileLimits(timeout=timeout, max_age=max_age)

    def activity_interval(self) -> int:
        """Seconds between a server's activity reports to the hub: JupyterHub's 300, or
        often enough that an active server is never taken for an idle one."""
        shortest = min([self.timeout] + [p.timeout for p in self.profiles if p.timeout])
        return max(1, min(300, shortest // 4))


def unknown_culling_profiles(culling: CullingSettings, profile_names: list[str]) -> list[str]:
    """Names under ``culling.profiles`` that are not resource profiles of the site."""
    return [p.name for p in culling.profiles if p.name not in profile_names]


def culling_env(culling: CullingSettings, profile: str) -> dict[str, str]:
    """What a server of ``profile`` is told about its culling (empty when culling is off):
    its limits, for the warning in JupyterLab, and how often to report activity."""
    if not culling.enabled:
        return {}
    limits = culling.limits_for(profile)
    return {
        "KIOSKHUB_CULL_TIMEOUT": str(limits.timeout),
        "KIOSKHUB_CULL_MAX_AGE": str(limits.max_age),
        "KIOSKHUB_CULL_WARN": str(culling.warn_before),
        "JUPYTERHUB_ACTIVITY_INTERVAL": str(culling.activity_interval()),
    }

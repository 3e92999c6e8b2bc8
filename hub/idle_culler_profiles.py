"""jupyterhub-idle-culler with an idle timeout and a maximum age per resource profile.

The culler has one ``--timeout`` and one ``--max-age``; its ``cull_arbiter_hook`` decides for
each server. This subclass sets that hook from the limits the hub hands it in
``KIOSKHUB_CULL_LIMITS`` (JSON: the default profile and each profile's ``[timeout,
max_age]``), and reads a server's profile from its ``user_options`` (which the culler's
``read:servers`` scope shows; no access to spawner state). Everything else, the paging
through users, the stopping and the schedule, is the culler's own.

Run as the hub's ``idle-culler`` service: ``python -m kioskhub.hub.idle_culler_profiles``.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from jupyterhub_idle_culler import IdleCuller, parse_date, utcnow
from traitlets import Dict, Unicode, default

LIMITS_VARIABLE = "KIOSKHUB_CULL_LIMITS"


def server_profile(server: dict[str, Any], default_profile: str) -> str:
    """The resource profile a server was started with (the form's or the API's choice)."""
    profile = (server.get("user_options") or {}).get("profile")
    if isinstance(profile, list) and len(profile) == 1:
        profile = profile[0]
    return profile if isinstance(profile, str) and profile else default_profile


def should_cull(
    *,
    inactive: timedelta | None,
    server: dict[str, Any],
    limits: dict[str, list[int]],
    default_profile: str,
    fallback: tuple[int, int],
    now: datetime | None = None,
) -> bool:
    """Whether ``server`` has been idle past its profile's timeout, or has run past its
    profile's maximum age (0: none). A profile the hub no longer knows gets ``fallback``."""
    if inactive is None:  # neither started nor active: the culler skips it too
        return False
    timeout, max_age = limits.get(server_profile(server, default_profile), fallback)
    if inactive.total_seconds() >= timeout:
        return True
    if max_age and server.get("started"):
        age = (now or utcnow()) - parse_date(server["started"])
        return age.total_seconds() >= max_age
    return False


class ProfileIdleCuller(IdleCuller):
    """The culler, deciding per server with its profile's limits."""

    profile_limits = Dict(
        help="Each profile's [idle timeout, maximum age] in seconds (max age 0: none)."
    ).tag(config=True)
    default_profile = Unicode(help="The profile of servers started without one.").tag(config=True)
    config_file = Unicode("", help="No config file: the hub passes everything.").tag(config=True)

    @default("profile_limits")
    def _limits_from_hub(self) -> dict[str, list[int]]:
        return json.loads(os.environ.get(LIMITS_VARIABLE) or "{}").get("profiles", {})

    @default("default_profile")
    def _default_profile_from_hub(self) -> str:
        return json.loads(os.environ.get(LIMITS_VARIABLE) or "{}").get("default_profile", "")

    @default("cull_arbiter_hook")
    def _per_profile(self):
        arbiter = partial(
            should_cull,
            limits=self.profile_limits,
            default_profile=self.default_profile,
            fallback=(self.timeout, self.max_age),
        )
        return lambda *, inactive, inactive_limit, server: arbiter(inactive=inactive, server=server)


def main() -> None:
    ProfileIdleCuller.launch_instance()


if __name__ == "__main__":
    main()
